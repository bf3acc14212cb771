"""Wire formats and file I/O: pixel formats and conversions, image files, allowed-root paths, and
the recording format (``pose2person record`` / ``replay``).

May import: the standard library, numpy, cv2, PIL, the top-level base modules (``errors``,
``protocol``, ``shm``) and :mod:`bridge.util`. Never torch, the daemon or anything above it.
(The WebSocket frame header lives with its transport, :mod:`bridge.transports.wsframe`.)
"""
