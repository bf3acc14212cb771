"""Model-zoo downloads against a real HTTP server on 127.0.0.1 (never an external host):
progress, resume with Range, size and md5-prefix checks, and the no-network failure."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from bridge.densepose.weights import fetch_url, fetch_zoo_weights, md5_prefix_of, zoo_destination, zoo_url
from bridge.errors import ModelLoadError

PAYLOAD = bytes(range(256)) * 12_000  # ~3 MB: a few progress steps
PREFIX = hashlib.md5(PAYLOAD).hexdigest()[:6]
NAME = f"model_final_{PREFIX}.pkl"


class _Server:
    def __init__(self) -> None:
        self.body = PAYLOAD
        self.honour_range = True
        self.cut_at: int | None = None  # send only this many bytes (announcing the full length)
        self.ranges: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if not self.path.endswith(".pkl"):
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                body, start = outer.body, 0
                if rng and outer.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                data = body[start:]
                if outer.cut_at is not None:
                    data = data[: outer.cut_at]
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str = NAME) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_zoo_urls_and_destinations(tmp_path: Path) -> None:
    assert zoo_url("densepose_rcnn_R_50_FPN_s1x") == (
        "https://dl.fbaipublicfiles.com/densepose/densepose_rcnn_R_50_FPN_s1x/165712039/model_final_162be9.pkl")
    assert zoo_url("R_101_FPN_s1x_legacy").endswith("densepose_rcnn_R_101_FPN_s1x_legacy/164832182/model_final_10af0e.pkl")
    assert zoo_destination("R_50_FPN_DL_s1x", tmp_path) == tmp_path / "densepose_rcnn_R_50_FPN_DL_s1x" / "model_final_0ed407.pkl"
    assert md5_prefix_of("model_final_162be9.pkl") == "162be9"


def test_download_with_progress(server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "c" / NAME
    assert fetch_url(server.url(), dest, progress=True) == dest
    assert dest.read_bytes() == PAYLOAD and not dest.with_name(NAME + ".part").exists()
    assert NAME in capsys.readouterr().err  # the progress bar went to stderr
    server.ranges.clear()
    assert fetch_url(server.url(), dest) == dest  # present and valid: no request
    assert server.ranges == []


def test_resume_with_range(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / NAME
    dest.with_name(NAME + ".part").write_bytes(PAYLOAD[:1_000_000])
    fetch_url(server.url(), dest, progress=False)
    assert server.ranges == ["bytes=1000000-"]
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts(server: _Server, tmp_path: Path) -> None:
    server.honour_range = False
    dest = tmp_path / NAME
    dest.with_name(NAME + ".part").write_bytes(b"x" * 5000)
    fetch_url(server.url(), dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_gets_416_and_is_verified(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / NAME
    dest.with_name(NAME + ".part").write_bytes(PAYLOAD)
    fetch_url(server.url(), dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_interrupted_download_keeps_part_then_resumes(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / NAME
    server.cut_at = 1_500_000
    with pytest.raises(ModelLoadError, match="again to resume"):
        fetch_url(server.url(), dest, progress=False)
    assert dest.with_name(NAME + ".part").stat().st_size == 1_500_000 and not dest.exists()
    server.cut_at = None
    fetch_url(server.url(), dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes(server: _Server, tmp_path: Path) -> None:
    server.body = PAYLOAD[::-1]
    dest = tmp_path / NAME
    with pytest.raises(ModelLoadError, match=f"md5 does not start with {PREFIX}"):
        fetch_url(server.url(), dest, progress=False)
    assert not dest.exists() and not dest.with_name(NAME + ".part").exists()


def test_no_network_fails_at_once_with_url_and_path(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/densepose"
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        fetch_zoo_weights("densepose_rcnn_R_50_FPN_s1x", tmp_path, progress=False, base_url=base)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert f"{base}/densepose_rcnn_R_50_FPN_s1x/165712039/model_final_162be9.pkl" in message
    assert str(tmp_path / "densepose_rcnn_R_50_FPN_s1x" / "model_final_162be9.pkl") in message


def test_http_error(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"HTTP 404.*put it at"):
        fetch_url(server.url("missing_123456.bin"), tmp_path / NAME, progress=False)


def test_model_cards_match_the_config_table() -> None:
    from bridge.cards import load_card, shipped_models_dir
    from bridge.densepose import CONFIGS

    for name, cfg in CONFIGS.items():
        card = load_card(shipped_models_dir() / name)
        assert card.kind == "densepose" and card.name == name
        assert card.weights.url == cfg.zoo_url == zoo_url(name)
        assert card.weights_path() == zoo_destination(name)  # where fetch puts it by default
        assert card.provenance.license == "CC BY-SA 3.0"
        assert card.extra["densepose"]["config"] == name
        assert card.extra["speed"]["v100_s_per_image"] == cfg.zoo_seconds_per_image_v100


def test_fetching_and_settings_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, bridge.densepose, bridge.densepose.weights, bridge.densepose.settings; "
            "from bridge.densepose import DensePoseSettings, CONFIGS; DensePoseSettings(max_people=1); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
