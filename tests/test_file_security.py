"""Issue 18, each finding reproduced against a real daemon: files swapped for links or FIFOs after the
allowed-root check, other local users' folders and planted links, one client over another's channel,
and a client truncating a channel file under a 4K frame.

The swaps are raced deterministically: a ``throttle`` model holds the worker with one client's frame
while another client's frame, already checked (a ping on the same socket has been answered after it),
waits in its mailbox; then the test swaps the file or folder. Steps as another local user run as
``nobody`` (a child process that drops to uid/gid 65534), which needs root: elsewhere they skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from bridge.client import BridgeClient, RemoteError
from conftest import REPO, RunningBridge, start_bridge, wait_until

P = "/pose2person"
NOBODY = 65534
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(not AS_ROOT, reason="acting as another local user (nobody) needs root to "
                                "drop to uid 65534 in a child process")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/fd")
# A person standing, facing the camera, in COCO-17 order, in a 128x160 frame (as in test_keypoints_serve).
COCO = [(64, 20), (70, 15), (58, 15), (76, 18), (52, 18), (84, 45), (44, 45), (92, 72), (36, 72), (96, 98),
        (32, 98), (76, 95), (52, 95), (78, 125), (50, 125), (80, 155), (48, 155)]
KEYPOINTS = [v for x, y in COCO for v in (x, y, 0.9)]


def as_nobody(*cmd: str) -> None:
    """Run ``cmd`` as user nobody (uid/gid 65534), as another local user of the machine would."""
    def drop() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    subprocess.run(list(cmd), check=True, preexec_fn=drop, timeout=10)


def png(path: Path, value: int, size: tuple[int, int] = (8, 6)) -> None:
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8), "RGB").save(path)


def error_for(client: BridgeClient, frame_id: int, timeout: float = 10.0) -> RemoteError:
    """Wait for this frame's answer and require it to be an error."""
    with pytest.raises(RemoteError) as info:
        client.wait_for(lambda m: m.address in (f"{P}/frame/done", f"{P}/frame/ready") and frame_id in m.args,
                        timeout, error_for=lambda e: e.frame_id == frame_id)
    return info.value


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[RunningBridge]:
    """A daemon whose model takes 2.5 s a frame: long enough to swap files while it works, even on a
    loaded machine (the swaps take milliseconds)."""
    running = start_bridge(tmp_path, "--model", "throttle:2500")
    yield running
    running.stop()


def hold_worker(running: RunningBridge, busy: BridgeClient) -> None:
    """Give the worker a 2.5 s frame of ``busy``'s and wait until it is taken."""
    png(running.root / "busy.png", 1)
    busy.send(f"{P}/frame/path", str(running.root / "busy.png"), str(running.root / "busy_out.png"), 1)
    assert wait_until(lambda: busy.status().received >= 1)


def checked(client: BridgeClient) -> None:
    """The loop thread handled everything this client sent before (messages of one socket are in order)."""
    client.ping(77)


def assert_serving(running: RunningBridge) -> None:
    assert running.alive(), running.log_text()
    with running.client(timeout=10) as client:
        png(running.root / "ok.png", 9)
        done = client.process_path(str(running.root / "ok.png"), str(running.root / "ok_out.png"), 500, timeout=10)
        assert done.frame_id == 500


# -- 1. check-then-use on paths ------------------------------------------------------------------
@pytest.mark.parametrize("what", ["input file", "input folder", "output folder"])
def test_a_path_swapped_for_a_link_after_the_check_is_refused(slow: RunningBridge, what: str) -> None:
    """Before: the swap was followed; the secret outside the root was read, or the output landed
    outside. Now: the worker walks from the root without following links: path_not_allowed."""
    root, outside = slow.root, slow.root.parent / "outside"
    outside.mkdir()
    png(outside / "in.png", 200)  # "the secret"
    (root / "sub").mkdir()
    png(root / "sub" / "in.png", 10)
    (root / "outdir").mkdir()
    src, dst = root / "sub" / "in.png", root / "outdir" / "out.png"
    with slow.client() as busy, slow.client(timeout=10) as victim:
        hold_worker(slow, busy)
        victim.send(f"{P}/frame/path", str(src), str(dst), 2)
        checked(victim)
        if what == "input file":
            src.unlink()
            src.symlink_to(outside / "in.png")
        elif what == "input folder":
            shutil.rmtree(root / "sub")
            (root / "sub").symlink_to(outside, target_is_directory=True)
        else:
            shutil.rmtree(root / "outdir")
            (root / "outdir").symlink_to(outside, target_is_directory=True)
        err = error_for(victim, 2)
    assert err.code == "path_not_allowed", err
    assert sorted(p.name for p in outside.iterdir()) == ["in.png"]  # nothing written outside
    assert_serving(slow)


def test_a_fifo_swapped_in_is_refused_without_blocking(slow: RunningBridge) -> None:
    """Before: the worker opened the FIFO and blocked (nobody writes it); the client never got an
    answer and each stall retry leaked a thread. Now: opened without blocking, fstat: file_not_found."""
    src = slow.root / "in.png"
    png(src, 10)
    with slow.client() as busy, slow.client(timeout=10) as victim:
        hold_worker(slow, busy)
        victim.send(f"{P}/frame/path", str(src), str(slow.root / "out.png"), 2)
        checked(victim)
        src.unlink()
        os.mkfifo(src)
        err = error_for(victim, 2, timeout=8)
    assert err.code == "file_not_found" and "not a regular file" in err.message, err
    assert_serving(slow)


def test_a_keypoint_target_folder_swapped_later_is_refused(bridge: RunningBridge) -> None:
    """Before: /keypoints/target/path was checked once, when set; a folder swapped for a link later
    sent every picture outside the root. Now every picture walks from the root again."""
    folder, outside = bridge.root / "kp", bridge.root.parent / "outside"
    folder.mkdir()
    outside.mkdir()
    with bridge.client(timeout=10) as client:
        client.send(f"{P}/keypoints/target/path", str(folder / "pic.png"))
        client.wait_for(lambda m: m.address == f"{P}/keypoints/target")
        client.send(f"{P}/keypoints", "coco17", 1, 128, 160, *KEYPOINTS)
        client.wait_for(lambda m: m.address == f"{P}/frame/done" and m.args[0] == 1)
        assert (folder / "pic.png").is_file()
        shutil.rmtree(folder)
        folder.symlink_to(outside, target_is_directory=True)
        client.send(f"{P}/keypoints", "coco17", 2, 128, 160, *KEYPOINTS)
        err = error_for(client, 2)
    assert err.code == "path_not_allowed", err
    assert list(outside.iterdir()) == []
    assert_serving(bridge)


# -- 2. other local users --------------------------------------------------------------------------
@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder like /dev/shm or /tmp (mode 1777: everyone may create, the sticky bit guards
    renames), outside pytest's own private temp folder so that nobody can reach it."""
    path = Path(tempfile.mkdtemp(prefix="p2p-shared-", dir="/tmp"))
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_root
def test_links_another_user_plants_in_the_shm_folder_are_never_followed(tmp_path: Path, shared_dir: Path) -> None:
    """Before: channel files were made through the predictable ``<file>.creating`` with
    O_CREAT|O_TRUNC in the shared folder, so nobody's link there made the daemon (root) overwrite a
    root-owned file. Now the files go in a private sub-folder, created exclusively."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's data")
    port = free_port()
    for suffix in (".in", ".out", ".in.creating", ".out.creating"):
        as_nobody("ln", "-s", str(victim), str(shared_dir / f"pose2person-{port}-cam-g1{suffix}"))
    running = start_bridge(tmp_path, "--shm-dir", str(shared_dir), "--osc-port", str(port))
    try:
        with running.client() as client:
            session = client.open_shm("cam", 8, 6, "BGRA8")
            frame = np.full((6, 8, 4), 7, np.uint8)
            out, _ = client.process_shm(session, frame, 1)
            assert np.array_equal(out, frame)
            folder = Path(session.input.path).parent
            assert folder == shared_dir / f"pose2person-{os.geteuid()}"
            st = os.lstat(folder)
            assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
            for path in (session.input.path, session.output.path):
                st = os.lstat(path)
                assert stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077 == 0
            session.close()
    finally:
        running.stop()
    assert victim.read_bytes() == b"root's data"


@needs_root
def test_a_channel_folder_another_user_made_is_refused(tmp_path: Path, shared_dir: Path) -> None:
    """Before: there was no private folder; a file nobody pre-made stayed theirs and world-readable.
    Now a ``pose2person-<uid>`` folder that someone else made is refused, and the daemon says what to do."""
    as_nobody("mkdir", "-m", "0777", str(shared_dir / f"pose2person-{os.geteuid()}"))
    # A daemon that must refuse to start: run to its exit (start_bridge waits for a ready line).
    out = subprocess.run([sys.executable, "-m", "bridge", "serve", "--osc-port", "0", "--no-http", "--no-zeroconf",
                          "--allow-root", str(tmp_path), "--shm-dir", str(shared_dir)],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    text = out.stderr
    assert out.returncode != 0 and "ready (model" not in text, text
    assert "belongs to another user" in text and "rm -r" in text and "--shm-dir" in text, text


@needs_root
def test_a_default_root_another_user_made_is_refused(shared_dir: Path) -> None:
    """Before: a ``pose2person`` folder in the temp folder, made by nobody with mode 0777, was
    accepted as the default allowed root. Now it is refused with a clear error."""
    as_nobody("mkdir", "-m", "0777", str(shared_dir / "pose2person"))
    code = ("from bridge.config import resolve\nfrom bridge.errors import ConfigError\n"
            "try:\n    resolve(shm_dir=__import__('sys').argv[1])\nexcept ConfigError as exc:\n"
            "    print('refused:', exc)\nelse:\n    print('accepted')\n")
    out = subprocess.run([sys.executable, "-c", code, str(shared_dir)], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "TMPDIR": str(shared_dir)}, timeout=60)
    assert out.stdout.startswith("refused:"), out.stdout + out.stderr
    assert "belongs to another user" in out.stdout and "--allow-root" in out.stdout, out.stdout


def test_the_default_root_is_created_private(tmp_path: Path) -> None:
    code = ("from bridge.config import resolve\nimport os, stat, sys\n"
            "r = resolve(shm_dir=sys.argv[1]).security.allow_roots[0]\n"
            "print(r, oct(stat.S_IMODE(os.lstat(r).st_mode)))\n")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "TMPDIR": str(tmp)}, timeout=60)
    assert out.stdout.split() == [str(tmp / "pose2person"), "0o700"], out.stdout + out.stderr


# -- 3. channels belong to their client --------------------------------------------------------------
def test_another_client_cannot_use_or_replace_a_channel(bridge: RunningBridge) -> None:
    """Before: any client could send frames into, target keypoints onto, close, or re-open at another
    size (deleting the files of) a channel another client opened. Now: shm_not_owner, or a channel
    of its own, and the owner's channel goes on untouched."""
    with bridge.client() as owner, bridge.client() as other:
        session = owner.open_shm("cam", 8, 6, "BGRA8")
        frame = np.full((6, 8, 4), 3, np.uint8)
        session.input.write(frame, 1)
        for address, args in ((f"{P}/frame/shm", ("cam", 1)), (f"{P}/keypoints/target", ("cam",)),
                              (f"{P}/shm/close", ("cam",)), (f"{P}/frame/shm", ("cam.0123456789abcdef", 1))):
            other.send(address, *args)
            with pytest.raises(RemoteError) as info:
                other.wait_for(lambda m: False, 5)
            assert info.value.code == "shm_not_owner", (address, info.value)
        assert session.name.startswith("cam.") and len(session.name) == len("cam.") + 16  # the handle
        # Its own "cam" (another size) is another channel: the owner's files stay.
        mine = other.open_shm("cam", 16, 12, "BGRA8")
        assert mine.name != session.name and Path(session.input.path).exists()
        out, _ = owner.process_shm(session, frame, 2)
        assert np.array_equal(out, frame)
        # The handle is the capability: it works from any socket.
        with bridge.client() as third:
            third.send(f"{P}/frame/shm", session.name, 2)
            third.wait_for(lambda m: m.address == f"{P}/frame/ready" and m.args[:2] == (session.name, 2))
        other.close_shm(mine)
        owner.close_shm(session)


@linux_only
def test_a_retired_channel_is_not_pinned_by_a_keypoint_target(bridge: RunningBridge) -> None:
    """Before: a keypoint target held the channel object, so a channel re-opened at another size kept
    its deleted files open (memory outside the budget). Now the files are closed when retired."""
    def deleted_channel_fds() -> list[str]:
        found = []
        for fd in Path(f"/proc/{bridge.proc.pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if "pose2person-" in target and "(deleted)" in target:
                found.append(target)
        return found

    with bridge.client(timeout=10) as client:
        session = client.open_shm("kp", 128, 160, "RGB8")
        client.send(f"{P}/keypoints/target", session.name)
        client.wait_for(lambda m: m.address == f"{P}/keypoints/target")
        client.send(f"{P}/keypoints", "coco17", 1, 128, 160, *KEYPOINTS)
        client.wait_for(lambda m: m.address == f"{P}/frame/ready" and m.args[1] == 1)
        session.close()
        bigger = client.open_shm("kp", 256, 320, "RGB8")  # retires the first generation
        assert bigger.name == session.name  # the same handle: the target follows the re-open
        assert wait_until(lambda: not deleted_channel_fds()), deleted_channel_fds()
        client.send(f"{P}/keypoints", "coco17", 2, 128, 160, *KEYPOINTS)
        client.wait_for(lambda m: m.address == f"{P}/frame/ready" and m.args[1] == 2)
        assert client.read_result(bigger, 2).shape == (320, 256, 3)
        client.close_shm(bigger)


# -- 4. no signal from a client's file -----------------------------------------------------------------
@pytest.mark.parametrize("which", ["output", "input"])
def test_truncating_a_channel_file_mid_frame_does_not_kill_the_daemon(slow: RunningBridge, which: str) -> None:
    """Before: a client truncating the .out file (as root: mode 0400 does not stop root) while the
    daemon worked on a 3840x2160 frame killed the daemon with SIGBUS. Now: shm_bad_header for that
    frame, and the daemon goes on serving. (The input side was read with preadv already; its case
    passed before too and guards it.)"""
    w, h = 3840, 2160
    with slow.client(timeout=15) as client:
        session = client.open_shm("big", w, h, "BGRA8")
        frame = np.full((h, w, 4), 5, np.uint8)
        session.input.write(frame, 1)
        client.send(f"{P}/frame/shm", session.name, 1)
        assert wait_until(lambda: client.status().received >= 1)
        time.sleep(0.3)  # the worker takes it at once (it is idle); its model then runs for 2.5 s
        path = session.output.path if which == "output" else session.input.path
        if which == "input":  # frame 1 was copied in already: frame 2 is read from the truncated file
            session.input.write(frame, 2)
        with open(path, "r+b") as f:
            f.truncate(1024)
        if which == "input":
            client.send(f"{P}/frame/shm", session.name, 2)
            err = error_for(client, 2, timeout=15)
        else:
            err = error_for(client, 1, timeout=15)
        assert err.code == "shm_bad_header", err
        session.close()
    assert_serving(slow)
    with slow.client() as client:  # and the client can recover by re-opening its channel
        again = client.open_shm("big", 64, 48, "BGRA8")
        out, _ = client.process_shm(again, np.full((48, 64, 4), 1, np.uint8), 3, timeout=10)
        assert (out == 1).all()


# -- the pieces, directly ------------------------------------------------------------------------------
def test_read_bytes_refuses_a_fifo_even_with_a_writer_and_never_reads_past_the_cap(tmp_path: Path) -> None:
    """The 320 MiB read past the 256 MiB cap came from a FIFO someone kept writing: refused unread now.
    A regular file over the cap is refused from its size."""
    from bridge.errors import ClientError
    from bridge.formats.safefs import read_bytes

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer end, so a blocking open would succeed
    try:
        os.write(writer, b"\x89PNG" + b"x" * 1000)
        with pytest.raises(ClientError) as info:
            read_bytes(fifo, (tmp_path,), max_bytes=100, frame_id=3)
        assert info.value.code == "file_not_found" and "not a regular file" in info.value.message
    finally:
        os.close(writer)
    big = tmp_path / "big.png"
    big.write_bytes(b"y" * 101)
    with pytest.raises(ClientError) as info:
        read_bytes(big, (tmp_path,), max_bytes=100, frame_id=3)
    assert info.value.code == "image_too_large"
    assert read_bytes(big, (tmp_path,), max_bytes=101, frame_id=3) == b"y" * 101


def test_the_registry_counts_pinned_files_and_reclaims_idle_channels(tmp_path: Path) -> None:
    """A retired channel a worker is still inside counts against the budget until it lets go; when
    the table is full, a channel unused for IDLE_RECLAIM_S makes room, one in use never does."""
    from bridge.config import SecurityConfig, ShmConfig
    from bridge.daemon import shm_channels
    from bridge.daemon.shm_channels import ChannelRegistry
    from bridge.shm import Layout, ShmError

    size = 2 * Layout(64, 48, "BGRA8").file_size
    registry = ChannelRegistry(ShmConfig(directory=tmp_path, max_channels=2, max_bytes=2 * size), SecurityConfig(),
                               "t")
    a = registry.open("a", 64, 48, "BGRA8", owner="A")
    a.output._enter()  # a worker inside a pwrite of a's output file
    registry.close("a", "A")
    assert not a.released and not a.input_path.exists()
    b = registry.open("b", 64, 48, "BGRA8", owner="B")
    with pytest.raises(ShmError) as info:  # a's files still take their share of the budget
        registry.open("c", 64, 48, "BGRA8", owner="C")
    assert info.value.code == "too_many_channels"
    a.output._leave()  # the worker lets go: the descriptor closes, the bytes are free
    assert a.released
    c = registry.open("c", 64, 48, "BGRA8", owner="C")
    with pytest.raises(ShmError):  # two channels, both in use
        registry.open("d", 64, 48, "BGRA8", owner="D")
    b.last_used -= shm_channels.IDLE_RECLAIM_S + 1  # b's client went quiet a minute ago
    d = registry.open("d", 64, 48, "BGRA8", owner="D")
    assert {ch.name for ch in registry.channels()} == {"c", "d"} and not b.input_path.exists()
    with pytest.raises(ShmError) as info:
        registry.get("b", "B")
    assert info.value.code == "shm_unknown_channel"
    assert registry.get(c.handle).name == "c" and registry.get("d", "D") is d
    registry.close_all()


def test_a_recording_folder_swapped_for_a_link_keeps_its_files_inside(bridge: RunningBridge) -> None:
    """Recordings write for as long as they run: their files are created relative to the folder
    opened when the recording started, so a swap later cannot send a frame outside the root."""
    folder, outside = bridge.root / "take", bridge.root.parent / "outside"
    outside.mkdir()
    with bridge.client(timeout=10) as client:
        session = client.open_shm("rec", 8, 6, "BGRA8")
        client.request(f"{P}/record", (str(folder),), f"{P}/record/started")
        client.process_shm(session, np.full((6, 8, 4), 1, np.uint8), 1)
        folder.rename(bridge.root / "take-moved")
        folder.symlink_to(outside, target_is_directory=True)
        for fid in (2, 3):
            client.process_shm(session, np.full((6, 8, 4), fid, np.uint8), fid)
        client.request(f"{P}/record/stop", (), f"{P}/record/stopped")
        client.close_shm(session)
    moved = bridge.root / "take-moved"
    assert wait_until(lambda: (moved / "recording.json").is_file())
    assert list(outside.iterdir()) == []
    assert len(list((moved / "frames").iterdir())) == 3
