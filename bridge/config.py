"""One frozen configuration, resolved once from CLI flags (and ``POSE2PERSON_*`` env).

Each component receives only its own section. No torch, no I/O beyond resolving paths.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from .errors import ConfigError
from .protocol import DEFAULT_HTTP_PORT, DEFAULT_OSC_PORT, MAX_TRACKED_PEOPLE

DEFAULT_MAX_PIXELS = 7680 * 4320  # 8K UHD; bigger frames are refused
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)  # every --log-level flag offers these
DEFAULT_DENSEPOSE_MODEL = "densepose_rcnn_R_50_FPN_s1x"  # the DensePose card (and config) used when none is named


def default_allow_root() -> Path:
    """``<system temp>/pose2person``: the one place path frames may live unless told otherwise."""
    return Path(tempfile.gettempdir()) / "pose2person"


@dataclass(frozen=True)
class OscConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_OSC_PORT  # UDP and TCP share the number; 0 = pick a free one
    tcp: bool = True
    max_packet_bytes: int = 65536  # larger TCP packets are refused; UDP cannot exceed 65507 anyway
    max_clients: int = 256  # per-client state beyond this evicts the least recently seen


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_HTTP_PORT  # 0 = pick a free one (logged)
    enabled: bool = True
    hosts: tuple[str, ...] = ()  # --http-host: more names the Host header may carry (a DNS name of this machine)
    monitor: bool = True  # --no-monitor: no thumbnails are taken and /monitor/state answers 404
    max_websockets: int = 32  # open WebSockets at once, 1/8 per host (each may hold a half-sent message of <= 32 MiB)
    ws_queue_bytes: int = 16 * 1024 * 1024  # replies waiting for one WebSocket client; beyond it they are dropped


@dataclass(frozen=True)
class SecurityConfig:
    allow_roots: tuple[Path, ...] = ()
    allow_clients: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # empty = everyone
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = 256 * 1024 * 1024  # an image file bigger than this is refused unread
    token: str = field(default="", repr=False)  # "" = no token; else state-changing messages need /auth
    max_packets_per_s: float = 2000.0  # OSC messages + HTTP requests per client host and second; 0 = unlimited
    max_bundle_messages: int = 64  # a bundle with more messages (nested ones counted) is refused whole
    max_connections: int = 512  # OSC-TCP + HTTP + WebSocket sockets at once (lowered to fit the fd limit)
    max_connections_per_host: int = 128  # of those, from one client host

    def client_allowed(self, host: str) -> bool:
        """True when no --allow-client list is set or ``host`` is inside one of its networks."""
        if not self.allow_clients:
            return True
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        candidates = [addr]
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d: match IPv4 networks
            # by the IPv4 address, and IPv6 networks (e.g. ::ffff:0:0/96) by the address as is.
            candidates.append(addr.ipv4_mapped)
        return any(a.version == net.version and a in net for a in candidates for net in self.allow_clients)


@dataclass(frozen=True)
class ShmConfig:
    directory: Path = Path()
    slots: int = 3
    max_channels: int = 64
    max_bytes: int = 2 * 1024**3  # all channels' files together (input + output), so opens cannot fill /dev/shm


@dataclass(frozen=True)
class DiscoveryConfig:
    enabled: bool = True
    interfaces: tuple[str, ...] = ()  # empty = derived from the OSC host
    instance_name: str = ""


@dataclass(frozen=True)
class PipelineConfig:
    """What the model worker runs. ``None`` overrides mean "as the model card says"."""

    model: str = "passthrough"
    model_dirs: tuple[Path, ...] = ()  # searched before the shipped models/ and the user's models dir
    device: str = "auto"  # auto = CUDA, then Apple MPS, then CPU
    precision: str | None = None  # fp32 | fp16 | bf16
    norm_mode: str | None = None  # stable | reference | eval (BatchNorm/dropout at inference)
    accel: str = "auto"  # auto | eager | onednn | compile | cuda-graph
    pose: str | None = None  # image | densepose | keypoints
    densepose_model: str = DEFAULT_DENSEPOSE_MODEL  # the card --pose densepose uses
    memory_budget_mb: int = 4096  # weights of resident (recently used) models kept loaded
    warm_up: bool = True  # run each model once before it takes frames
    max_batch: int = 1  # frames of different clients generated as one batch (local engine; docs/GENERATOR.md)
    pipeline_depth: int = 0  # frames of one client in flight at once (0 = auto: 2 for DensePose on a GPU, else 1)
    threads: int = 0  # torch intra-op threads for the model (0 = torch's default: one per core)
    max_people: int = 1  # people the camera tracker follows per client (a client's /people changes its own)
    test_models: bool = False  # --test-models: the test stages (throttle, fault) exist; never otherwise


EngineKind = Literal["local", "ray"]


@dataclass(frozen=True)
class SafetyConfig:
    """What clients see when the model cannot answer (bridge/daemon/safe_output.py), and when a stage
    counts as stalled."""

    safe_output: str = "last"  # last | input | black | pattern | off (a client may choose its own)
    stall_timeout_s: float = 10.0  # a frame running longer restarts the stage (0 = never)


@dataclass(frozen=True)
class EngineConfig:
    """Where the model stage runs (bridge/engines/). ``local``: the daemon's own worker thread;
    ``ray``: Ray Serve replicas (docs/SCALING.md), the daemon stays the front end."""

    kind: EngineKind = "local"
    ray_address: str | None = None  # None = start a private local Ray cluster with the daemon
    ray_app: str = "pose2person"  # Serve application name (one per bridge on a shared cluster)
    replicas: int = 1  # replicas at start (fixed unless min/max replicas are set)
    min_replicas: int | None = None  # autoscaling lower bound (None = fixed replica count)
    max_replicas: int | None = None  # autoscaling upper bound
    num_gpus: float = 0.0  # GPUs reserved per replica (fractions share a GPU)
    num_cpus: float = 1.0  # CPUs reserved per replica
    local_cpus: int | None = None  # CPUs the private local cluster offers (None = all cores)

    @property
    def max_in_flight(self) -> int:
        """Frames the front end keeps in flight at most: one per replica it may have."""
        return max(self.replicas, self.max_replicas or 0)


@dataclass(frozen=True)
class Config:
    osc: OscConfig = field(default_factory=OscConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    shm: ShmConfig = field(default_factory=ShmConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    log_level: LogLevel = "info"
    engine: EngineConfig = field(default_factory=EngineConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)


def default_instance_name() -> str:
    """Stable across restarts: the host name is in it, nothing random."""
    host = socket.gethostname().split(".")[0] or "localhost"
    return f"pose2person on {host}"


def _check_port(name: str, port: int) -> int:
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name} must be 0..65535, not {port}")
    return port


def _check_host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ConfigError(f"--host must be an IP address (or localhost), not {host!r}") from None
        host = "127.0.0.1"
    return host


def resolve(
    *,
    host: str = "127.0.0.1",
    osc_port: int = DEFAULT_OSC_PORT,
    http_port: int = DEFAULT_HTTP_PORT,
    no_http: bool = False,
    no_tcp: bool = False,
    model: str = "passthrough",
    allow_roots: list[str] | None = None,
    allow_clients: list[str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    shm_dir: str | None = None,
    no_zeroconf: bool = False,
    zeroconf_interfaces: list[str] | None = None,
    instance_name: str | None = None,
    log_level: str = "info",
    model_dirs: list[str] | None = None,
    device: str = "auto",
    precision: str | None = None,
    norm_mode: str | None = None,
    accel: str = "auto",
    pose: str | None = None,
    densepose_model: str = DEFAULT_DENSEPOSE_MODEL,
    memory_budget_mb: int = 4096,
    max_batch: int = 1,
    pipeline_depth: int = 0,
    threads: int = 0,
    max_people: int = 1,
    engine: EngineConfig | None = None,
    safe_output: str = "last",
    stall_timeout_s: float = 10.0,
    token_file: str | None = None,
    rate_limit: float = 2000.0,
    http_hosts: list[str] | None = None,
    monitor: bool = True,
    test_models: bool = False,
    max_connections: int = 512,
) -> Config:
    """Validate raw option values and build the frozen :class:`Config`. Creates missing roots."""
    from .shm import UnsafeFolderError, channel_folder, default_shm_dir, private_folder  # numpy-only; lazy

    host = _check_host(host)
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"--log-level must be debug, info, warning or error, not {log_level!r}")
    if max_pixels <= 0:
        raise ConfigError("--max-pixels must be positive")
    roots: list[Path] = []
    for raw in allow_roots or []:
        root = Path(raw).expanduser()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--allow-root {raw}: cannot create it ({exc.strerror})") from None
        roots.append(root.resolve())
    if not roots:
        # The default root sits in the shared temp folder: it must be ours alone (0700), or another
        # user could read the pictures there or plant links and files (docs/SECURITY.md).
        try:
            roots.append(private_folder(default_allow_root(), "the default allowed root").resolve())
        except UnsafeFolderError as exc:
            raise ConfigError(f"{exc}; or name a root with --allow-root") from None
    networks = []
    for cidr in allow_clients or []:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ConfigError(f"--allow-client {cidr!r} is not an address or CIDR network") from None
    shm_directory = Path(shm_dir).expanduser() if shm_dir else default_shm_dir()
    if not shm_directory.is_dir():
        raise ConfigError(f"--shm-dir {shm_directory} is not a directory")
    try:  # a shared folder such as /dev/shm: the channel files go in a private sub-folder of it
        shm_directory = channel_folder(shm_directory.resolve())
    except UnsafeFolderError as exc:
        raise ConfigError(f"{exc} (--shm-dir)") from None
    interfaces = tuple(zeroconf_interfaces or ())
    for iface in interfaces:
        try:
            ipaddress.ip_address(iface)
        except ValueError:
            raise ConfigError(f"--zeroconf-interface {iface!r} is not an IP address") from None
    pipeline = resolve_pipeline(model=model, model_dirs=model_dirs, device=device, precision=precision,
                                norm_mode=norm_mode, accel=accel, pose=pose, densepose_model=densepose_model,
                                memory_budget_mb=memory_budget_mb, max_batch=max_batch,
                                pipeline_depth=pipeline_depth, threads=threads, max_people=max_people,
                                test_models=test_models)
    if not 8 <= max_connections <= 100_000:
        raise ConfigError(f"--max-connections must be 8..100000, not {max_connections}")
    return Config(
        osc=OscConfig(host=host, port=_check_port("--osc-port", osc_port), tcp=not no_tcp),
        http=HttpConfig(host=host, port=_check_port("--http-port", http_port), enabled=not no_http,
                        hosts=_check_http_hosts(http_hosts or []), monitor=monitor),
        security=SecurityConfig(allow_roots=tuple(roots), allow_clients=tuple(networks), max_pixels=max_pixels,
                                token=_read_token(token_file), max_packets_per_s=_check_rate(rate_limit),
                                max_connections=max_connections,
                                max_connections_per_host=max(4, max_connections // 4)),
        shm=ShmConfig(directory=shm_directory.resolve()),
        discovery=DiscoveryConfig(
            enabled=not no_zeroconf, interfaces=interfaces,
            instance_name=instance_name or os.environ.get("POSE2PERSON_NAME") or default_instance_name(),
        ),
        pipeline=pipeline,
        log_level=log_level,  # type: ignore[arg-type]
        engine=engine or EngineConfig(),
        safety=resolve_safety(safe_output, stall_timeout_s),
    )


PRECISION_CHOICES = ("fp32", "fp16", "bf16")
NORM_MODE_CHOICES = ("stable", "reference", "eval")
ACCEL_CHOICES = ("auto", "eager", "onednn", "compile", "cuda-graph")
POSE_CHOICES = ("image", "densepose", "keypoints", "tracker-densepose")
FRAMINGS: tuple[str, ...] = ("squash", "center-crop", "letterbox")  # frame -> the model's input (generator.processing)


def resolve_pipeline(*, model: str = "passthrough", model_dirs: list[str] | None = None, device: str = "auto",
                     precision: str | None = None, norm_mode: str | None = None, accel: str = "auto",
                     pose: str | None = None, densepose_model: str = DEFAULT_DENSEPOSE_MODEL,
                     memory_budget_mb: int = 4096, warm_up: bool = True, max_batch: int = 1,
                     pipeline_depth: int = 0, threads: int = 0, max_people: int = 1,
                     test_models: bool = False) -> PipelineConfig:
    """Validate the model-side options (shared by ``serve``, ``run`` and ``check``)."""
    for flag, value, choices in (("--precision", precision, PRECISION_CHOICES),
                                 ("--norm-mode", norm_mode, NORM_MODE_CHOICES),
                                 ("--accel", accel, ACCEL_CHOICES), ("--pose", pose, POSE_CHOICES)):
        if value is not None and value not in choices:
            raise ConfigError(f"{flag} must be one of {', '.join(choices)}, not {value!r}")
    if device != "auto" and device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device must be auto, cpu, cuda[:N] or mps, not {device!r}")
    if memory_budget_mb < 0:
        raise ConfigError("--memory-budget-mb must be >= 0")
    if not 1 <= max_batch <= 64:
        raise ConfigError(f"--max-batch must be 1..64, not {max_batch}")
    if not 0 <= pipeline_depth <= 4:
        raise ConfigError(f"--pipeline-depth must be auto (0) or 1..4, not {pipeline_depth}")
    if not 0 <= threads <= 256:
        raise ConfigError(f"--threads must be 0 (torch's default) .. 256, not {threads}")
    if not 1 <= max_people <= MAX_TRACKED_PEOPLE:
        raise ConfigError(f"--max-people must be 1..{MAX_TRACKED_PEOPLE}, not {max_people}")
    dirs: list[Path] = []
    for raw in model_dirs or []:
        d = Path(raw).expanduser()
        if not d.is_dir():
            raise ConfigError(f"--models-dir {raw}: not a directory")
        dirs.append(d.resolve())
    return PipelineConfig(model=model, model_dirs=tuple(dirs), device=device, precision=precision,
                          norm_mode=norm_mode, accel=accel, pose=pose, densepose_model=densepose_model,
                          memory_budget_mb=memory_budget_mb, warm_up=warm_up, max_batch=max_batch,
                          pipeline_depth=pipeline_depth, threads=threads, max_people=max_people,
                          test_models=test_models)


ENGINE_CHOICES = ("local", "ray")


def resolve_engine(*, engine: str = "local", ray_address: str | None = None, ray_app: str = "pose2person",
                   replicas: int = 1, min_replicas: int | None = None, max_replicas: int | None = None,
                   num_gpus: float = 0.0, num_cpus: float = 1.0, local_cpus: int | None = None) -> EngineConfig:
    """Validate the engine options (``serve --engine ...``); no Ray import here."""
    if engine not in ENGINE_CHOICES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINE_CHOICES)}, not {engine!r}")
    if replicas < 1:
        raise ConfigError("--replicas must be >= 1")
    if (min_replicas is None) != (max_replicas is None):
        raise ConfigError("--min-replicas and --max-replicas go together (autoscaling bounds)")
    if min_replicas is not None and max_replicas is not None:
        if not 1 <= min_replicas <= replicas <= max_replicas:
            raise ConfigError("autoscaling needs 1 <= --min-replicas <= --replicas <= --max-replicas")
    if num_gpus < 0 or num_cpus < 0:
        raise ConfigError("--gpus-per-replica and --cpus-per-replica must be >= 0")
    if local_cpus is not None and local_cpus < 1:
        raise ConfigError("--ray-local-cpus must be >= 1")
    if not ray_app or not all(c.isalnum() or c in "-_" for c in ray_app):
        raise ConfigError(f"--ray-app must be letters, digits, - and _, not {ray_app!r}")
    if engine == "local" and ray_address:
        raise ConfigError("--ray-address needs --engine ray")
    return EngineConfig(kind=engine, ray_address=ray_address or None, ray_app=ray_app,  # type: ignore[arg-type]
                        replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas,
                        num_gpus=num_gpus, num_cpus=num_cpus, local_cpus=local_cpus)


SAFE_OUTPUT_CHOICES = ("last", "input", "black", "pattern", "off")


def resolve_safety(safe_output: str = "last", stall_timeout_s: float = 10.0) -> SafetyConfig:
    if safe_output not in SAFE_OUTPUT_CHOICES:
        raise ConfigError(f"--safe-output must be one of {', '.join(SAFE_OUTPUT_CHOICES)}, not {safe_output!r}")
    if not 0 <= stall_timeout_s <= 3600:
        raise ConfigError(f"--stall-timeout must be 0 (never) .. 3600 seconds, not {stall_timeout_s}")
    return SafetyConfig(safe_output=safe_output, stall_timeout_s=float(stall_timeout_s))


MIN_TOKEN_CHARS = 8


def _read_token(token_file: str | None) -> str:
    """The shared control token: ``--token-file`` (first line) or ``$POSE2PERSON_TOKEN``; "" = none.
    A file keeps it out of ``ps`` listings and shell history."""
    token = os.environ.get("POSE2PERSON_TOKEN", "")
    if token_file:
        try:
            token = Path(token_file).expanduser().read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise ConfigError(f"--token-file {token_file}: cannot read a token from it ({exc})") from None
    if token and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the control token must have at least {MIN_TOKEN_CHARS} characters")
    return token


def _check_rate(rate: float) -> float:
    if not 0 <= rate <= 1e6:
        raise ConfigError(f"--rate-limit must be 0 (unlimited) .. 1000000 messages/s, not {rate}")
    return float(rate)


def _check_http_hosts(names: list[str]) -> tuple[str, ...]:
    """``--http-host`` names: DNS names (or addresses) under which browsers reach this bridge.
    Lower-cased, without a port; a name with anything but letters, digits, ``-``, ``.``, ``:``
    is refused (a Host header is compared with these exactly)."""
    out: list[str] = []
    for raw in names:
        name = raw.strip().lower().rstrip(".")
        if not name or len(name) > 253 or not all(c.isalnum() or c in "-.:[]" for c in name):
            raise ConfigError(f"--http-host must be a host name or address, not {raw!r}")
        out.append(name.strip("[]"))
    return tuple(out)
