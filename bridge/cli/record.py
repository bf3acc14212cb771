"""``pose2person record start|stop FOLDER``: make a running bridge record its clients' input
(``/pose2person/record``, :mod:`bridge.daemon.recorder`); ``pose2person replay`` plays it back."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import protocol
from ..client import BridgeClient, RemoteError, ReplyTimeout
from ..errors import BridgeError
from .options import add_log_level, add_to
from .replay import host_port

P = protocol.PREFIX


def add_parser(sub: Any) -> None:
    record = sub.add_parser("record", help="make a running bridge record its clients' input (keypoints, shm frames)")
    record.add_argument("action", choices=["start", "stop"])
    record.add_argument("folder", metavar="FOLDER", help="a new folder inside the bridge's --allow-root")
    add_to(record)
    record.add_argument("--source", default="all", help="whose input: all (default), HOST or HOST:PORT")
    record.add_argument("--timeout", type=float, default=5.0)
    add_log_level(record, "warning")


def run(args: argparse.Namespace) -> int:
    host, port = host_port(args.to)
    folder = str(Path(args.folder).expanduser().absolute())
    with BridgeClient(host, port, timeout=args.timeout) as client:
        try:
            if args.action == "start":
                msg = client.request(f"{P}/record", (folder, args.source), protocol.RECORD_STARTED)
                print(f"recording {args.source} into {msg.args[0]}; stop with: pose2person record stop {folder} "
                      f"--to {args.to}")
            else:
                msg = client.request(f"{P}/record/stop", (folder,), protocol.RECORD_STOPPED)
                print(f"{msg.args[0]}: {msg.args[1]} entries, {msg.args[2]} bytes ({msg.args[3]})")
        except ReplyTimeout:
            raise BridgeError(f"no bridge answers at {host}:{port}") from None
        except RemoteError as exc:
            raise BridgeError(f"the bridge refused: {exc.code}: {exc.message}") from None
    return 0
