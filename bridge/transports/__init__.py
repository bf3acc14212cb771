"""Network transports: OSC over UDP and TCP, HTTP (OSCQuery, ``/health``, ``/metrics``), and the
WebSocket with its frame codec (``wsframe``).

May import: the daemon (:mod:`bridge.daemon`) and everything it may import; aiohttp (only here).
Never torch or the command line.
"""
