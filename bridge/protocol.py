"""The wire contract: OSC addresses, their argument signatures, replies and error codes.

This table is the single source for the dispatcher (:mod:`bridge.daemon.control`), the OSCQuery
namespace (:mod:`bridge.transports.http`) and docs/PROTOCOL.md. No torch, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PREFIX = "/pose2person"
PROTOCOL_VERSION = 1
DEFAULT_OSC_PORT = 9400
DEFAULT_HTTP_PORT = 9401
MAX_TRACKED_PEOPLE = 8  # the camera tracker's people per client (--max-people, /people): a landmark run each

# Replies sent by the bridge.
PONG = f"{PREFIX}/pong"
ERROR = f"{PREFIX}/error"
REGISTERED = f"{PREFIX}/registered"
FRAME_DONE = f"{PREFIX}/frame/done"
FRAME_READY = f"{PREFIX}/frame/ready"
FRAME_DROPPED = f"{PREFIX}/frame/dropped"
FRAME_SAFE = f"{PREFIX}/frame/safe"  # i frame_id s policy s reason: a safe picture stands in for the model's
SAFE = f"{PREFIX}/safe"  # reply: s policy
MIRROR = f"{PREFIX}/mirror"  # reply: i mirrored (0/1)
VIEW = f"{PREFIX}/view"  # reply: s view (person / pose)
PEOPLE = f"{PREFIX}/people"  # reply: i max_people (the camera tracker's, for this client)
SMOOTHING = f"{PREFIX}/smoothing"  # reply: i enabled f min_cutoff f beta f derivate_cutoff
AUTH_OK = f"{PREFIX}/auth/ok"  # reply: i 1 (authorised) or i 0 (the daemon has no token)
SHUTTING_DOWN = f"{PREFIX}/shutting_down"
SHM_OPENED = f"{PREFIX}/shm/opened"
SHM_CLOSED = f"{PREFIX}/shm/closed"
MODEL_CHANGED = f"{PREFIX}/model/changed"  # reply to /model with no argument: the active model
KEYPOINTS_TARGET = f"{PREFIX}/keypoints/target"  # reply: where this client's keypoint pictures go
MODEL_READY = f"{PREFIX}/model/ready"  # reply to a switch, once the new model serves
MODELS_LIST = f"{PREFIX}/models/list"
STATUS_REPLY = f"{PREFIX}/status/reply"
STATUS_STAGES_REPLY = f"{PREFIX}/status/stages/reply"  # s stage f p50_ms f p95_ms f p99_ms i count, per stage
STATUS_PROCESS_REPLY = f"{PREFIX}/status/process/reply"
RECORD_STARTED = f"{PREFIX}/record/started"  # s path
RECORD_STOPPED = f"{PREFIX}/record/stopped"  # s path i entries i bytes s reason

# Frame ids are int32 on the wire. Pure Data floats are float32, so Pd patches should
# keep ids below 2**24 (integers above it lose precision).
NO_FRAME_ID = -1
PD_SAFE_FRAME_ID_LIMIT = 2**24

#: Stable error codes sent in ``/pose2person/error i frame_id s code s message``.
ERROR_CODES: dict[str, str] = {
    "malformed_packet": "the packet is not valid OSC 1.0 (truncated, bad padding, bad bundle)",
    "unsupported_type": "an argument type other than i f s b was sent",
    "unknown_address": "no such address under /pose2person/",
    "bad_arguments": "wrong number or types of arguments for the address",
    "packet_too_large": "an OSC packet over the size limit (TCP stream framing)",
    "path_not_allowed": "a file path outside the --allow-root roots (after resolving symlinks and '..')",
    "file_not_found": "the input file does not exist or is not a regular file",
    "image_decode_failed": "the input file is not a readable image (corrupt, truncated, unknown format)",
    "image_too_large": "the image or shm frame has more pixels than --max-pixels",
    "bad_dimensions": "zero, negative or otherwise impossible width/height",
    "write_failed": "the output file could not be written",
    "unknown_model": "no model of that name",
    "model_load_failed": "the model exists but could not be loaded (the previous model stays active)",
    "model_failed": "the model raised an error on this frame",
    "not_authorized": "the daemon runs with a control token and this connection (UDP: this address and port)"
                      " has not sent /pose2person/auth (or sent a wrong one); remote shutdown also needs a token"
                      " to be configured",
    "rate_limited": "this client host sent more messages (or HTTP requests) per second than --rate-limit;"
                    " the excess is dropped",
    "bundle_too_large": "a bundle with more messages than the bridge takes in one packet (64, nested ones"
                        " counted); the whole bundle is refused",
    "too_many_replies": "the replies to one bundle would be far larger than the bundle; the reply that went over"
                        " is dropped and the rest of the bundle is not run",
    "too_many_connections": "the bridge's connection limit (in all or for this host) is reached; try again later",
    "out_of_resources": "the bridge ran out of file descriptors or memory for this request; try again later",
    "model_unavailable": "the model is loading or restarting after a stall; no picture was made (policy off)",
    "shm_bad_format": "an unsupported shared-memory pixel format",
    "shm_bad_channel": "an invalid shared-memory channel name",
    "shm_unknown_channel": "a frame for a channel that was never opened",
    "shm_bad_header": "the channel file's header is not a valid pose2person header",
    "shm_torn": "the frame changed while it was read (writer died or overran the ring)",
    "shm_frame_missing": "no slot of the channel holds that frame id",
    "shm_not_owner": "the channel belongs to another client (or the handle's token is wrong): use the channel"
                     " name from your own /pose2person/shm/opened reply",
    "shm_busy": "every output slot of the channel is being written (several workers answering one channel)",
    "too_many_channels": "the shared-memory channel limit is reached",
    "ws_bad_frame": "a WebSocket frame message with a bad header, or a payload that is truncated or overlong",
    "bad_keypoints": "a keypoint message with an unknown layout, a value count that is not a whole number of"
                     " people, NaN/infinite or non-numeric values, or too many people (docs/KEYPOINTS.md)",
    "no_target": "keypoints arrived before /pose2person/keypoints/target named where the pictures go",
    "replica_lost": "--engine ray: the Ray replica holding this frame died or stopped answering; the frame is"
                    " lost, Ray replaces the replica and later frames go on (docs/SCALING.md)",
    "record_limit": "a recording is running for this client already, or the most recordings at once are running",
    "no_person": "a camera frame for a keypoint model in which the body tracker found nobody; with a safe-output"
                 " policy other than off the client gets its safe picture and /frame/safe with this reason instead",
    "not_a_pose_image": "a frame for a model whose pose source is image (the client renders pose images) that does"
                        " not look like a pose image of the model's style (a camera picture, or a pose of nobody)",
    "tracker_unavailable": "a camera frame for a keypoint model, but the body tracker cannot run here (the TFLite"
                           " runtime or the blazepose files are missing: docs/TRACKER.md)",
    "internal": "an unexpected error in the bridge (see its log)",
}


@dataclass(frozen=True)
class Address:
    """One documented OSC address: how clients call it and what it answers."""

    path: str
    signatures: tuple[str, ...]  # accepted type tag strings ("" = no arguments)
    description: str
    reply: str = ""
    access: int = 2  # OSCQuery ACCESS: 0 none, 1 read, 2 write, 3 read/write
    extended_type: tuple[str, ...] = ()
    value: tuple[Any, ...] | None = None
    range: tuple[dict[str, Any], ...] | None = None
    arg_names: tuple[str, ...] = field(default=())
    variadic: bool = False  # further arguments follow the signature (checked by the handler)


ADDRESSES: tuple[Address, ...] = (
    Address(f"{PREFIX}/ping", ("", "i"), "Liveness check; answers /pose2person/pong with the same token.",
            reply="/pose2person/pong [i token]", arg_names=("token",)),
    Address(f"{PREFIX}/register", ("i",),
            "Send later replies for this sender (host and source port) to its host at reply_port.",
            reply="/pose2person/registered i reply_port", arg_names=("reply_port",),
            range=({"MIN": 1, "MAX": 65535},)),
    Address(f"{PREFIX}/register/host", ("i",),
            "Default reply port for every unregistered sender on this host (for tools such as"
            " liblo's oscsend that send each message from a new port).",
            reply="/pose2person/registered i reply_port", arg_names=("reply_port",),
            range=({"MIN": 1, "MAX": 65535},)),
    Address(f"{PREFIX}/frame/path", ("s", "ss", "si", "ssi"),
            "Process the image file input_path and write the result atomically to output_path"
            " (default: <stem>.pose2person.png beside the input).",
            reply="/pose2person/frame/done i frame_id s output_path i width i height f latency_ms",
            extended_type=("filepath", "filepath", ""), arg_names=("input_path", "output_path", "frame_id")),
    Address(f"{PREFIX}/frame/shm", ("si",),
            "A new frame with this id is in the client's shared-memory channel.",
            reply="/pose2person/frame/ready s channel i frame_id f latency_ms", arg_names=("channel", "frame_id")),
    Address(f"{PREFIX}/safe", ("", "s"),
            "This client's safe-output policy: what it sees when the model fails, loads or stalls: last"
            " (its last good frame), input (the frame passed through), black, pattern (colour bars), or off"
            " (an error instead). No argument: ask.",
            reply="/pose2person/safe s policy", access=3, arg_names=("policy",),
            range=({"VALS": ["last", "input", "black", "pattern", "off"]},)),
    Address(f"{PREFIX}/mirror", ("", "i"),
            "This client shows its camera mirrored (1) or not (0, the default). The camera tracker flips"
            " mirrored frames back before it looks, so the generated person's left stays the real person's left."
            " No argument: ask.",
            reply="/pose2person/mirror i mirrored", access=3, arg_names=("mirrored",),
            range=({"MIN": 0, "MAX": 1},)),
    Address(f"{PREFIX}/view", ("", "s"),
            "What this client's frames come back as: person (the generated picture, the default) or pose (the"
            " pose image the generator gets: the tracker's or DensePose's drawing). No argument: ask.",
            reply="/pose2person/view s view", access=3, arg_names=("view",),
            range=({"VALS": ["person", "pose"]},)),
    Address(f"{PREFIX}/people", ("", "i"),
            "How many people the camera tracker follows in this client's frames (1..8; default: the daemon's"
            " --max-people). Each costs one landmark run per frame; all are drawn. No argument: ask.",
            reply="/pose2person/people i max_people", access=3, arg_names=("max_people",),
            range=({"MIN": 1, "MAX": MAX_TRACKED_PEOPLE},)),
    Address(f"{PREFIX}/smoothing", ("", "i", "ff", "fff"),
            "The camera tracker's landmark smoothing (a One Euro filter) for this client: i 0 (off) or 1 (on,"
            " the card's settings), or f min_cutoff (Hz, > 0) f beta (>= 0) [f derivate_cutoff (Hz, > 0)]"
            " to switch it on with these. Lower min_cutoff: steadier when still; higher beta: less lag"
            " when moving (docs/TRACKER.md). No argument: ask.",
            reply="/pose2person/smoothing i enabled f min_cutoff f beta f derivate_cutoff", access=3,
            arg_names=("min_cutoff", "beta", "derivate_cutoff")),
    Address(f"{PREFIX}/auth", ("s",),
            "Unlock state-changing messages (model switch, recording, shutdown) for this host, when the"
            " daemon runs with a control token (docs/SECURITY.md).",
            reply="/pose2person/auth/ok i authorised", arg_names=("token",)),
    Address(f"{PREFIX}/shutdown", ("",), "Stop the daemon gracefully (needs a control token and /auth).",
            reply="/pose2person/shutting_down"),
    Address(f"{PREFIX}/keypoints", ("siii",),
            "Body keypoints of everyone in a frame: s layout (coco17, mediapipe33, body25; suffix n ="
            " normalised 0..1 coordinates) i frame_id i width i height, then f x f y f score per joint,"
            " person after person. The picture goes to the target set with /pose2person/keypoints/target.",
            reply="/pose2person/frame/ready s channel i frame_id f latency_ms (shm target) or "
                  "/pose2person/frame/done i frame_id s output_path i width i height f latency_ms (path target)",
            arg_names=("layout", "frame_id", "width", "height"), variadic=True),
    Address(f"{PREFIX}/keypoints/target", ("s",),
            "Send this client's keypoint pictures to the output ring of its shared-memory channel.",
            reply="/pose2person/keypoints/target s channel", arg_names=("channel",)),
    Address(f"{PREFIX}/keypoints/target/path", ("s",),
            "Write this client's keypoint pictures to an image file in an allowed root (atomically).",
            reply="/pose2person/keypoints/target s output_path", extended_type=("filepath",),
            arg_names=("output_path",)),
    Address(f"{PREFIX}/shm/open", ("siis", "siisi"),
            "Open (or re-open) this client's shared-memory channel: width, height, format (BGRA8, RGBA8,"
            " RGB8, BGR8, RGBAF32) and optional origin (0 top-left, 1 bottom-left).",
            reply="/pose2person/shm/opened s handle s input_file s output_file i width i height s format i slots "
                  "(handle = <channel>.<token>: the channel is this client's; name it so from any socket)",
            arg_names=("channel", "width", "height", "format", "origin"),
            range=(None, {"MIN": 1, "MAX": 16384}, {"MIN": 1, "MAX": 16384},
                   {"VALS": ["BGRA8", "RGBA8", "RGB8", "BGR8", "RGBAF32"]}, {"VALS": [0, 1]})),
    Address(f"{PREFIX}/shm/close", ("s",), "Close a shared-memory channel and delete its files.",
            reply="/pose2person/shm/closed s channel", arg_names=("channel",)),
    Address(f"{PREFIX}/model", ("s", ""), "Switch the model (no argument: ask which one is active).",
            reply="/pose2person/model/ready s name (a switch, once the new model serves); "
                  "/pose2person/model/changed s name (no argument: the active model)", access=3,
            arg_names=("name",)),
    Address(f"{PREFIX}/models", ("",), "List the models that can run now (weights present, pose source usable),"
            " the active one included.",
            reply="/pose2person/models/list s name...", access=1),
    Address(f"{PREFIX}/status", ("",), "Pipeline statistics.",
            reply="/pose2person/status/reply f fps f mean_latency_ms f p95_latency_ms i received"
                  " i processed i dropped i errors s model", access=1),
    Address(f"{PREFIX}/status/stages", ("",),
            "Per-stage latency over the last 1024 frames: one group per stage that has frames (queue,"
            " input, pose, generator, stage, publish, total; docs/PROTOCOL.md).",
            reply="/pose2person/status/stages/reply s stage f p50_ms f p95_ms f p99_ms i count ...", access=1),
    Address(f"{PREFIX}/status/process", ("",), "The daemon process: memory, descriptors, threads, GPU, queue.",
            reply="/pose2person/status/process/reply f rss_mb i open_fds i threads f gpu_allocated_mb"
                  " f gpu_reserved_mb i queued f oldest_queued_ms f uptime_s", access=1),
    Address(f"{PREFIX}/record", ("s", "ss"),
            "Record incoming keypoint messages and shared-memory frames, with timestamps, into a new folder"
            " inside an allowed root (pose2person replay plays it back); source: self (default: this"
            " client's), all, HOST (its clients) or HOST:PORT (one client).",
            reply="/pose2person/record/started s path", extended_type=("filepath", ""), arg_names=("path", "source")),
    Address(f"{PREFIX}/record/stop", ("", "s"), "Stop this client's recording, or the one writing into path.",
            reply="/pose2person/record/stopped s path i entries i bytes s reason", extended_type=("filepath",),
            arg_names=("path",)),
)

ADDRESS_BY_PATH: dict[str, Address] = {a.path: a for a in ADDRESSES}

#: Shared-memory pixel formats: name -> (channels, numpy dtype name, colour order).
SHM_FORMATS: dict[str, tuple[int, str, str]] = {
    "BGRA8": (4, "uint8", "BGRA"),
    "RGBA8": (4, "uint8", "RGBA"),
    "RGB8": (3, "uint8", "RGB"),
    "BGR8": (3, "uint8", "BGR"),
    "RGBAF32": (4, "float32", "RGBA"),
}
