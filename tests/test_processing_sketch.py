"""The Processing sketch: its .java tab compiled by plain javac against Processing 4's core.jar
(from the py5 wheel) and run by a real JVM against a real bridge, through shared memory and file
paths, checking every pixel; its mDNS discovery finds the bridge's zeroconf advertisement; and
the main .pde tab compiles as the class Processing makes of it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bridge.shm import ChannelFile
from clienttools import processing_core_jar
from conftest import REPO, require_tool, start_bridge
from tracker_fixtures import ensure_tracker_files

pytestmark = pytest.mark.external

SKETCH = REPO / "sketches" / "processing" / "Pose2Person"
W, H = 64, 48


def javac(core_jar: Path, out: Path, *sources: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([require_tool("javac"), "-Xlint:all", "-Werror", "-encoding", "UTF-8",
                           "-cp", str(core_jar), "-d", str(out), *map(str, sources)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def pattern_bgra() -> np.ndarray:
    """The test program's picture as the bytes pixels[] puts in memory (B, G, R, A)."""
    y, x = np.mgrid[0:H, 0:W]
    r, g, b = (x * 4) & 0xFF, (y * 5) & 0xFF, (x * 3 + y * 7) & 0xFF
    return np.stack([b, g, r, np.full_like(r, 255)], axis=2).astype(np.uint8)


def test_java_tab_round_trips_frames_with_a_running_bridge(tmp_path: Path) -> None:
    core_jar = processing_core_jar()
    require_tool("java")
    classes = tmp_path / "classes"
    javac(core_jar, classes, SKETCH / "Pose2PersonBridge.java", REPO / "tests" / "java" / "ProcessingRoundTrip.java")
    bridge = start_bridge(tmp_path, "--model", "invert", zeroconf=True)
    try:
        proc = subprocess.run([require_tool("java"), "-Djava.awt.headless=true", "-cp",
                               f"{core_jar}{':'}{classes}", "ProcessingRoundTrip", str(bridge.osc_port),
                               str(bridge.root), "discover"],
                              capture_output=True, text=True, timeout=60)
        out = proc.stdout
        assert proc.returncode == 0, out + proc.stderr
        assert "PONG 11" in out
        assert re.search(r"^SHM OK latency \d", out, re.M), out
        assert f"PATH OK {bridge.root / 'processing_out.png'}" in out
        assert "ERROR 999 shm_frame_missing" in out
        assert f"DISCOVERED 127.0.0.1 {bridge.osc_port}" in out, out

        # What Java wrote into the bridge's input file is BGRA8, top row first: pixels[] as is.
        (in_file,) = bridge.shm_dir.glob("pose2person-*-processing-g1.in")
        reader = ChannelFile(in_file, writable=False)
        try:
            frame_id, pixels = reader.read(7)
        finally:
            reader.close()
        assert frame_id == 7 and np.array_equal(pixels, pattern_bgra())
        assert bridge.alive() and "Traceback" not in bridge.log_text()
    finally:
        bridge.stop()


# A test double for the Video library's Capture (not in core.jar): only what the sketch calls.
CAPTURE_STUB = """package processing.video;
public class Capture extends processing.core.PImage {
  public Capture(processing.core.PApplet parent, int w, int h) { super(w, h); }
  public static String[] list() { return new String[0]; }
  public void start() {}
  public boolean available() { return false; }
  public void read() {}
}
"""


def compile_sketch(core_jar: Path, tmp_path: Path, *extra: Path) -> Path:
    """Processing wraps a .pde tab in ``public class Name extends PApplet``: do the same and compile
    it with the Java tab (and ``extra`` sources); returns the classes folder."""
    pde = (SKETCH / "Pose2Person.pde").read_text()
    imports = [ln for ln in pde.splitlines() if ln.startswith("import ")]
    body = "\n".join(ln for ln in pde.splitlines() if not ln.startswith("import "))
    src = tmp_path / "src"
    (src / "processing" / "video").mkdir(parents=True)
    (src / "processing" / "video" / "Capture.java").write_text(CAPTURE_STUB)
    (src / "Pose2Person.java").write_text(
        "import processing.core.*;\n" + "\n".join(imports) + "\npublic class Pose2Person extends PApplet {\n"
        + body + "\n}\n")
    classes = tmp_path / "classes"
    classes.mkdir()
    proc = subprocess.run([require_tool("javac"), "-encoding", "UTF-8", "-cp", str(core_jar), "-d", str(classes),
                           str(src / "Pose2Person.java"), str(src / "processing" / "video" / "Capture.java"),
                           str(SKETCH / "Pose2PersonBridge.java"), *map(str, extra)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (classes / "Pose2Person.class").is_file()
    return classes


def test_pde_tab_compiles_as_a_papplet(tmp_path: Path) -> None:
    compile_sketch(processing_core_jar(), tmp_path)
    assert "POSE_MODEL" not in (SKETCH / "Pose2Person.pde").read_text()  # P no longer switches the bridge's model


def test_sketch_on_the_default_model_says_nobody_is_in_front_of_the_camera(tmp_path: Path) -> None:
    """Issue 14: a camera frame with nobody in it, sent to ``puppet`` (the camera tracker's model),
    comes back as a safe picture with /frame/safe no_person; the Java tab and the compiled sketch's
    own reply handling turn it into "nobody in front of the camera". The sketch tells the bridge its
    camera is mirrored, P switches only this client's view, and M cycles back to the active model."""
    ensure_tracker_files()
    core_jar = processing_core_jar()
    java = require_tool("java")
    classes = compile_sketch(core_jar, tmp_path, REPO / "tests" / "java" / "ProcessingRoundTrip.java",
                             REPO / "tests" / "java" / "SketchOnPuppet.java")
    bridge = start_bridge(tmp_path, "--model", "puppet", timeout=90)
    cp = f"{core_jar}:{classes}"
    try:
        proc = subprocess.run([java, "-Djava.awt.headless=true", "-cp", cp, "ProcessingRoundTrip",
                               str(bridge.osc_port), str(bridge.root), "puppet"],
                              capture_output=True, text=True, timeout=120)
        out = proc.stdout
        assert proc.returncode == 0, out + proc.stderr
        assert "MIRROR 1" in out
        assert re.search(r"^SAFE 21 last no_person: ", out, re.M), out
        assert "SHOWN nobody in front of the camera" in out and "READY 21" in out
        cycle = re.search(r"^CYCLE (.*)$", out, re.M).group(1).split(" -> ")  # type: ignore[union-attr]
        assert cycle[0] == cycle[-1] == "puppet" and len(cycle) >= 2, cycle

        proc = subprocess.run([java, "-Djava.awt.headless=true", "-cp", cp, "SketchOnPuppet", str(bridge.osc_port)],
                              capture_output=True, text=True, timeout=120)
        out = proc.stdout
        assert proc.returncode == 0, out + proc.stderr
        assert "CONNECTED true" in out, out
        assert re.search(r"^ANSWERED true safe id (\d+) sent \1$", out, re.M), out
        assert "SAFE NOTE nobody in front of the camera" in out, out
        assert re.search(r"^ERROR NOTE $", out, re.M), out
        assert "VIEW pose true" in out and "VIEW person false" in out, out
        assert re.search(r"^MODEL puppet NEXT \S+ LIST .*\bpuppet\b", out, re.M), out
        log = bridge.log_text()
        assert bridge.alive() and "Traceback" not in log
    finally:
        bridge.stop()
