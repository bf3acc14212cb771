"""The OSC control plane: decode packets, validate arguments, act, answer.

Handlers are small synchronous functions on the event-loop thread: they check, hand
frames to the pipeline and reply. Pixels never travel over OSC. Every refusal is
answered with ``/pose2person/error i frame_id s code s message`` and logged (rate
limited); nothing a client sends can stop the daemon from serving the others.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Protocol

from .. import protocol, stages
from ..config import Config
from ..errors import ClientError, ModelLoadError
from ..formats.imageio import WRITE_EXTENSIONS
from ..formats.paths import resolve_input, resolve_output
from ..osc import OscArg, OscDecodeError, OscMessage, decode_packet, encode_message
from ..pose.keypoints import parse_keypoint_args
from ..pose.tracker.smoothing import SmoothingSettings
from ..shm import ShmError
from ..util import metrics
from ..util.frame_context import VIEWS
from ..util.logutil import RateLimitedLog
from .access import AccessPolicy
from .jobs import FrameJob, PathJob, ShmJob, error_packet
from .keypoint_jobs import KeypointJob, KeypointTarget
from .pipeline import Pipeline, model_list_packet
from .recorder import Recorder
from .safe_output import POLICIES
from .shm_channels import ChannelRegistry

log = logging.getLogger(__name__)

FRAME_ID_WRAP = protocol.PD_SAFE_FRAME_ID_LIMIT  # auto-assigned ids stay exact in Pd's float32


class Peer(Protocol):
    """One client as a transport sees it."""

    key: Hashable  # identity for its mailbox: (transport, host, port)
    host: str

    def reply(self, packet: bytes) -> None:
        """Send an encoded OSC packet to the client (loop thread only)."""


@dataclass(frozen=True)
class _Args:
    values: tuple[OscArg, ...]
    signature: str


class Router:
    """UDP reply routing: registered (host, port) -> reply port, plus per-host defaults.

    Bounded LRU tables: a client flood cannot grow them without limit.
    """

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._by_sender: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._by_host: OrderedDict[str, int] = OrderedDict()

    @staticmethod
    def _put(table: OrderedDict, key: object, value: int, limit: int) -> None:  # type: ignore[type-arg]
        table.pop(key, None)
        table[key] = value
        while len(table) > limit:
            table.popitem(last=False)

    def register(self, host: str, port: int, reply_port: int) -> None:
        self._put(self._by_sender, (host, port), reply_port, self._max)

    def register_host(self, host: str, reply_port: int) -> None:
        self._put(self._by_host, host, reply_port, self._max)

    def destination(self, host: str, port: int) -> tuple[str, int]:
        """Registered port of this sender, else its host's default, else the sender itself."""
        reply_port = self._by_sender.get((host, port)) or self._by_host.get(host) or port
        return host, reply_port


def _frame_reply(peer: Peer) -> Callable[[bytes], None]:
    """The reply function for one frame job. Connection peers (TCP) count their frames in
    flight through it, so a client that half-closes after its last request still gets the
    answers before the connection is closed."""
    track: Callable[[], Callable[[bytes], None]] | None = getattr(peer, "frame_reply", None)
    return track() if track is not None else peer.reply


def _coerce(args: tuple[OscArg, ...], tags: str, signatures: tuple[str, ...]) -> _Args | None:
    """Match ``args`` against the accepted signatures.

    Pd's ``[oscformat]`` and Max send numbers as ``f`` by default, so an integral float
    is accepted where ``i`` is expected.
    """
    for sig in signatures:
        if len(sig) != len(tags):
            continue
        out: list[OscArg] = []
        for want, got, value in zip(sig, tags, args):
            if want == got:
                out.append(value)
            elif want == "i" and got == "f" and isinstance(value, float) and value.is_integer() \
                    and abs(value) < 2**31:
                out.append(int(value))
            else:
                break
        else:
            return _Args(tuple(out), sig)
    return None


#: Messages that change what everyone gets; they need /auth when a control token is set.
GUARDED = frozenset({f"{protocol.PREFIX}/model", f"{protocol.PREFIX}/record", f"{protocol.PREFIX}/record/stop",
                     f"{protocol.PREFIX}/shutdown"})


#: Replies one packet may cause, in bytes: this floor, or this many times the packet's size.
REPLY_BUDGET_FLOOR = 4096
REPLY_BUDGET_FACTOR = 4
_FD_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


class _BudgetedPeer:
    """A peer whose synchronous replies to one bundle are counted against a byte budget, so
    a small packet cannot buy a large answer (a reflector, or a loop busy encoding). Replies
    after the packet was handled (frame results, model ready) pass through uncounted."""

    def __init__(self, peer: Peer, budget: int) -> None:
        self._peer = peer
        self.key = peer.key
        self.host = peer.host
        self.left = budget
        self.active = True
        self.over = 0

    def reply(self, packet: bytes) -> None:
        if self.active:
            if len(packet) > self.left:
                self.over += 1
                return
            self.left -= len(packet)
        self._peer.reply(packet)

    def __getattr__(self, name: str) -> object:  # frame_reply, reply_from_worker: the real peer's
        return getattr(self._peer, name)


class Controller:
    """Maps the documented OSC namespace to actions. Loop-thread only."""

    def __init__(self, config: Config, pipeline: Pipeline, channels: ChannelRegistry, router: Router,
                 access: AccessPolicy | None = None) -> None:
        self._config = config
        self.access = access or AccessPolicy(config)  # the daemon's one policy (bridge/daemon/access.py)
        self._pipeline = pipeline
        self._channels = channels
        self._router = router
        self._ratelog = RateLimitedLog(log)
        self._next_frame_id = 0
        self._clients: OrderedDict[Hashable, float] = OrderedDict()  # key -> last seen (monotonic)
        self._tasks: set[asyncio.Task[None]] = set()
        self._keypoint_targets: OrderedDict[Hashable, KeypointTarget] = OrderedDict()  # bounded by max_clients
        self._safe_policies: OrderedDict[Hashable, str] = OrderedDict()  # bounded by max_clients
        self._mirrored: OrderedDict[Hashable, bool] = OrderedDict()  # /mirror, bounded by max_clients
        self._views: OrderedDict[Hashable, str] = OrderedDict()  # /view, bounded by max_clients
        self._people: OrderedDict[Hashable, int] = OrderedDict()  # /people, bounded by max_clients
        self._smoothing: OrderedDict[Hashable, SmoothingSettings] = OrderedDict()  # /smoothing, bounded
        self._card_smoothing: SmoothingSettings | None = None  # the tracker card's, read once
        self.rate_limited_packets = 0
        self.replies_over_budget = 0
        self.request_shutdown: Callable[[], None] | None = None  # set by the server
        self.malformed_packets = 0
        self.recorder = Recorder(config.security.allow_roots)  # /pose2person/record (bridge/daemon/recorder.py)
        self._handlers: dict[str, Callable[[Peer, _Args], None]] = {
            f"{protocol.PREFIX}/ping": self._ping,
            f"{protocol.PREFIX}/register": self._register,
            f"{protocol.PREFIX}/register/host": self._register_host,
            f"{protocol.PREFIX}/frame/path": self._frame_path,
            f"{protocol.PREFIX}/frame/shm": self._frame_shm,
            f"{protocol.PREFIX}/safe": self._safe,
            f"{protocol.PREFIX}/mirror": self._mirror,
            f"{protocol.PREFIX}/view": self._view,
            f"{protocol.PREFIX}/people": self._people_count,
            f"{protocol.PREFIX}/smoothing": self._smoothing_settings,
            f"{protocol.PREFIX}/auth": self._auth,
            f"{protocol.PREFIX}/shutdown": self._shutdown,
            f"{protocol.PREFIX}/keypoints": self._keypoints,
            f"{protocol.PREFIX}/keypoints/target": self._keypoints_target,
            f"{protocol.PREFIX}/keypoints/target/path": self._keypoints_target_path,
            f"{protocol.PREFIX}/shm/open": self._shm_open,
            f"{protocol.PREFIX}/shm/close": self._shm_close,
            f"{protocol.PREFIX}/model": self._model,
            f"{protocol.PREFIX}/models": self._models,
            f"{protocol.PREFIX}/status": self._status,
            f"{protocol.PREFIX}/status/stages": self._status_stages,
            f"{protocol.PREFIX}/status/process": self._status_process,
            f"{protocol.PREFIX}/record": self._record,
            f"{protocol.PREFIX}/record/stop": self._record_stop,
        }
        missing = set(protocol.ADDRESS_BY_PATH) ^ set(self._handlers)
        assert not missing, f"protocol table and handlers disagree: {missing}"

    @property
    def router(self) -> Router:
        return self._router

    # -- entry point --------------------------------------------------------------------
    def packet_cost(self, data: bytes | memoryview) -> int:
        """Tokens a packet is charged before it is decoded: 1 for a message; for a bundle the
        most messages it can hold (every message takes at least 12 bytes in a bundle), at most
        ``max_bundle_messages``. What a bundle did not use is refunded after decoding, so a
        host cannot make the daemon decode more messages than its budget pays for."""
        if bytes(data[:8]) != b"#bundle\0":
            return 1
        return max(1, min(self._config.security.max_bundle_messages, (len(data) - 16) // 12))

    def admit(self, host: str, make_peer: Callable[[], Peer], cost: int = 1) -> bool:
        """Is a packet from ``host`` allowed and within its budget? Spends ``cost`` tokens when
        it is. Transports call this before copying or decoding anything (then
        ``handle_packet(..., admitted=True, prepaid=cost)``); over budget, the host is told at
        most once a second (``make_peer`` builds whom to tell, only then)."""
        access = self.access
        if not access.client_allowed(host):
            self._ratelog.log(logging.WARNING, f"denied {host}", "packet from %s refused by --allow-client", host)
            return False  # no reply: answering unlisted hosts would make the bridge a reflector
        if not access.rate.take(host, cost):
            self.rate_limited_packets += 1
            if access.rate.should_notify(host):
                self._rate_limited(make_peer(), counted=True)
            return False
        return True

    def handle_packet(self, data: bytes, peer: Peer, *, admitted: bool = False, prepaid: int | None = None) -> None:
        """Decode one packet from ``peer`` and act on each message in it.

        Budgets (docs/SECURITY.md): the packet costs its host one token of the per-host rate
        budget per message, paid before decoding (:meth:`packet_cost`, the unused part
        refunded); a bundle over ``max_bundle_messages`` is refused whole
        (``bundle_too_large``) when the first message over it is reached; the replies to a
        bundle are bounded by its size (``too_many_replies``). ``admitted``: the transport
        already called :meth:`admit` and paid ``prepaid`` tokens."""
        access = self.access
        cost = self.packet_cost(data) if prepaid is None else prepaid
        if not admitted and not self.admit(peer.host, lambda: peer, cost):
            return
        self._touch(peer.key)
        try:
            messages = decode_packet(data, self._config.security.max_bundle_messages)
        except OscDecodeError as exc:
            self.malformed_packets += 1  # (a bundle over the cap paid for the most it may hold: no refund)
            self._refuse(peer, ClientError(exc.code, exc.message), exc.address)
            return
        if len(messages) < cost:
            access.rate.refund(peer.host, cost - len(messages))
        if len(messages) > 1:
            allowance = max(REPLY_BUDGET_FLOOR, REPLY_BUDGET_FACTOR * len(data))
            budgeted = _BudgetedPeer(peer, allowance)
            skipped = 0
            try:
                for i, message in enumerate(messages):
                    if budgeted.over:  # its answers would be dropped: the rest of the bundle is not run
                        skipped = len(messages) - i
                        break
                    self._dispatch_one(message, budgeted)
            finally:
                budgeted.active = False
            if budgeted.over:
                self.replies_over_budget += budgeted.over + skipped
                self._refuse(peer, ClientError("too_many_replies", f"a bundle of {len(data)} bytes may cause at most "
                                               f"{allowance} bytes of replies: {budgeted.over} dropped, the last "
                                               f"{skipped} messages not run; send fewer queries per bundle"), None)
            return
        for message in messages:
            self._dispatch_one(message, peer)

    def _dispatch_one(self, message: OscMessage, peer: Peer) -> None:
        try:
            self._dispatch(message, peer)
        except ClientError as exc:
            self._refuse(peer, exc, message.address)
        except OSError as exc:
            if exc.errno not in _FD_ERRNOS:
                self._internal(peer, exc, message.address)
                return
            # Out of descriptors or memory: a state of the machine, not a bug; no traceback.
            self._refuse(peer, ClientError("out_of_resources", f"{message.address}: {exc.strerror or exc}; "
                                           "try again later"), message.address)
        except Exception as exc:  # a handler bug must not take the transport down
            self._internal(peer, exc, message.address)

    def _internal(self, peer: Peer, exc: Exception, address: str) -> None:
        self._ratelog.log(logging.ERROR, f"internal {address}", "handler for %s failed: %s: %s", address,
                          type(exc).__name__, exc, exc_info=exc)
        self._refuse(peer, ClientError("internal", f"{type(exc).__name__}: {exc}"), address)

    def _rate_limited(self, peer: Peer, counted: bool = False) -> None:
        if not counted:
            self.rate_limited_packets += 1
        rate = self.access.rate
        if counted or rate.should_notify(peer.host):  # one answer a second, so the limit itself cannot flood
            self._refuse(peer, ClientError("rate_limited", f"more than {rate.rate:g} messages/s from "
                                           f"{peer.host}; messages are being dropped"), None)

    def _refuse(self, peer: Peer, exc: ClientError, address: str | None) -> None:
        self._ratelog.log(logging.WARNING, f"{exc.code} {peer.host}", "%s from %s:%s (%s): %s", exc.code,
                          peer.host, peer.key, address or "?", exc.message)
        if self._pipeline.monitor is not None:  # the monitor page lists refusals too
            self._pipeline.monitor.error(peer.key, exc.code, exc.message, exc.frame_id)
        peer.reply(error_packet(exc.code, exc.message, exc.frame_id))

    def _dispatch(self, message: OscMessage, peer: Peer) -> None:
        handler = self._handlers.get(message.address)
        spec = protocol.ADDRESS_BY_PATH.get(message.address)
        if handler is None or spec is None:
            raise ClientError("unknown_address", f"unknown address {message.address}; "
                              f"see GET / on the HTTP port or docs/PROTOCOL.md")
        if spec.variadic and message.typetags.startswith("s"):  # the handler checks every value itself
            handler(peer, _Args(tuple(message.args), message.typetags))
            return
        if message.address in GUARDED and self._config.security.token and not self.access.is_authorized(peer.key) \
                and not (message.address == f"{protocol.PREFIX}/model" and not message.args):
            raise ClientError("not_authorized", f"{message.address} changes the bridge's state: send "
                              f"/pose2person/auth s <token> first (the daemon runs with a control token)")
        args = _coerce(message.args, message.typetags, spec.signatures)
        if args is None:
            wanted = " or ".join(f"',{s}'" for s in spec.signatures)
            raise ClientError("bad_arguments", f"{message.address} takes {wanted}, got ',{message.typetags}'",
                              self._frame_id_hint(message))
        handler(peer, args)

    @staticmethod
    def _frame_id_hint(message: OscMessage) -> int:
        """Best-effort frame id of a malformed frame request, so the error can name it."""
        if message.address.startswith(f"{protocol.PREFIX}/frame/") and message.args:
            last = message.args[-1]
            if isinstance(last, int):
                return last
        return protocol.NO_FRAME_ID

    def _touch(self, key: Hashable) -> None:
        self._clients.pop(key, None)
        self._clients[key] = time.monotonic()
        while len(self._clients) > self._config.osc.max_clients:
            gone, _ = self._clients.popitem(last=False)
            self.forget(gone)

    def forget(self, key: Hashable) -> None:
        """A connection-based client left: drop its state and its pending frames (path frames
        are keyed by the client, shm frames by client and channel)."""
        self._clients.pop(key, None)
        self.access.forget(key)
        self._keypoint_targets.pop(key, None)
        self.recorder.forget(key)
        self._safe_policies.pop(key, None)
        self._mirrored.pop(key, None)
        self._views.pop(key, None)
        self._people.pop(key, None)
        self._smoothing.pop(key, None)
        self._pipeline.forget_client(key)
        for name in self._channels.names():  # mailboxes are keyed by the name the client used
            self._pipeline.forget_client((key, name))
        for channel in self._channels.channels():
            self._pipeline.forget_client((key, channel.handle))

    def _auto_frame_id(self) -> int:
        self._next_frame_id = (self._next_frame_id + 1) % FRAME_ID_WRAP
        return self._next_frame_id

    # -- handlers -----------------------------------------------------------------------
    def _ping(self, peer: Peer, args: _Args) -> None:
        peer.reply(encode_message(protocol.PONG, *args.values))

    def _register(self, peer: Peer, args: _Args) -> None:
        reply_port = self._reply_port(args)
        host, port = peer.key[1], peer.key[2]  # type: ignore[index]
        self._router.register(host, port, reply_port)
        # Rate limited per host: a client may re-register every frame, and a flood must not fill the log.
        self._ratelog.log(logging.INFO, f"register {host}", "client %s:%s registered reply port %d", host, port,
                          reply_port)
        peer.reply(encode_message(protocol.REGISTERED, reply_port))

    def _register_host(self, peer: Peer, args: _Args) -> None:
        reply_port = self._reply_port(args)
        self._router.register_host(peer.host, reply_port)
        self._ratelog.log(logging.INFO, f"register {peer.host}", "host %s registered default reply port %d", peer.host,
                          reply_port)
        peer.reply(encode_message(protocol.REGISTERED, reply_port))

    @staticmethod
    def _reply_port(args: _Args) -> int:
        port = args.values[0]
        assert isinstance(port, int)
        if not 1 <= port <= 65535:
            raise ClientError("bad_arguments", f"reply port must be 1..65535, not {port}")
        return port

    def _frame_path(self, peer: Peer, args: _Args) -> None:
        received = time.perf_counter_ns()
        input_raw = str(args.values[0])
        output_raw = str(args.values[1]) if args.signature in ("ss", "ssi") else None
        frame_id = int(args.values[-1]) if args.signature.endswith("i") else self._auto_frame_id()
        roots = self._config.security.allow_roots
        input_path = resolve_input(input_raw, roots, frame_id)
        output_path = resolve_output(output_raw, input_path, roots, frame_id)
        self._submit(PathJob(peer.key, frame_id, received, _frame_reply(peer),
                             reply_direct=getattr(peer, "reply_from_worker", None), input_path=input_path,
                             output_path=Path(output_path), security=self._config.security))

    def _frame_shm(self, peer: Peer, args: _Args) -> None:
        received = time.perf_counter_ns()
        name, frame_id = str(args.values[0]), int(args.values[1])  # type: ignore[arg-type]
        try:
            channel = self._channels.get(name, peer.key)  # its own channel, or one whose handle it holds
        except ShmError as exc:
            raise ClientError(exc.code, exc.message, frame_id) from None
        self.recorder.shm_frame(peer.key, channel, frame_id)  # a no-op unless a recording covers this client
        # Mailbox per (client, channel): one client may drive several channels. The reply names the
        # channel as the client did (its plain name or the handle).
        self._submit(ShmJob((peer.key, name), frame_id, received, _frame_reply(peer),
                            reply_direct=getattr(peer, "reply_from_worker", None), channel=channel, reply_name=name))

    def _keypoints(self, peer: Peer, args: _Args) -> None:
        received = time.perf_counter_ns()
        frame = parse_keypoint_args(args.values)  # ClientError bad_keypoints / bad_dimensions
        max_pixels = self._config.security.max_pixels
        if frame.width * frame.height > max_pixels:  # the picture is drawn at this size: refuse it first
            raise ClientError("image_too_large", f"keypoint frame {frame.width}x{frame.height} exceeds the "
                              f"{max_pixels}-pixel limit (--max-pixels)", frame.frame_id)
        self.recorder.keypoints(peer.key, args.signature, args.values)  # a no-op unless recording
        target = self._keypoint_targets.get(peer.key)
        if target is None:
            raise ClientError("no_target", "send /pose2person/keypoints/target s channel (after "
                              "/pose2person/shm/open) or /pose2person/keypoints/target/path s output_path first",
                              frame.frame_id)
        if target.channel_name is not None:
            try:  # by handle, at every message: the channel may have been re-opened with another size
                target = KeypointTarget(channel=self._channels.get(target.channel_name, peer.key),
                                        label=target.label)
            except ShmError as exc:
                raise ClientError(exc.code, exc.message, frame.frame_id) from None
        self._submit(KeypointJob((peer.key, "keypoints"), frame.frame_id, received, _frame_reply(peer),
                                 reply_direct=getattr(peer, "reply_from_worker", None), frame=frame, target=target))

    def _set_keypoint_target(self, peer: Peer, target: KeypointTarget, label: str) -> None:
        self._keypoint_targets.pop(peer.key, None)
        self._keypoint_targets[peer.key] = target
        while len(self._keypoint_targets) > self._config.osc.max_clients:
            self._keypoint_targets.popitem(last=False)
        peer.reply(encode_message(protocol.KEYPOINTS_TARGET, label))

    def _keypoints_target(self, peer: Peer, args: _Args) -> None:
        name = str(args.values[0])
        try:
            channel = self._channels.get(name, peer.key)
        except ShmError as exc:
            raise ClientError(exc.code, exc.message) from None
        # The target keeps the handle, not the channel: a retired channel's files are not pinned by
        # it, and a re-open with another size is followed.
        self._set_keypoint_target(peer, KeypointTarget(channel_name=channel.handle, label=name), name)

    def _keypoints_target_path(self, peer: Peer, args: _Args) -> None:
        raw = str(args.values[0])
        roots = self._config.security.allow_roots
        path = Path(resolve_output(raw, Path(raw), roots, protocol.NO_FRAME_ID))
        if path.suffix.lower() not in WRITE_EXTENSIONS:
            raise ClientError("bad_arguments", f"keypoint pictures are images: end the path in "
                              f"{', '.join(sorted(WRITE_EXTENSIONS))}, not {path.suffix or 'nothing'!r}")
        self._set_keypoint_target(peer, KeypointTarget(path=path, roots=roots), str(path))

    def _auth(self, peer: Peer, args: _Args) -> None:
        token = self._config.security.token
        if not token:
            peer.reply(encode_message(protocol.AUTH_OK, 0))  # no token configured: nothing to unlock
            return
        if not self.access.auth_attempt_allowed(peer.host):
            raise ClientError("not_authorized", "too many wrong tokens from this host in the last minute; "
                              "this attempt was not checked")
        if not hmac.compare_digest(str(args.values[0]).encode(), token.encode()):
            self.access.auth_failed(peer.host)
            self._ratelog.log(logging.WARNING, f"auth {peer.host}", "wrong control token from %s", peer.host)
            raise ClientError("not_authorized", "wrong token")
        self.access.authorize(peer.key)  # this connection (UDP: this address and port), never the whole host
        self._ratelog.log(logging.INFO, f"authorised {peer.host}", "%s authorised for state-changing messages",
                          peer.key)
        peer.reply(encode_message(protocol.AUTH_OK, 1))

    def _shutdown(self, peer: Peer, args: _Args) -> None:
        if not self._config.security.token:
            raise ClientError("not_authorized", "remote shutdown is only possible when the daemon runs with a "
                              "control token (--token-file)")
        log.warning("shutdown requested over OSC by %s", peer.host)
        peer.reply(encode_message(protocol.SHUTTING_DOWN))
        if self.request_shutdown is not None:
            self.request_shutdown()

    def _safe(self, peer: Peer, args: _Args) -> None:
        if args.values:
            policy = str(args.values[0]).lower()
            if policy not in POLICIES:
                raise ClientError("bad_arguments", f"safe-output policy must be one of {', '.join(POLICIES)}, "
                                  f"not {policy!r}")
            self._safe_policies.pop(peer.key, None)
            self._safe_policies[peer.key] = policy
            while len(self._safe_policies) > self._config.osc.max_clients:
                self._safe_policies.popitem(last=False)
        peer.reply(encode_message(protocol.SAFE, self._policy_of(peer.key)))

    def _policy_of(self, key: Hashable) -> str:
        return self._safe_policies.get(key, self._config.safety.safe_output)

    def _remember(self, table: OrderedDict, key: Hashable, value: object) -> None:  # type: ignore[type-arg]
        table.pop(key, None)
        table[key] = value
        while len(table) > self._config.osc.max_clients:
            table.popitem(last=False)

    def _mirror(self, peer: Peer, args: _Args) -> None:
        if args.values:
            value = int(args.values[0])
            if value not in (0, 1):
                raise ClientError("bad_arguments", f"mirror must be 0 or 1, not {value}")
            self._remember(self._mirrored, peer.key, bool(value))
        peer.reply(encode_message(protocol.MIRROR, int(self._mirrored.get(peer.key, False))))

    def _view(self, peer: Peer, args: _Args) -> None:
        if args.values:
            view = str(args.values[0]).lower()
            if view not in VIEWS:
                raise ClientError("bad_arguments", f"view must be one of {', '.join(VIEWS)}, not {view!r}")
            self._remember(self._views, peer.key, view)
        peer.reply(encode_message(protocol.VIEW, self._views.get(peer.key, "person")))

    def _people_count(self, peer: Peer, args: _Args) -> None:
        if args.values:
            count = int(args.values[0])  # type: ignore[arg-type]
            if not 1 <= count <= protocol.MAX_TRACKED_PEOPLE:
                raise ClientError("bad_arguments", f"people must be 1..{protocol.MAX_TRACKED_PEOPLE}, not {count}")
            self._remember(self._people, peer.key, count)
        peer.reply(encode_message(protocol.PEOPLE, self._people.get(peer.key, self._config.pipeline.max_people)))

    def _default_smoothing(self) -> SmoothingSettings:
        if self._card_smoothing is None:
            catalog = getattr(self._pipeline, "catalog", None)
            found = stages.tracker_smoothing(catalog) if catalog is not None else None
            self._card_smoothing = found if isinstance(found, SmoothingSettings) else SmoothingSettings()
        return self._card_smoothing

    def _smoothing_settings(self, peer: Peer, args: _Args) -> None:
        current = self._smoothing.get(peer.key) or self._default_smoothing()
        if args.signature == "i":
            value = int(args.values[0])  # type: ignore[arg-type]
            if value not in (0, 1):
                raise ClientError("bad_arguments", f"smoothing i takes 0 (off) or 1 (on), not {value}")
            self._remember(self._smoothing, peer.key, current.with_values(enabled=bool(value)))
        elif args.values:
            names = ("min_cutoff", "beta", "derivate_cutoff")
            changes = {name: float(v) for name, v in zip(names, args.values)}  # type: ignore[arg-type]
            try:
                settings = current.with_values(enabled=True, **changes)
            except ValueError as exc:
                raise ClientError("bad_arguments", f"smoothing: {exc}") from None
            self._remember(self._smoothing, peer.key, settings)
        s = self._smoothing.get(peer.key) or self._default_smoothing()
        peer.reply(encode_message(protocol.SMOOTHING, int(s.enabled), float(s.min_cutoff), float(s.beta),
                                  float(s.derivate_cutoff)))

    def attach_safe(self, job: FrameJob, peer_key: Hashable) -> None:
        """Give ``job`` its client's settings: the safe-output policy, mirror, view, the tracker's
        people and smoothing (the mailbox
        key may be (client, channel); the settings belong to the client)."""
        job.safe = self._pipeline.safe_output(self._policy_of(peer_key), job.client)
        job.mirror = self._mirrored.get(peer_key, False)
        job.view = self._views.get(peer_key, "person")
        job.max_people = self._people.get(peer_key)
        job.smoothing = self._smoothing.get(peer_key)

    def _submit(self, job: FrameJob) -> None:
        self.attach_safe(job, job.client[0] if isinstance(job.client, tuple) and len(job.client) == 2
                         and isinstance(job.client[1], str) else job.client)
        overtaken = self._pipeline.submit(job)
        if overtaken is not None:
            overtaken.reply(encode_message(protocol.FRAME_DROPPED, overtaken.frame_id, job.frame_id))

    def _shm_open(self, peer: Peer, args: _Args) -> None:
        name, width, height, fmt = args.values[:4]
        origin = args.values[4] if len(args.values) == 5 else 0
        try:
            ch = self._channels.open(str(name), int(width), int(height), str(fmt).upper(), int(origin),  # type: ignore[arg-type]
                                     owner=peer.key)
        except ShmError as exc:
            raise ClientError(exc.code, exc.message) from None
        # The handle (<name>.<token>), the name that reaches this channel from any socket.
        peer.reply(encode_message(protocol.SHM_OPENED, ch.handle, str(ch.input_path), str(ch.output_path),
                                  ch.layout.width, ch.layout.height, ch.layout.format, ch.layout.slots))

    def _shm_close(self, peer: Peer, args: _Args) -> None:
        name = str(args.values[0])
        try:
            self._channels.close(name, peer.key)
        except ShmError as exc:
            raise ClientError(exc.code, exc.message) from None
        peer.reply(encode_message(protocol.SHM_CLOSED, name))

    def _model(self, peer: Peer, args: _Args) -> None:
        if not args.values:
            peer.reply(encode_message(protocol.MODEL_CHANGED, self._pipeline.model_name))
            return
        spec = str(args.values[0])
        try:
            self._pipeline.catalog.validate(spec)
        except ModelLoadError as exc:
            raise ClientError("unknown_model", str(exc)) from None
        task = asyncio.get_running_loop().create_task(self._async_switch(peer, spec))
        self._tasks.add(task)  # keep a reference until done (asyncio holds only weak ones)
        task.add_done_callback(self._tasks.discard)

    async def _async_switch(self, peer: Peer, spec: str) -> None:
        try:
            name = await self._pipeline.async_switch_model(spec)
        except ModelLoadError as exc:
            self._refuse(peer, ClientError("model_load_failed", str(exc)), f"{protocol.PREFIX}/model")
            return
        peer.reply(encode_message(protocol.MODEL_READY, name))

    def _models(self, peer: Peer, args: _Args) -> None:
        peer.reply(model_list_packet(self._pipeline.catalog, self._pipeline.model_name))

    def _status(self, peer: Peer, args: _Args) -> None:
        s = self._pipeline.stats.snapshot()
        peer.reply(encode_message(protocol.STATUS_REPLY, float(s.fps), float(s.mean_latency_ms),
                                  float(s.p95_latency_ms), s.received, s.processed, s.dropped, s.errors,
                                  self._pipeline.model_name))

    def _status_stages(self, peer: Peer, args: _Args) -> None:
        values: list[OscArg] = []
        for name, fig in self._pipeline.stats.timings.figures().items():
            values += [name, float(fig.p50_ms), float(fig.p95_ms), float(fig.p99_ms), min(fig.count, 2**31 - 1)]
        peer.reply(encode_message(protocol.STATUS_STAGES_REPLY, *values))

    def _status_process(self, peer: Peer, args: _Args) -> None:
        proc = metrics.process_figures()
        gpus = proc["gpu"]
        ages = self._pipeline.queued_ages_ms()
        mib = 1024.0 * 1024.0
        peer.reply(encode_message(
            protocol.STATUS_PROCESS_REPLY, proc["rss_bytes"] / mib if proc["rss_bytes"] >= 0 else -1.0,
            int(proc["open_fds"]), int(proc["threads"]),
            sum(g["allocated_bytes"] for g in gpus) / mib if gpus else -1.0,
            sum(g["reserved_bytes"] for g in gpus) / mib if gpus else -1.0,
            len(ages), max(ages, default=0.0), float(self._pipeline.stats.uptime_s)))

    def _record(self, peer: Peer, args: _Args) -> None:
        raw = str(args.values[0])
        if not raw:
            raise ClientError("bad_arguments", "/pose2person/record needs the folder to record into")
        source = str(args.values[1]).lower() if len(args.values) > 1 else "self"
        folder = self.recorder.start(peer.key, raw, peer.reply, source)
        peer.reply(encode_message(protocol.RECORD_STARTED, str(folder)))

    def _record_stop(self, peer: Peer, args: _Args) -> None:
        folder = str(args.values[0]) if args.values else None
        rec = self.recorder.stop(peer.key, folder=folder)
        if rec is None:
            raise ClientError("bad_arguments", f"no recording into {folder}" if folder else "this client is not recording")
        peer.reply(self.recorder.stopped_packet(rec, "stopped"))

    async def async_close(self) -> None:
        self.recorder.close()
        for task in list(self._tasks):
            task.cancel()
