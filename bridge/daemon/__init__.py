"""The daemon's core: the controller (OSC dispatch), the pipeline and its latest-frame-wins
mailboxes, frame jobs, reply order, safe output, the monitor tap, statistics, the recorder, the
shm channel registry, allocator tuning, zeroconf discovery, and a daemon subprocess helper.

May import: the top-level base modules (``config``, ``errors``, ``protocol``, ``osc``, ``shm``,
``cards``), :mod:`bridge.util`, :mod:`bridge.formats`, :mod:`bridge.pose`, :mod:`bridge.stages`
and :mod:`bridge.engines`. Never torch, the transports, the tools or the command line.
This ``__init__`` imports nothing: :mod:`bridge.client` loads ``bridge.daemon.stats`` inside
TouchDesigner's Python, which must stay light (standard library + numpy).
"""
