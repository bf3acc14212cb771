"""pose2person-bridge: a headless daemon that turns camera frames into pictures of a person.

The transport layer (this package minus ``bridge.nets`` and the torch model stages)
imports only the standard library, numpy, and its network dependencies.
"""

__version__ = "0.1.0"
