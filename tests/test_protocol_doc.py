"""docs/PROTOCOL.md stays true: every address and error code is documented, and the byte-level
shared-memory example is what the code writes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bridge import protocol
from bridge.shm import ChannelFile, Layout, create_channel_file

DOC = (Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md").read_text()


def test_every_address_and_reply_is_documented() -> None:
    for address in protocol.ADDRESSES:
        assert f"`{address.path}`" in DOC, address.path
    for reply in (protocol.PONG, protocol.ERROR, protocol.REGISTERED, protocol.FRAME_DONE, protocol.FRAME_READY,
                  protocol.FRAME_DROPPED, protocol.SHM_OPENED, protocol.SHM_CLOSED, protocol.MODEL_CHANGED, protocol.MODEL_READY,
                  protocol.MODELS_LIST, protocol.STATUS_REPLY):
        assert reply in DOC, reply


def test_every_error_code_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", DOC, flags=re.MULTILINE))
    assert set(protocol.ERROR_CODES) <= documented
    assert documented & set(protocol.ERROR_CODES) == set(protocol.ERROR_CODES)


def _doc_example_bytes() -> dict[int, list[int | None]]:
    """Parse the hex dump of the 2x1 BGRA8 example: offset -> bytes (None for 'ts' placeholders)."""
    block = DOC.split("### Example", 1)[1].split("```", 2)[1]
    rows: dict[int, list[int | None]] = {}
    for line in block.strip().splitlines():
        m = re.match(r"0x([0-9a-f]{3})\s+((?:(?:[0-9a-f]{2}|ts)\s{1,2})+)", line + " ")
        assert m, line
        tokens = m.group(2).split()
        rows[int(m.group(1), 16)] = [None if t == "ts" else int(t, 16) for t in tokens]
    return rows


def test_shm_example_matches_the_bytes_written(tmp_path: Path) -> None:
    path = tmp_path / "example.in"
    create_channel_file(path, Layout(2, 1, "BGRA8"), "cam1")
    writer = ChannelFile(path, writable=True)
    blue_red = np.array([[[255, 0, 0, 255], [0, 0, 255, 255]]], dtype=np.uint8)
    writer.write(blue_red, 7)
    writer.close()
    data = path.read_bytes()
    assert len(data) == 640  # as the example says: 256 + 3 * 128
    rows = _doc_example_bytes()
    assert len(rows) == 8  # header rows 0x000-0x040, slot rows 0x100-0x140
    for offset, expected in rows.items():
        for i, byte in enumerate(expected):
            if byte is not None:
                assert data[offset + i] == byte, f"byte {offset + i:#x}"
