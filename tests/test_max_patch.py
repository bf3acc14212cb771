"""The Max patch: strict patcher JSON, wires that join real inlets and outlets, exactly the graph
documented in sketches/max/README.md, the generator's output, and OSC that a real bridge accepts.

Max itself cannot run here; what its boxes would send is rebuilt from their text (symbols as
``s``, integers as ``i``, as Max's ``[udpsend]`` sends them) and sent to a real bridge.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bridge.client import BridgeClient
from bridge.osc import OscArg
from conftest import REPO, RunningBridge

MAX_DIR = REPO / "sketches" / "max"
PATCH = MAX_DIR / "pose2person.maxpat"
README = (MAX_DIR / "README.md").read_text()


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_patch() -> dict[str, Any]:
    return json.loads(PATCH.read_text(), parse_constant=_reject_constant)  # type: ignore[no-any-return]


def documented() -> tuple[dict[str, tuple[str, str]], set[tuple[str, int, str, int]]]:
    boxes = {m.group(1): (m.group(2), m.group(3) or "")
             for m in re.finditer(r"^\| `([a-z_]+)` \| ([a-z.]+) \| (?:`(.*)`)? \|$", README, re.M)}
    wiring = README.split("## Wiring", 1)[1].split("```")[1]
    wires = set()
    for line in wiring.strip().splitlines():
        a, ao, arrow, b, bi = line.split()
        assert arrow == "->"
        wires.add((a, int(ao), b, int(bi)))
    return boxes, wires


def test_patch_is_strict_patcher_json_with_consistent_boxes_and_wires() -> None:
    p = load_patch()["patcher"]
    assert p["fileversion"] == 1 and p["classnamespace"] == "box" and len(p["rect"]) == 4
    assert {"major", "minor", "revision", "architecture", "modernui"} <= set(p["appversion"])
    boxes = {b["box"]["id"]: b["box"] for b in p["boxes"]}
    assert len(boxes) == len(p["boxes"])
    names = [b["varname"] for b in boxes.values()]
    assert len(set(names)) == len(names)
    for box in boxes.values():
        assert box["maxclass"] in {"newobj", "message", "comment", "toggle", "umenu", "flonum", "jit.pwindow"}
        assert len(box["patching_rect"]) == 4 and box["numinlets"] >= 1
        assert len(box.get("outlettype", [])) == box["numoutlets"]
        if box["maxclass"] in ("newobj", "message", "comment"):
            assert box["text"].strip()
    for line in p["lines"]:
        (src, outlet), (dst, inlet) = line["patchline"]["source"], line["patchline"]["destination"]
        assert outlet < boxes[src]["numoutlets"], line
        assert inlet < boxes[dst]["numinlets"], line


def test_patch_is_the_documented_graph() -> None:
    p = load_patch()["patcher"]
    boxes = {b["box"]["id"]: b["box"] for b in p["boxes"]}
    actual_boxes = {b["varname"]: (b["maxclass"], b.get("text", "")) for b in boxes.values()}
    actual_wires = {(boxes[ln["patchline"]["source"][0]]["varname"], ln["patchline"]["source"][1],
                     boxes[ln["patchline"]["destination"][0]]["varname"], ln["patchline"]["destination"][1])
                    for ln in p["lines"]}
    doc_boxes, doc_wires = documented()
    assert actual_boxes == doc_boxes
    assert actual_wires == doc_wires and len(actual_wires) == len(p["lines"])
    # The order that matters: [t i b b] fires right to left: grab, export, then send the path.
    assert {("grab_export_send", 2, "camera", 0), ("grab_export_send", 1, "export_png", 0),
            ("grab_export_send", 0, "send_frame", 0)} <= actual_wires
    # The camera is flipped left to right before it is shown and exported; the bridge is told at load.
    assert {("camera", 0, "mirror_camera", 0), ("mirror_camera", 0, "input_matrix", 0),
            ("at_load", 2, "mirror", 0), ("mirror", 0, "to_bridge", 0)} <= actual_wires
    assert doc_boxes["mirror_camera"][1] == "jit.dimmap @invert 1 0"
    # Replies reach [udpreceive] because the patch registers that port.
    assert doc_boxes["register"][1].split()[-1] == doc_boxes["from_bridge"][1].split()[-1]


def test_generator_writes_the_committed_patch(tmp_path: Path) -> None:
    copy = tmp_path / "make_patch.py"
    copy.write_text((MAX_DIR / "make_patch.py").read_text())
    subprocess.run([sys.executable, str(copy)], check=True, timeout=30)
    assert (tmp_path / "pose2person.maxpat").read_text() == PATCH.read_text()


def max_message(text: str, dollar1: int = 0) -> tuple[str, tuple[OscArg, ...]]:
    """What [udpsend] sends for a message box: address, then ints as i, floats as f, symbols as s."""
    address, *atoms = text.replace("$1", str(dollar1)).split()
    args: list[OscArg] = []
    for atom in atoms:
        if re.fullmatch(r"-?\d+", atom):
            args.append(int(atom))
        elif re.fullmatch(r"-?\d*\.\d*", atom):
            args.append(float(atom))
        else:
            args.append(atom)
    return address, tuple(args)


def test_the_patch_messages_work_with_a_real_bridge(invert_bridge: RunningBridge) -> None:
    doc_boxes, _ = documented()
    root = invert_bridge.root
    rgb = np.random.default_rng(9).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "max_in.png")
    with BridgeClient("127.0.0.1", invert_bridge.osc_port) as client:
        for name, reply in (("ask_models", "/pose2person/models/list"), ("ask_status", "/pose2person/status/reply")):
            address, args = max_message(doc_boxes[name][1])
            assert client.request(address, args, reply).address == reply
        address, args = max_message(doc_boxes["mirror"][1])  # sent at load: the patch's frames are mirrored
        assert client.request(address, args, "/pose2person/mirror").args == (1,)
        text = doc_boxes["send_frame"][1].replace("/tmp/pose2person", str(root))
        address, args = max_message(text, dollar1=5)
        client.send(address, *args)
        done = client.wait_for(lambda m: m.address == "/pose2person/frame/done")
        assert done.args[:4] == (5, str(root / "max_out.png"), 64, 48)
        with Image.open(root / "max_out.png") as im:
            assert np.array_equal(np.asarray(im), 255 - rgb)
        # [prepend /pose2person/model] in front of the menu item the artist picked
        address, args = max_message(doc_boxes["model_message"][1].removeprefix("prepend ") + " passthrough")
        client.send(address, *args)
        changed = client.wait_for(lambda m: m.address in ("/pose2person/model/ready", "/pose2person/model/changed"),
                                  timeout=20)
        assert changed.args == ("passthrough",)
