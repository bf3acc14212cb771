"""Pose sources and pose images: the pose result types shared by every source, keypoint layouts
and files (``keypoints``), and the renderers that draw a pose image (``render``). DensePose, the
torch pose source, is its own package (:mod:`bridge.densepose`). The camera body tracker
(BlazePose on the TFLite runtime) is ``bridge.pose.tracker``; ``camera`` makes it a pose source for
keypoint models, and ``check`` tells a pose image from a camera picture.

May import: the standard library, numpy, cv2, ``ai_edge_litert`` (the tracker's runtime, only when a
model loads), the top-level base modules, :mod:`bridge.util` and :mod:`bridge.formats`. Never torch, the model packages, the daemon or anything above it.
"""
