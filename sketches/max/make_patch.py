"""Writes sketches/max/pose2person.maxpat (strict patcher JSON) from the box and wire lists below.

    python sketches/max/make_patch.py            # rewrite pose2person.maxpat
    python sketches/max/make_patch.py --graph    # print the wiring as listed in README.md

Max users edit the patch in Max; this script exists so the committed patch is reviewable, and
the test checks that both agree with the graph documented in sketches/max/README.md.
Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BRIDGE = "127.0.0.1 9400"
REPLY_PORT = 9410
ROOT = "/tmp/pose2person"  # start the bridge with --allow-root /tmp/pose2person (see README)
IN_PNG = f"{ROOT}/max_in.png"
OUT_PNG = f"{ROOT}/max_out.png"

# (name, maxclass, text, inlets, outlet types, x, y). The name is the box's Max scripting name (varname).
BOXES: list[tuple[str, str, str, int, list[str], int, int]] = [
    ("title", "comment", "pose2person for Max: camera -> PNG -> bridge -> PNG -> window. Turn on the toggle.",
     1, [], 20, 10),
    ("load", "newobj", "loadbang", 1, ["bang"], 20, 40),
    ("at_load", "newobj", "t b b b b", 1, ["bang", "bang", "bang", "bang"], 20, 70),
    ("register", "message", f"/pose2person/register {REPLY_PORT}", 2, [""], 20, 110),
    # the camera is shown and sent mirrored (mirror_camera): the bridge's tracker flips it back
    ("mirror", "message", "/pose2person/mirror 1", 2, [""], 20, 140),
    ("ask_models", "message", "/pose2person/models", 2, [""], 220, 110),
    ("open_camera", "message", "open", 2, [""], 400, 110),
    ("to_bridge", "newobj", f"udpsend {BRIDGE}", 1, [], 20, 520),
    ("run", "toggle", "", 1, ["int"], 400, 40),
    ("frame_clock", "newobj", "qmetro 66", 2, ["bang"], 400, 150),
    ("one_in_flight", "newobj", "onebang 1", 2, ["bang", "bang"], 400, 180),
    ("frame_id", "newobj", "counter 1 16777215", 5, ["int", "", "", "int"], 400, 210),
    ("grab_export_send", "newobj", "t i b b", 1, ["int", "bang", "bang"], 400, 240),
    ("camera", "newobj", "jit.grab 640 480", 1, ["jit_matrix", ""], 600, 280),
    ("mirror_camera", "newobj", "jit.dimmap @invert 1 0", 1, ["jit_matrix", ""], 760, 280),
    ("input_matrix", "newobj", "jit.matrix p2p_in 4 char 640 480", 1, ["jit_matrix", ""], 600, 320),
    ("export_png", "message", f"exportimage {IN_PNG} png", 2, [""], 520, 280),
    ("camera_window", "jit.pwindow", "", 1, ["jit_matrix", ""], 820, 320),
    ("send_frame", "message", f"/pose2person/frame/path {IN_PNG} {OUT_PNG} $1", 2, [""], 400, 360),
    ("status_clock", "newobj", "metro 1000", 2, ["bang"], 220, 150),
    ("ask_status", "message", "/pose2person/status", 2, [""], 220, 180),
    ("from_bridge", "newobj", f"udpreceive {REPLY_PORT}", 1, [""], 20, 580),
    ("route_replies", "newobj", "route /pose2person/frame/done /pose2person/status/reply /pose2person/models/list "
     "/pose2person/model/changed /pose2person/model/ready /pose2person/error /pose2person/frame/safe", 2,
     ["", "", "", "", "", "", "", ""], 20, 610),
    ("unpack_done", "newobj", "unpack 0 s 0 0 0.", 1, ["int", "", "int", "int", "float"], 20, 650),
    ("done_rearm", "newobj", "t b s", 1, ["bang", ""], 20, 690),
    ("import_png", "newobj", "prepend importmovie", 1, [""], 20, 730),
    ("output_matrix", "newobj", "jit.matrix p2p_out 4 char 640 480 @adapt 1", 1, ["jit_matrix", ""], 20, 760),
    ("generated_window", "jit.pwindow", "", 1, ["jit_matrix", ""], 20, 800),
    ("latency", "flonum", "", 1, ["", "bang"], 180, 690),
    ("latency_label", "comment", "latency ms (bridge)", 1, [], 240, 690),
    ("status_set", "newobj", "prepend set", 1, [""], 300, 650),
    ("status_display", "message", "status: fps mean_ms p95_ms received processed dropped errors model", 2, [""],
     300, 690),
    ("models_clear_first", "newobj", "t a b", 1, ["", "bang"], 560, 650),
    ("menu_clear", "message", "clear", 2, [""], 640, 690),
    ("models_iter", "newobj", "zl iter 1", 2, ["", ""], 560, 690),
    ("menu_append", "newobj", "prepend append", 1, [""], 560, 720),
    ("model_menu", "umenu", "", 1, ["int", "", ""], 560, 760),
    ("model_message", "newobj", "prepend /pose2person/model", 1, [""], 560, 800),
    ("model_set", "newobj", "prepend set", 1, [""], 760, 650),
    ("model_display", "message", "model: ?", 2, [""], 760, 690),
    ("error_set", "newobj", "prepend set", 1, [""], 960, 650),
    ("error_display", "message", "no errors", 2, [""], 960, 690),
    ("error_rearm", "newobj", "t b", 1, ["bang"], 960, 720),
    # /frame/safe i id s policy s reason: the picture is a safe one ("no_person: ..." = nobody in view)
    ("safe_unpack", "newobj", "unpack 0 s s", 1, ["int", "", ""], 1160, 650),
    ("safe_set", "newobj", "prepend set", 1, [""], 1160, 690),
    ("safe_display", "message", "safe picture: none yet (no_person = nobody in front of the camera)", 2, [""],
     1160, 720),
]

# (from, outlet, to, inlet)
LINES: list[tuple[str, int, str, int]] = [
    ("load", 0, "at_load", 0),
    ("at_load", 3, "register", 0),
    ("at_load", 2, "mirror", 0),
    ("at_load", 1, "ask_models", 0),
    ("at_load", 0, "open_camera", 0),
    ("register", 0, "to_bridge", 0),
    ("mirror", 0, "to_bridge", 0),
    ("ask_models", 0, "to_bridge", 0),
    ("open_camera", 0, "camera", 0),
    ("run", 0, "frame_clock", 0),
    ("run", 0, "status_clock", 0),
    ("frame_clock", 0, "one_in_flight", 0),
    ("one_in_flight", 0, "frame_id", 0),
    ("frame_id", 0, "grab_export_send", 0),
    # right to left: grab the camera into p2p_in, export it as PNG, then send the path
    ("grab_export_send", 2, "camera", 0),
    ("grab_export_send", 1, "export_png", 0),
    ("grab_export_send", 0, "send_frame", 0),
    ("camera", 0, "mirror_camera", 0),
    ("mirror_camera", 0, "input_matrix", 0),
    ("mirror_camera", 0, "camera_window", 0),
    ("export_png", 0, "input_matrix", 0),
    ("send_frame", 0, "to_bridge", 0),
    ("status_clock", 0, "ask_status", 0),
    ("ask_status", 0, "to_bridge", 0),
    ("from_bridge", 0, "route_replies", 0),
    ("route_replies", 0, "unpack_done", 0),
    ("unpack_done", 1, "done_rearm", 0),
    ("unpack_done", 4, "latency", 0),
    ("done_rearm", 1, "import_png", 0),
    ("done_rearm", 0, "one_in_flight", 1),  # the answer re-arms the next frame: one frame in flight
    ("import_png", 0, "output_matrix", 0),
    ("output_matrix", 0, "generated_window", 0),
    ("route_replies", 1, "status_set", 0),
    ("status_set", 0, "status_display", 0),
    ("route_replies", 2, "models_clear_first", 0),
    ("models_clear_first", 1, "menu_clear", 0),
    ("menu_clear", 0, "model_menu", 0),
    ("models_clear_first", 0, "models_iter", 0),
    ("models_iter", 0, "menu_append", 0),
    ("menu_append", 0, "model_menu", 0),
    ("model_menu", 1, "model_message", 0),
    ("model_message", 0, "to_bridge", 0),
    ("route_replies", 3, "model_set", 0),
    ("route_replies", 4, "model_set", 0),
    ("model_set", 0, "model_display", 0),
    ("route_replies", 5, "error_set", 0),
    ("route_replies", 5, "error_rearm", 0),
    ("error_set", 0, "error_display", 0),
    ("error_rearm", 0, "one_in_flight", 1),
    ("route_replies", 6, "safe_unpack", 0),
    ("safe_unpack", 2, "safe_set", 0),
    ("safe_set", 0, "safe_display", 0),
]


def box_ids() -> dict[str, str]:
    return {name: f"obj-{k + 1}" for k, (name, *_rest) in enumerate(BOXES)}


def patcher() -> dict[str, object]:
    ids = box_ids()
    boxes = []
    for name, maxclass, text, inlets, outlets, x, y in BOXES:
        box: dict[str, object] = {
            "id": ids[name], "maxclass": maxclass, "numinlets": inlets, "numoutlets": len(outlets),
            "patching_rect": [x, y, max(60, 7 * len(text) + 10) if text else 24, 22], "varname": name,
        }
        if outlets:
            box["outlettype"] = outlets
        if text:
            box["text"] = text
        if maxclass == "jit.pwindow":
            box["patching_rect"] = [x, y, 160, 120]
        boxes.append({"box": box})
    lines = [{"patchline": {"source": [ids[a], ao], "destination": [ids[b], bi]}} for a, ao, b, bi in LINES]
    return {"patcher": {
        "fileversion": 1,
        "appversion": {"major": 8, "minor": 6, "revision": 0, "architecture": "x64", "modernui": 1},
        "classnamespace": "box",
        "rect": [100.0, 100.0, 1200.0, 900.0],
        "boxes": boxes,
        "lines": lines,
    }}


def graph_text() -> str:
    """The boxes and the wiring as README.md lists them."""
    rows = ["| name | class | text |", "|---|---|---|"]
    rows += [f"| `{name}` | {cls} | {('`' + t + '`') if t else ''} |" for name, cls, t, *_ in BOXES]
    wires = [f"{a} {ao} -> {b} {bi}" for a, ao, b, bi in LINES]
    return "\n".join(rows) + "\n\n```\n" + "\n".join(wires) + "\n```"


def main(argv: list[str]) -> int:
    if "--graph" in argv:
        print(graph_text())
        return 0
    (HERE / "pose2person.maxpat").write_text(json.dumps(patcher(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
