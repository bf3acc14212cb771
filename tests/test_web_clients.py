"""The p5.js page and the monitor page in a real headless Chromium with a fake camera.

Chromium (apt package chromium) is driven by Playwright (PyPI ``playwright``; its bundled
browsers are not downloaded: ``executable_path`` points at the system Chromium). The page
is served by a real bridge; frames travel over its real WebSocket; the test checks the
generated pixels against what the page sent (``invert``, then ``passthrough`` picked from
the page's model menu) and that the monitor page shows the client with thumbnails.
Screenshots go to the test artifacts (and docs/images with UPDATE_DOCS_SCREENSHOTS=1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from clienttools import artifact, require_chromium, require_module, save_screenshot
from conftest import RunningBridge, start_bridge
from tracker_fixtures import ensure_tracker_files

pytestmark = pytest.mark.external

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]

# How many of the last pair's pixels break the model's rule (evaluated in the page).
MISMATCHES_JS = """(model) => {
  const p = window.p2p.lastPair; let bad = 0;
  for (let i = 0; i < p.sent.length; i += 4) {
    for (let c = 0; c < 3; c++) {
      const want = model === 'invert' ? 255 - p.sent[i + c] : p.sent[i + c];
      if (p.got[i + c] !== want) bad++;
    }
    if (p.got[i + 3] !== p.sent[i + 3]) bad++;
  }
  return {bad, n: p.sent.length / 4, id: p.id};
}"""


@pytest.fixture
def web_bridge(tmp_path: Path) -> Iterator[RunningBridge]:
    running = start_bridge(tmp_path, "--model", "invert", http=True)
    yield running
    running.stop()


def test_p5_page_and_monitor_in_chromium(web_bridge: RunningBridge, tmp_path: Path) -> None:
    chromium = require_chromium()
    sync_api = require_module("playwright.sync_api", "pip install playwright; no browser download needed")
    base = f"http://127.0.0.1:{web_bridge.http_port}"
    console: list[str] = []
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1000, "height": 760})
        try:
            page = context.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto(f"{base}/web/")
            page.wait_for_function("window.p2p && p2p.received >= 5 && p2p.lastPair && p2p.model === 'invert'",
                                   timeout=20_000)
            result = page.evaluate(MISMATCHES_JS, "invert")
            assert result["n"] == 320 * 240 and result["bad"] == 0, (result, console)
            assert page.evaluate("p2p.models").count("passthrough") == 1

            # The model menu: pick passthrough, then frames come back unchanged.
            page.select_option("select", "passthrough")
            page.wait_for_function("p2p.model === 'passthrough'", timeout=10_000)
            after = page.evaluate("p2p.received")
            page.wait_for_function(f"p2p.received >= {after + 3}", timeout=10_000)
            result = page.evaluate(MISMATCHES_JS, "passthrough")
            assert result["bad"] == 0, result
            page.select_option("select", "invert")
            page.wait_for_function("p2p.model === 'invert'", timeout=10_000)
            after = page.evaluate("p2p.received")
            page.wait_for_function(f"p2p.received >= {after + 3} && p2p.rttMs > 0 && p2p.fps > 0", timeout=10_000)
            assert page.evaluate("p2p.errors") == []
            save_screenshot(page.screenshot(), "web-page.png")

            monitor = context.new_page()
            monitor.on("pageerror", lambda e: console.append(f"monitor pageerror: {e}"))
            monitor.goto(web_bridge.url("/monitor"))  # the URL the daemon printed, with its monitor key
            # Thumbnails refresh at most twice a second: wait for two taken after the switch back to invert.
            monitor.wait_for_function("window.monitor.lastState && window.monitor.lastState.clients.length > 0")
            first = monitor.evaluate("window.monitor.lastState.clients.find(c => c.client.startsWith('ws ')).version")
            monitor.wait_for_function(
                f"window.monitor.lastState.clients.find(c => c.client.startsWith('ws ')).version >= {first + 2}",
                timeout=15_000)
            monitor.wait_for_function(
                """() => { const s = window.monitor.lastState; if (!s) return false;
                           const c = s.clients.find(c => c.client.startsWith('ws '));
                           const img = document.querySelector('.client img[alt=output]');
                           return c && c.thumbs.input && c.thumbs.output && c.frames > 5 &&
                                  img && img.complete && img.naturalWidth === 160 &&
                                  s.history.some(b => b.fps > 0); }""", timeout=15_000)
            state = monitor.evaluate("window.monitor.lastState")
            assert state["model"] == "invert" and "passthrough" in state["models"]
            assert state["websockets"] >= 1
            client = next(c for c in state["clients"] if c["client"].startswith("ws "))
            assert (client["width"], client["height"], client["format"]) == (320, 240, "RGBA8")
            assert len(state["history"]) == 300
            save_screenshot(monitor.screenshot(full_page=True), "monitor.png")
        finally:
            artifact("web-console.log").write_text("\n".join(console))
            context.close()
    assert not [line for line in console if "pageerror" in line], console
    assert web_bridge.alive()
    assert "Traceback" not in web_bridge.log_text()


def test_p5_page_on_the_default_model_says_nobody_is_in_front_of_the_camera(tmp_path: Path) -> None:
    """Issue 14: the page against ``puppet`` (camera frames go through the body tracker). Chromium's
    fake camera shows no person, so every frame is answered with the safe picture and a
    /frame/safe no_person notice, which the page writes on the picture in plain words. The page
    tells the bridge its pictures are mirrored, P switches this client's view, M comes back."""
    ensure_tracker_files()
    chromium = require_chromium()
    sync_api = require_module("playwright.sync_api", "pip install playwright; no browser download needed")
    running = start_bridge(tmp_path, "--model", "puppet", http=True, timeout=90)
    console: list[str] = []
    try:
        with sync_api.sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": 1000, "height": 760})
            try:
                page = context.new_page()
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
                page.goto(f"http://127.0.0.1:{running.http_port}/web/")
                page.wait_for_function("window.p2p && p2p.model === 'puppet' && p2p.safe.length >= 2 && "
                                       "p2p.received >= 2", timeout=60_000)
                state = page.evaluate("({mirror: p2p.mirror, safe: p2p.safe, note: p2p.note, errors: p2p.errors,"
                                      " models: p2p.models, received: p2p.received})")
                assert state["mirror"] == 1, state  # the bridge confirmed /mirror 1
                assert all(n["reason"].startswith("no_person:") and n["policy"] == "last" for n in state["safe"]), state
                assert state["note"] == "nobody in front of the camera", state
                assert state["errors"] == [], (state, console)
                # The note is drawn on the generated picture: a dark band with light text at its bottom.
                band = page.evaluate("""() => { const c = document.querySelector('main canvas');
                    const d = c.getContext('2d').getImageData(320, 240 - 34, 320, 34).data; let light = 0;
                    for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] > 200 && d[i + 2] > 200) light++;
                    return light; }""")
                assert band > 50, band
                save_screenshot(page.screenshot(), "web-page-nobody.png")

                # M: the list holds the active model, so as many presses as the list is long come back.
                cycle = page.evaluate("""() => { let m = p2p.model; const seen = [m];
                    for (let k = 0; k < p2p.models.length; k++) { m = P2P.nextModel(p2p.models, m); seen.push(m); }
                    return seen; }""")
                assert "puppet" in state["models"] and cycle[0] == cycle[-1] == "puppet", cycle

                # P: pose view for this page only, and back.
                page.keyboard.press("p")
                page.wait_for_function("p2p.view === 'pose'", timeout=10_000)
                page.keyboard.press("p")
                page.wait_for_function("p2p.view === 'person'", timeout=10_000)
                assert page.evaluate("p2p.model") == "puppet"
            finally:
                artifact("web-console-puppet.log").write_text("\n".join(console))
                context.close()
        assert not [line for line in console if "pageerror" in line], console
        assert running.alive() and "Traceback" not in running.log_text()
    finally:
        running.stop()
