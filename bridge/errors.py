"""Error hierarchy of the bridge.

Only the CLI maps these to exit codes. Errors that a client caused carry a stable
wire ``code`` (see :mod:`bridge.protocol` and docs/PROTOCOL.md) and are answered with
``/pose2person/error``; the daemon keeps serving.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base class of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration (flags, environment) is invalid."""


class ModelLoadError(BridgeError):
    """A model could not be found or loaded."""


class TransportError(BridgeError):
    """A transport could not start (port in use, bad address)."""


class ClientError(BridgeError):
    """A request from a client was refused; ``code`` is its stable wire error code."""

    def __init__(self, code: str, message: str, frame_id: int = -1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id

    def __repr__(self) -> str:
        return f"ClientError({self.code!r}, {self.message!r}, frame_id={self.frame_id})"
