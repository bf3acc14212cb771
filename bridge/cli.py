"""The ``pose2person`` command line: flags -> Config -> the right entry point. No logic here.

Exit codes: 0 success, 1 a command failed (e.g. nothing discovered, a frame failed),
2 usage error, 3 the daemon could not start (bad config, port in use, model missing).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__
from .config import DEFAULT_HTTP_PORT, DEFAULT_MAX_PIXELS, DEFAULT_OSC_PORT, default_allow_root
from .errors import BridgeError

DEFAULT_MODEL = "puppet"  # models/puppet: works offline, with no downloads
EXIT_FAILED = 1
EXIT_STARTUP = 3
log = logging.getLogger("bridge")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"POSE2PERSON_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pose2person", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pose2person {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the bridge daemon")
    serve.add_argument("--host", default=_env("HOST", "127.0.0.1"),
                       help="address to bind OSC and HTTP to (default 127.0.0.1; 0.0.0.0 for the LAN)")
    serve.add_argument("--osc-port", type=int, default=_env("OSC_PORT", str(DEFAULT_OSC_PORT)),
                       help=f"OSC UDP+TCP port (default {DEFAULT_OSC_PORT}; 0 = any free port)")
    serve.add_argument("--http-port", type=int, default=_env("HTTP_PORT", str(DEFAULT_HTTP_PORT)),
                       help=f"OSCQuery/HTTP port (default {DEFAULT_HTTP_PORT}; 0 = any free port)")
    serve.add_argument("--no-http", action="store_true", help="do not serve OSCQuery/HTTP")
    serve.add_argument("--no-tcp", action="store_true", help="do not accept OSC over TCP")
    serve.add_argument("--model", default=_env("MODEL", DEFAULT_MODEL),
                       help=f"model to start with: a model card (pose2person models list) or a built-in "
                            f"(passthrough, invert, throttle:<ms>); default {DEFAULT_MODEL}, the shipped demo "
                            f"model, which draws a puppet from keypoint messages")
    serve.add_argument("--allow-root", action="append", metavar="DIR", dest="allow_roots",
                       help=f"directory that path frames may be read from and written to (repeatable; "
                            f"default {default_allow_root()})")
    serve.add_argument("--allow-client", action="append", metavar="CIDR", dest="allow_clients",
                       help="only accept OSC from these addresses/networks (repeatable; default: everyone "
                            "who can reach --host)")
    serve.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                       help=f"largest frame accepted, in pixels (default {DEFAULT_MAX_PIXELS})")
    serve.add_argument("--shm-dir", default=None, help="where shared-memory channel files live "
                       "(default /dev/shm, else the temp dir)")
    serve.add_argument("--no-zeroconf", action="store_true", help="do not advertise on mDNS/zeroconf")
    serve.add_argument("--zeroconf-interface", action="append", metavar="ADDR", dest="zeroconf_interfaces",
                       help="advertise only on this interface address (repeatable)")
    serve.add_argument("--name", default=None, help="zeroconf instance name (default 'pose2person on <host>')")
    serve.add_argument("--log-level", default=_env("LOG_LEVEL", "info"),
                       choices=["debug", "info", "warning", "error"])
    from .cli_models import add_model_options  # --device, --precision, --pose, --models-dir, ...

    add_model_options(serve)
    serve.add_argument("--safe-output", choices=["last", "input", "black", "pattern", "off"],
                       default=_env("SAFE_OUTPUT", "last"),
                       help="what clients see when the model fails, loads or stalls (default last: their last "
                            "good frame); clients may choose their own with /pose2person/safe")
    serve.add_argument("--stall-timeout", type=float, default=float(_env("STALL_TIMEOUT", "10")), metavar="S",
                       help="a frame that runs longer restarts the model, without restarting the daemon "
                            "(default 10 s; 0 = never)")
    serve.add_argument("--token-file", default=None, metavar="FILE",
                       help="a shared secret (first line); clients must send /pose2person/auth s <token> before "
                            "messages that change state (model switch, recording, shutdown). Or set "
                            "$POSE2PERSON_TOKEN. Default: no token (docs/SECURITY.md)")
    serve.add_argument("--rate-limit", type=float, default=2000.0, metavar="N",
                       help="OSC packets per second accepted from one client host (default 2000; 0 = no limit)")
    from .cli_engine import add_engine_options  # --engine, --ray-address, --replicas, ...

    add_engine_options(serve)

    disc = sub.add_parser("discover", help="list bridges (and other OSCQuery services) on the network")
    disc.add_argument("--interface", action="append", metavar="ADDR", default=[],
                      help="browse only on this interface address (repeatable)")
    disc.add_argument("--timeout", type=float, default=3.0, help="seconds to listen (default 3)")
    disc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    disc.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])

    send = sub.add_parser("send", help="process images and videos through a running bridge")
    send.add_argument("inputs", nargs="+", metavar="FILE", help="images and/or videos")
    send.add_argument("--to", default=f"127.0.0.1:{DEFAULT_OSC_PORT}", metavar="HOST:PORT",
                      help=f"the bridge's OSC address (default 127.0.0.1:{DEFAULT_OSC_PORT})")
    send.add_argument("--transport", choices=["shm", "path"], default="shm",
                      help="shm (same machine, fastest) or path (files in the bridge's allowed root)")
    send.add_argument("-o", "--output", metavar="DIR", default=None,
                      help="write results here (images as <name>.png, videos as <name>.mp4)")
    send.add_argument("--model", default=None, help="switch the bridge to this model first")
    send.add_argument("--stage-dir", default=None,
                      help=f"for --transport path: a directory inside the bridge's --allow-root "
                           f"(default {default_allow_root()})")
    send.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each frame")
    send.add_argument("--no-progress", action="store_true", help="no progress bar")
    send.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])

    from .cli_tools import add_parsers  # synth, dataset build, train, demo

    add_parsers(sub)
    from .cli_models import add_parsers as add_model_parsers  # models, check, run

    add_model_parsers(sub)
    from .pose_cmd import add_parser as add_pose_parser  # pose (DensePose images offline)

    add_pose_parser(sub)
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _serve(args: argparse.Namespace) -> int:
    from . import config as config_mod
    from .cli_engine import engine_option_values
    from .cli_models import model_option_values
    from .server import Bridge

    cfg = config_mod.resolve(
        host=args.host, osc_port=args.osc_port, http_port=args.http_port, no_http=args.no_http, no_tcp=args.no_tcp,
        model=args.model, allow_roots=args.allow_roots, allow_clients=args.allow_clients, max_pixels=args.max_pixels,
        shm_dir=args.shm_dir, no_zeroconf=args.no_zeroconf, zeroconf_interfaces=args.zeroconf_interfaces,
        instance_name=args.name, log_level=args.log_level, **model_option_values(args),
        engine=config_mod.resolve_engine(**engine_option_values(args)),
        safe_output=args.safe_output, stall_timeout_s=args.stall_timeout, token_file=args.token_file,
        rate_limit=args.rate_limit,
    )
    Bridge(cfg).run()
    return 0


def _discover(args: argparse.Namespace) -> int:
    from .discover_cmd import run_discover

    return run_discover(args.interface, args.timeout, args.json)


def _send(args: argparse.Namespace) -> int:
    from .send_cmd import run_send

    return run_send(args)


def _pose(args: argparse.Namespace) -> int:
    from .pose_cmd import run_pose

    return run_pose(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level)
    commands = {"serve": _serve, "discover": _discover, "send": _send}
    from .cli_tools import COMMANDS as model_commands

    commands.update(model_commands)
    from .cli_models import COMMANDS as generator_commands

    commands.update(generator_commands)
    commands["pose"] = _pose
    try:
        return commands[args.command](args)
    except BridgeError as exc:
        log.error("%s", exc)
        return EXIT_STARTUP if args.command == "serve" else EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
