"""pose2person Script TOP callbacks for TouchDesigner: the input TOP goes to the bridge through
shared memory, the generated frame comes out of the Script TOP.

Put this file's text in the Script TOP's callbacks DAT (the builder script does that), and make
the bridge's Python package importable: add the folder that contains ``bridge/`` (this repo) to
*Preferences > Python 64-bit Module Path*, or set the Script TOP's *Bridge Path* parameter.
``bridge.client`` and ``bridge.shm`` need only the standard library and numpy, which TD ships.

Pixels. ``TOP.numpyArray()`` gives rows bottom-up (bottom-left origin) as float32 RGBA 0..1,
and ``copyNumpyArray`` takes the same layout back; 8-bit (uint8 RGBA) arrays work too. The
module sends exactly that memory: an ``RGBAF32`` (or ``RGBA8``) channel opened with origin 1,
so nothing is flipped or reordered in TouchDesigner and the bridge converts once, for the models
that need it. The output has the input's size, dtype and orientation.

Mirror. With *Mirror* on (the default, as every shipped sketch shows the camera) the module
flips the input left to right before it sends it and tells the bridge (``/pose2person/mirror 1``),
so the camera tracker flips it back before it looks: the person's right arm moves the figure's
right arm, and the result comes back mirrored, lining up with a mirrored camera picture.

Safe pictures. With nobody in front of the camera the bridge answers with the last picture and
``/pose2person/frame/safe ... "no_person: ..."``; the Script TOP shows "nobody in front of the
camera" as its script error (the red badge; ``Session.safe_reason`` holds the reason) until
someone steps in.

Timing. ``onCook`` never blocks by default: it reads the replies that have arrived, shows the
newest result, and sends the current frame when the previous one is answered (one frame of
latency, like any GPU readback with ``delayed=True``). Set *Wait ms* above 0 to wait that long
for this frame's own result (lower latency, a slower cook if the model is slow).

Everything that touches TouchDesigner's API is in the ``on*`` callbacks at the bottom;
:class:`Session` is plain Python, so the tests run it outside TouchDesigner.
"""

from __future__ import annotations

import sys
import time

import numpy as np

PAGE = "Pose2Person"
BRIDGE_PATH_DEFAULT = ""  # the builder script writes the repo's path here
STALL_S = 1.0  # a frame unanswered this long is given up and the next one sent
P = "/pose2person"


def _import_client(bridge_path: str = ""):  # type: ignore[no-untyped-def]
    bridge_path = bridge_path or BRIDGE_PATH_DEFAULT
    if bridge_path and bridge_path not in sys.path:
        sys.path.insert(0, bridge_path)
    from bridge import client  # noqa: PLC0415 (needs the path above)

    return client


class Session:
    """One Script TOP's connection: a UDP client, a shm channel, the newest result.

    ``step(frame)`` takes a TD-layout array (H, W, 4), float32 0..1 or uint8, rows bottom-up,
    and returns the newest result in the same layout (or None before the first one).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9400, channel: str = "td", bridge_path: str = "",
                 timeout: float = 2.0, mirror: bool = True) -> None:
        self._client_mod = _import_client(bridge_path)
        self.client = self._client_mod.BridgeClient(host, port, timeout=timeout)
        self.channel_name = channel
        self.shm = None
        self.next_id = 1
        self.in_flight: int | None = None
        self.sent_at = 0.0
        self.result: np.ndarray | None = None
        self.result_id = -1
        self.latency_ms = 0.0
        self.round_trip_ms = 0.0
        self.model = ""
        self.last_error = ""
        self.dropped = 0
        self.frames = 0
        self.mirror = mirror  # flip what is sent left to right; the bridge is told with /mirror
        self.mirror_sent: bool | None = None  # the value last sent to the bridge
        self.mirrored: int | None = None  # the bridge's answer to /mirror
        self.safe_reason = ""  # why the newest result is a safe picture ("no_person: ..."), else ""
        self._safe_id = -1

    # -- frames ---------------------------------------------------------------------------
    def _ensure_channel(self, frame: np.ndarray) -> None:
        height, width = frame.shape[:2]
        fmt = "RGBAF32" if frame.dtype == np.float32 else "RGBA8"
        s = self.shm
        if s is not None and (s.width, s.height, s.format) == (width, height, fmt) \
                and not s.input.closed_flag and not s.output.closed_flag:
            return
        if s is not None:
            s.close()
        # origin 1: TouchDesigner's rows are bottom-up; the bridge flips for models that care.
        self.shm = self.client.open_shm(self.channel_name, width, height, fmt, 1)
        self.in_flight = None

    @staticmethod
    def td_layout(frame: np.ndarray) -> np.ndarray:
        """(H, W, 4) float32 or uint8, C-contiguous: what numpyArray() gives (1-3 channels padded)."""
        if frame.dtype not in (np.float32, np.uint8):
            frame = frame.astype(np.float32) / (65535.0 if frame.dtype == np.uint16 else 1.0)
        if frame.ndim == 2:
            frame = frame[..., None]
        if frame.shape[2] < 4:
            opaque = 1.0 if frame.dtype == np.float32 else 255
            pads = [frame[..., :1]] * (3 - frame.shape[2]) if frame.shape[2] < 3 else []
            alpha = np.full(frame.shape[:2] + (1,), opaque, frame.dtype)
            frame = np.concatenate([frame, *pads, alpha], axis=2)[..., :4]
        return np.ascontiguousarray(frame)

    def step(self, frame: np.ndarray | None, wait_s: float = 0.0) -> np.ndarray | None:
        """Read replies, send ``frame`` if the previous one is answered, return the newest result."""
        self.poll()
        if frame is not None:
            if self.mirror_sent is not self.mirror:
                self.client.send(f"{P}/mirror", int(self.mirror))
                self.mirror_sent = self.mirror
            if self.mirror:
                frame = frame[:, ::-1]  # left to right (rows stay bottom-up); td_layout makes it contiguous
            frame = self.td_layout(frame)
            self._ensure_channel(frame)
            if self.in_flight is None or time.monotonic() - self.sent_at > STALL_S:
                frame_id = self.next_id
                self.next_id = self.next_id % (2**24 - 1) + 1
                self.client.submit_shm(self.shm, frame, frame_id)
                self.in_flight, self.sent_at = frame_id, time.monotonic()
                if wait_s > 0:
                    self.poll(until=frame_id, wait_s=wait_s)
        return self.result

    def poll(self, until: int | None = None, wait_s: float = 0.0) -> None:
        """Handle every reply that has arrived (and wait up to ``wait_s`` for frame ``until``)."""
        deadline = time.monotonic() + wait_s
        while True:
            left = deadline - time.monotonic()
            waiting = until is not None and self.result_id != until and left > 0
            message = self.client.receive(timeout=left if waiting else 0.0)
            if message is None:
                if waiting:
                    continue
                return
            self._handle(message)

    def _handle(self, m) -> None:  # type: ignore[no-untyped-def]
        a = m.args
        if m.address == f"{P}/frame/ready" and self.shm is not None and a[0] == self.shm.name:
            try:
                self.result = self.client.read_result(self.shm, int(a[1]))
            except Exception as exc:  # overwritten or closed meanwhile: keep the previous result
                self.last_error = str(exc)
            else:
                self.result_id = int(a[1])
                self.latency_ms = float(a[2])
                self.frames += 1
                if self.result_id != self._safe_id:
                    self.safe_reason = ""
            if self.in_flight == a[1]:
                self.round_trip_ms = (time.monotonic() - self.sent_at) * 1000.0
                self.in_flight = None
        elif m.address == f"{P}/frame/safe":  # just before the frame's reply: a safe picture
            self._safe_id, self.safe_reason = int(a[0]), str(a[2])
        elif m.address == f"{P}/mirror":
            self.mirrored = int(a[0])
        elif m.address == f"{P}/frame/dropped":
            self.dropped += 1
        elif m.address == f"{P}/error":
            self.last_error = f"{a[1]}: {a[2]}"
            if self.in_flight is not None and a[0] == self.in_flight:
                self.in_flight = None
        elif m.address in (f"{P}/model/changed", f"{P}/model/ready"):
            self.model = str(a[0])

    # -- control --------------------------------------------------------------------------
    def send(self, address: str, *args: object) -> None:
        """Any /pose2person message (i f s only; TD's sendOSC would need useNonStandardTypes=False)."""
        self.client.send(address, *args)

    def close(self) -> None:
        if self.shm is not None:
            try:
                self.client.send(f"{P}/shm/close", self.shm.name)
            except OSError:
                pass
            self.shm.close()
            self.shm = None
        self.client.close()


# -- TouchDesigner callbacks ---------------------------------------------------------------
_sessions: dict[str, Session] = {}  # per Script TOP path; survives cooks, not a DAT edit


def _par(op, name: str, default):  # type: ignore[no-untyped-def]
    p = getattr(op.par, name, None)
    return default if p is None else p.eval()


def session_for(scriptOp) -> Session:  # type: ignore[no-untyped-def]
    key = scriptOp.path
    config = (str(_par(scriptOp, "Host", "127.0.0.1")), int(_par(scriptOp, "Port", 9400)),
              str(_par(scriptOp, "Channel", "td")), str(_par(scriptOp, "Bridgepath", "")))
    session = _sessions.get(key)
    if session is not None and getattr(session, "config", None) != config:
        session.close()
        session = None
    if session is None:
        session = Session(*config)
        session.config = config  # type: ignore[attr-defined]
        _sessions[key] = session
    return session


def onSetupParameters(scriptOp):  # type: ignore[no-untyped-def]
    page = scriptOp.appendCustomPage(PAGE)
    page.appendStr("Host", label="Bridge Host")[0].default = "127.0.0.1"
    page.appendInt("Port", label="OSC Port")[0].default = 9400
    page.appendStr("Channel", label="Channel")[0].default = "td"
    page.appendFloat("Waitms", label="Wait ms")[0].default = 0.0
    page.appendToggle("Mirror", label="Mirror")[0].default = True
    page.appendFolder("Bridgepath", label="Bridge Path")
    page.appendPulse("Reconnect", label="Reconnect")
    return


def onPulse(par):  # type: ignore[no-untyped-def]
    if par.name == "Reconnect":
        session = _sessions.pop(par.owner.path, None)
        if session is not None:
            session.close()
    return


def onCook(scriptOp):  # type: ignore[no-untyped-def]
    frame = scriptOp.inputs[0].numpyArray(delayed=True) if scriptOp.inputs else None
    try:
        session = session_for(scriptOp)
        session.mirror = bool(_par(scriptOp, "Mirror", True))
        result = session.step(frame, float(_par(scriptOp, "Waitms", 0.0)) / 1000.0)
    except Exception as exc:  # the bridge is not running yet, a refused channel, ...
        scriptOp.clearScriptErrors()
        scriptOp.addScriptError(f"pose2person: {exc}")
        result = None
    else:
        scriptOp.clearScriptErrors()
        if session.last_error:
            scriptOp.addScriptError(f"pose2person: {session.last_error}")
            session.last_error = ""
        elif session.safe_reason.startswith("no_person"):
            scriptOp.addScriptError("pose2person: nobody in front of the camera")
        elif session.safe_reason:
            scriptOp.addScriptError(f"pose2person: safe picture ({session.safe_reason})")
    if result is not None:
        scriptOp.copyNumpyArray(result)
    elif frame is not None:
        scriptOp.copyNumpyArray(np.ascontiguousarray(frame))  # until the first result arrives
    return
