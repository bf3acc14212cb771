"""The TouchDesigner Script TOP module, run outside TouchDesigner against a real bridge.

Only TouchDesigner's own objects are faked (``FakeTOP``, ``FakeScriptTOP``, ``FakePar``,
``FakeCOMP``: test doubles for the few members of TD's API the module and the builder touch).
The bridge, its sockets and the shared-memory files are real. Orientation and colour order are
checked pixel by pixel: TD's arrays are bottom-up RGBA, the bridge must see the picture's top row
as the top (origin 1) and R as red, and the output must come back in TD's layout.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bridge.formats.pixels import convert
from bridge.shm import ChannelFile
from conftest import REPO, RunningBridge, start_bridge
from tracker_fixtures import ensure_tracker_files

TD_DIR = REPO / "sketches" / "touchdesigner"
W, H = 24, 16


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def td() -> ModuleType:
    module = load(TD_DIR / "pose2person_td.py", "pose2person_td")
    yield module
    for session in module._sessions.values():
        session.close()
    module._sessions.clear()


# -- test doubles for TouchDesigner's API ---------------------------------------------------
class FakePar:
    def __init__(self, value: Any) -> None:
        self.value = value

    def eval(self) -> Any:
        return self.value


class FakeTOP:
    """A TOP whose numpyArray() returns a fixed TD-layout array (bottom-up RGBA)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def numpyArray(self, delayed: bool = False, writable: bool = False) -> np.ndarray:  # noqa: N802 (TD's name)
        return self.array.copy()


class FakeScriptTOP:
    def __init__(self, source: FakeTOP | None, **pars: Any) -> None:
        self.path = "/project1/pose2person/script"
        self.inputs = [source] if source is not None else []
        self.par = SimpleNamespace(**{k: FakePar(v) for k, v in pars.items()})
        self.copied: list[np.ndarray] = []
        self.errors: list[str] = []

    def copyNumpyArray(self, array: np.ndarray) -> None:  # noqa: N802
        assert array.flags.c_contiguous and array.ndim == 3 and array.shape[2] == 4
        self.copied.append(array.copy())

    def addScriptError(self, message: str) -> None:  # noqa: N802
        self.errors.append(message)

    def clearScriptErrors(self) -> None:  # noqa: N802
        pass


# -- pictures ----------------------------------------------------------------------------------
def picture_rgba(dtype: type) -> np.ndarray:
    """A top-down RGBA picture whose every pixel is distinct: R follows x, G follows y, B fixed."""
    y, x = np.mgrid[0:H, 0:W]
    rgba = np.stack([x * 10 + 5, y * 15 + 3, np.full_like(x, 200), np.full_like(x, 128)], axis=2)
    if dtype == np.uint8:
        return rgba.astype(np.uint8)
    return (rgba / 255.0).astype(np.float32)


def bridge_pars(bridge: RunningBridge, **extra: Any) -> dict[str, Any]:
    """The Script TOP's parameters; Mirror off unless asked (the pixel checks compare unflipped pictures)."""
    return {"Host": "127.0.0.1", "Port": bridge.osc_port, "Channel": "td", "Bridgepath": str(REPO), "Mirror": False,
            **extra}


def cook_until(td: ModuleType, script: FakeScriptTOP, done, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        td.onCook(script)
        if done():
            return
        time.sleep(0.005)
    raise AssertionError(f"no result; errors {script.errors}")


@pytest.mark.parametrize("dtype", [np.float32, np.uint8], ids=["float32", "uint8"])
def test_round_trip_keeps_td_orientation_and_colour_order(td: ModuleType, invert_bridge: RunningBridge,
                                                          dtype: type) -> None:
    picture = picture_rgba(dtype)  # top row first
    td_array = np.ascontiguousarray(picture[::-1])  # what numpyArray() gives: bottom row first
    script = FakeScriptTOP(FakeTOP(td_array), **bridge_pars(invert_bridge, Waitms=2000.0))
    one = np.float32(1.0) if dtype == np.float32 else np.uint8(255)
    expected = (one - td_array).astype(dtype)
    expected[..., 3] = td_array[..., 3]
    cook_until(td, script, lambda: bool(script.copied) and np.array_equal(script.copied[-1], expected))
    assert script.errors == []
    out = script.copied[-1]
    assert out.dtype == dtype and out.shape == (H, W, 4)
    # Pixel by pixel in TD's layout: output row 0 is the picture's bottom row, channel 0 is red.
    for row, col in ((0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1), (5, 7)):
        top_row = H - 1 - row
        assert np.array_equal(out[row, col, :3], one - picture[top_row, col, :3]), (row, col)

    # The bridge's view: the channel is RGBAF32/RGBA8 with origin 1, and read the bridge's way
    # (flip the rows of an origin-1 channel) its top-left pixel is the picture's top-left, R first.
    (in_file,) = invert_bridge.shm_dir.glob("pose2person-*-td-g*.in")
    reader = ChannelFile(in_file, writable=False)
    try:
        assert reader.layout.origin == 1
        assert reader.layout.format == ("RGBAF32" if dtype == np.float32 else "RGBA8")
        _, memory = reader.read()
    finally:
        reader.close()
    assert np.array_equal(memory, td_array)  # sent as is: nothing flipped or reordered in TD
    as_bridge_sees = convert(memory, reader.layout.format, "RGB8", flip_rows=True)
    assert np.array_equal(as_bridge_sees, convert(picture, reader.layout.format, "RGB8"))
    assert as_bridge_sees[0, W - 1, 0] > as_bridge_sees[0, 0, 0]  # red grows to the right
    assert as_bridge_sees[H - 1, 0, 1] > as_bridge_sees[0, 0, 1]  # green grows downwards


def test_non_blocking_cook_shows_the_input_then_the_newest_result(td: ModuleType, invert_bridge: RunningBridge
                                                                  ) -> None:
    td_array = np.ascontiguousarray(picture_rgba(np.float32)[::-1])
    script = FakeScriptTOP(FakeTOP(td_array), **bridge_pars(invert_bridge, Waitms=0.0))
    td.onCook(script)  # sends the first frame, does not wait
    assert np.array_equal(script.copied[0], td_array)  # nothing back yet: the input shows through
    expected = np.float32(1.0) - td_array
    expected[..., 3] = td_array[..., 3]
    cook_until(td, script, lambda: np.array_equal(script.copied[-1], expected))
    session = td._sessions[script.path]
    assert session.frames >= 1 and session.latency_ms > 0
    # Control over the same socket; the reply is handled on the next cook.
    session.send("/pose2person/model")
    cook_until(td, script, lambda: session.model == "invert")


def test_mirror_flips_what_is_sent_and_tells_the_bridge(td: ModuleType, invert_bridge: RunningBridge) -> None:
    """Mirror on (the parameter's default): the input goes out flipped left to right, the bridge is told
    /mirror 1 (and says so), and the result is the model's answer to the flipped picture."""
    td_array = np.ascontiguousarray(picture_rgba(np.float32)[::-1])
    script = FakeScriptTOP(FakeTOP(td_array), **bridge_pars(invert_bridge, Waitms=2000.0, Mirror=True))
    flipped = np.ascontiguousarray(td_array[:, ::-1])
    expected = np.float32(1.0) - flipped
    expected[..., 3] = flipped[..., 3]
    cook_until(td, script, lambda: bool(script.copied) and np.array_equal(script.copied[-1], expected))
    session = td._sessions[script.path]
    cook_until(td, script, lambda: session.mirrored is not None)
    assert session.mirrored == 1 and session.mirror_sent is True
    (in_file,) = invert_bridge.shm_dir.glob("pose2person-*-td-g*.in")
    reader = ChannelFile(in_file, writable=False)
    try:
        _, memory = reader.read()
    finally:
        reader.close()
    assert np.array_equal(memory, flipped)  # what the bridge got: the picture mirrored, rows still bottom-up
    # Turning the parameter off tells the bridge and sends the picture as it is.
    script.par.Mirror = FakePar(False)
    plain = np.float32(1.0) - td_array
    plain[..., 3] = td_array[..., 3]
    cook_until(td, script, lambda: np.array_equal(script.copied[-1], plain) and session.mirrored == 0)
    assert script.errors == []


def test_nobody_in_front_of_the_camera_shows_as_a_script_error(td: ModuleType, tmp_path: Path) -> None:
    """Against ``puppet`` (the camera tracker): an empty picture comes back as the safe picture with
    /frame/safe no_person, which the Script TOP shows in words."""
    ensure_tracker_files()
    running = start_bridge(tmp_path, "--model", "puppet", timeout=90)
    try:
        empty = np.full((240, 320, 4), 0.3, np.float32)
        script = FakeScriptTOP(FakeTOP(empty), **bridge_pars(running, Waitms=0.0, Mirror=True))
        cook_until(td, script, lambda: td._sessions.get(script.path) is not None
                   and td._sessions[script.path].frames >= 1, timeout=60)
        session = td._sessions[script.path]
        assert session.safe_reason.startswith("no_person:"), session.safe_reason
        assert session.mirrored == 1
        td.onCook(script)
        assert script.errors[-1] == "pose2person: nobody in front of the camera", script.errors
        assert running.alive() and "Traceback" not in running.log_text()
    finally:
        for session in td._sessions.values():
            session.close()
        td._sessions.clear()
        running.stop()


def test_first_cook_without_input_and_bridge_errors_become_script_errors(td: ModuleType, tmp_path: Path) -> None:
    script = FakeScriptTOP(None, Host="127.0.0.1", Port=9, Channel="td", Bridgepath=str(REPO), Waitms=0.0)
    td.onCook(script)  # no input connected: nothing sent, nothing copied, no error
    assert script.copied == [] and script.errors == []
    script.inputs = [FakeTOP(np.zeros((4, 4, 4), np.float32))]
    td.onCook(script)  # nobody on port 9: the channel cannot open
    assert script.errors and "pose2person:" in script.errors[-1]
    assert len(script.copied) == 1  # the input still shows through


def test_td_layout_pads_and_converts_like_numpyarray(td: ModuleType) -> None:
    grey = np.full((2, 3, 1), 0.5, np.float32)
    out = td.Session.td_layout(grey)
    assert out.shape == (2, 3, 4) and np.allclose(out[0, 0], [0.5, 0.5, 0.5, 1.0])
    rgb8 = np.full((2, 3, 3), 7, np.uint8)
    assert td.Session.td_layout(rgb8)[1, 2].tolist() == [7, 7, 7, 255]
    u16 = np.full((1, 1, 4), 65535, np.uint16)
    assert td.Session.td_layout(u16).dtype == np.float32 and td.Session.td_layout(u16)[0, 0, 0] == 1.0


# -- the builder script -----------------------------------------------------------------------
class FakeConnector:
    def __init__(self, owner: "FakeOP") -> None:
        self.owner = owner

    def connect(self, other: "FakeOP") -> None:
        self.owner.parent_comp.wires.append((self.owner.name, other.name))


class FakeOP:
    def __init__(self, optype: str, name: str, parent_comp: "FakeCOMP | None") -> None:
        self.type, self.name = optype, name
        self.parent_comp = parent_comp
        self.par = SimpleNamespace()
        self.text = ""
        self.nodeX = self.nodeY = 0
        self.outputConnectors = [FakeConnector(self)]


class FakeCOMP(FakeOP):
    def __init__(self, optype: str, name: str, parent_comp: "FakeCOMP | None" = None) -> None:
        super().__init__(optype, name, parent_comp)
        self.children: dict[str, FakeOP] = {}
        self.wires: list[tuple[str, str]] = []
        self.saved: list[str] = []
        self.path = f"/{name}"

    def op(self, name: str) -> FakeOP | None:
        return self.children.get(name)

    def create(self, optype: str, name: str) -> FakeOP:
        node: FakeOP = FakeCOMP(optype, name, self) if optype.endswith("COMP") else FakeOP(optype, name, self)
        self.children[name] = node
        return node

    def save(self, path: str) -> None:
        self.saved.append(path)


def test_builder_creates_the_documented_network(tmp_path: Path) -> None:
    builder = load(TD_DIR / "build_pose2person_tox.py", "pose2person_builder_test")
    project = FakeCOMP("containerCOMP", "project1")
    types = {name: name for name in ("baseCOMP", "textDAT", "videodeviceinTOP", "scriptTOP", "nullTOP", "outTOP",
                                     "oscinDAT", "oscoutDAT", "executeDAT")}
    comp = builder.build(project, str(TD_DIR), types, str(tmp_path / "pose2person.tox"))
    assert comp.type == "baseCOMP" and comp.saved == [str(tmp_path / "pose2person.tox")]
    kinds = {name: node.type for name, node in comp.children.items()}
    assert kinds == {"callbacks": "textDAT", "videodevin": "videodeviceinTOP", "script": "scriptTOP",
                     "out": "nullTOP", "out1": "outTOP", "oscin_callbacks": "textDAT", "oscin": "oscinDAT",
                     "oscout": "oscoutDAT", "register": "executeDAT"}
    assert comp.wires == [("videodevin", "script"), ("script", "out"), ("out", "out1")]
    assert comp.children["script"].par.callbacks == "callbacks"
    assert (comp.children["oscin"].par.port, comp.children["oscout"].par.port) == (9410, 9400)
    callbacks = comp.children["callbacks"].text
    assert f"BRIDGE_PATH_DEFAULT = {str(REPO)!r}" in callbacks and "def onCook(scriptOp)" in callbacks
    assert "/pose2person/register', [9410]" in comp.children["register"].text
    compile(callbacks, "callbacks", "exec")
    compile(comp.children["oscin_callbacks"].text, "oscin_callbacks", "exec")
    compile(comp.children["register"].text, "register", "exec")
