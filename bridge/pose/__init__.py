"""Pose sources and pose images: the pose result types shared by every source, keypoint layouts
and files (``keypoints``), and the renderers that draw a pose image (``render``). DensePose, the
torch pose source, is its own package (:mod:`bridge.densepose`); a camera tracker will live in
``bridge.pose.tracker``.

May import: the standard library, numpy, cv2, the top-level base modules, :mod:`bridge.util`
and :mod:`bridge.formats`. Never torch, the model packages, the daemon or anything above it.
"""
