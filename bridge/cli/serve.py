"""``pose2person serve``: flags -> :class:`~bridge.config.Config` -> :class:`bridge.server.Bridge`."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import DEFAULT_HTTP_PORT, DEFAULT_MAX_PIXELS, DEFAULT_OSC_PORT, SAFE_OUTPUT_CHOICES, default_allow_root
from .options import (
    add_engine_options,
    add_log_level,
    add_model_options,
    engine_option_values,
    env,
    model_option_values,
)

DEFAULT_MODEL = "puppet"  # models/puppet: works offline, with no downloads


def add_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the bridge daemon")
    serve.add_argument("--host", default=env("HOST", "127.0.0.1"),
                       help="address to bind OSC and HTTP to (default 127.0.0.1; 0.0.0.0 for the LAN)")
    serve.add_argument("--osc-port", type=int, default=env("OSC_PORT", str(DEFAULT_OSC_PORT)),
                       help=f"OSC UDP+TCP port (default {DEFAULT_OSC_PORT}; 0 = any free port)")
    serve.add_argument("--http-port", type=int, default=env("HTTP_PORT", str(DEFAULT_HTTP_PORT)),
                       help=f"OSCQuery/HTTP port (default {DEFAULT_HTTP_PORT}; 0 = any free port)")
    serve.add_argument("--no-http", action="store_true", help="do not serve OSCQuery/HTTP")
    serve.add_argument("--no-tcp", action="store_true", help="do not accept OSC over TCP")
    serve.add_argument("--model", default=env("MODEL", DEFAULT_MODEL),
                       help=f"model to start with: a model card (pose2person models list) or a built-in "
                            f"(passthrough, invert; with --test-models also throttle:<ms>, fault:<kind>); default "
                            f"{DEFAULT_MODEL}, the shipped demo model, which draws a puppet from keypoint messages")
    serve.add_argument("--test-models", action="store_true",
                       help="also offer the test stages throttle:<ms> (a slow model) and fault:<kind> (a failing "
                            "one), to rehearse a patch under load and failure; never on a show network")
    serve.add_argument("--allow-root", action="append", metavar="DIR", dest="allow_roots",
                       help=f"directory that path frames may be read from and written to (repeatable; "
                            f"default {default_allow_root()}, made private: mode 0700)")
    serve.add_argument("--allow-client", action="append", metavar="CIDR", dest="allow_clients",
                       help="only accept these addresses/networks on every surface: OSC, HTTP, WebSocket "
                            "(repeatable; default: everyone who can reach --host)")
    serve.add_argument("--http-host", action="append", metavar="NAME", dest="http_hosts",
                       help="a further name browsers may reach the bridge under (the Host header), e.g. a DNS name "
                            "of this machine; loopback, the bound address, the host name and <host>.local are "
                            "always allowed (repeatable; docs/SECURITY.md)")
    serve.add_argument("--no-monitor", action="store_true",
                       help="no monitor: no thumbnails of camera frames are kept, /monitor/state answers 404")
    serve.add_argument("--max-connections", type=int, default=512, metavar="N",
                       help="OSC-TCP, HTTP and WebSocket connections open at once (default 512, a quarter per "
                            "host; lowered to fit the descriptor limit)")
    serve.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                       help=f"largest frame accepted, in pixels (default {DEFAULT_MAX_PIXELS})")
    serve.add_argument("--shm-dir", default=None, help="where shared-memory channel files live "
                       "(default /dev/shm, else the temp dir; in a private pose2person-<uid> sub-folder unless "
                       "only this user can write DIR)")
    serve.add_argument("--no-zeroconf", action="store_true", help="do not advertise on mDNS/zeroconf")
    serve.add_argument("--zeroconf-interface", action="append", metavar="ADDR", dest="zeroconf_interfaces",
                       help="advertise only on this interface address (repeatable)")
    serve.add_argument("--name", default=None, help="zeroconf instance name (default 'pose2person on <host>')")
    add_log_level(serve, env("LOG_LEVEL", "info"))
    add_model_options(serve)  # --device, --precision, --pose, --models-dir, ...
    serve.add_argument("--safe-output", choices=SAFE_OUTPUT_CHOICES, default=env("SAFE_OUTPUT", "last"),
                       help="what clients see when the model fails, loads or stalls (default last: their last "
                            "good frame); clients may choose their own with /pose2person/safe")
    serve.add_argument("--stall-timeout", type=float, default=float(env("STALL_TIMEOUT", "10")), metavar="S",
                       help="a frame that runs longer restarts the model, without restarting the daemon "
                            "(default 10 s; 0 = never)")
    serve.add_argument("--token-file", default=None, metavar="FILE",
                       help="a shared secret (first line); clients must send /pose2person/auth s <token> before "
                            "messages that change state (model switch, recording, shutdown). Or set "
                            "$POSE2PERSON_TOKEN. Default: no token (docs/SECURITY.md)")
    serve.add_argument("--rate-limit", type=float, default=2000.0, metavar="N",
                       help="OSC messages (each message of a bundle counts) and HTTP requests per second accepted "
                            "from one client host (default 2000; 0 = no limit)")
    add_engine_options(serve)  # --engine, --ray-address, --replicas, ...


def run(args: argparse.Namespace) -> int:
    from .. import config as config_mod
    from ..server import Bridge

    cfg = config_mod.resolve(
        host=args.host, osc_port=args.osc_port, http_port=args.http_port, no_http=args.no_http, no_tcp=args.no_tcp,
        model=args.model, allow_roots=args.allow_roots, allow_clients=args.allow_clients, max_pixels=args.max_pixels,
        shm_dir=args.shm_dir, no_zeroconf=args.no_zeroconf, zeroconf_interfaces=args.zeroconf_interfaces,
        instance_name=args.name, log_level=args.log_level, **model_option_values(args),
        engine=config_mod.resolve_engine(**engine_option_values(args)),
        safe_output=args.safe_output, stall_timeout_s=args.stall_timeout, token_file=args.token_file,
        rate_limit=args.rate_limit, http_hosts=args.http_hosts, monitor=not args.no_monitor,
        test_models=args.test_models, max_connections=args.max_connections,
    )
    Bridge(cfg).run()
    return 0
