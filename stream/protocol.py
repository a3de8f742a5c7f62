"""Wire protocol v1: msgpack maps over ZeroMQ (the full schema is in docs/protocol.md).

This module only turns bytes into validated :class:`Frame2D` objects and poses/status
into bytes. It does no I/O. Units on the wire: pixels for 2D input, metres for 3D
output (camera frame: x right, y down, z forward; root-relative).

Decoding never raises anything but :class:`ProtocolError`, whose ``reason`` is one of
:data:`REJECT_REASONS` (a stable, machine-readable code counted in status messages) and
whose ``detail`` is a human-readable sentence.
"""

from __future__ import annotations

import itertools
import math
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from poselift.model.rig import RIG_NAMES, RIG_PARENTS
from poselift.model.skeleton import H36M_JOINT_NAMES, LAYOUTS

VERSION = 1
# A MediaPipe-33 frame with confidences is about 1 KiB; anything above this is refused.
MAX_MESSAGE_BYTES = 64 * 1024
MAX_STREAM_NAME = 128
MAX_IMAGE_SIDE = 65536
# Keypoints may lie outside the image, but not absurdly far: a finite 1e300 px became inf in
# the model's float32 input and was published as NaN joints with valid = true.
MAX_COORD_PX = 1e6

END_TYPE = "end"  # `type` of the input message that ends a stream

POSE_TOPIC_PREFIX = "pose3d."
STATUS_TOPIC = "status"

REJECT_REASONS: tuple[str, ...] = (
    "oversized",          # more than MAX_MESSAGE_BYTES
    "malformed_msgpack",  # bytes are not one complete msgpack object
    "not_a_map",          # valid msgpack, but not a map
    "bad_version",        # `v` missing or not 1
    "missing_field",      # a required field is absent
    "bad_type",           # a field has the wrong type or an out-of-range value
    "unknown_layout",     # `layout` is not h36m17 / coco17 / mediapipe33
    "wrong_joint_count",  # len(kp) does not match the layout
    "non_finite",         # inf anywhere, NaN in t/confidence, or a half-NaN joint
    "too_many_streams",   # every stream slot of the server is busy
    "internal_error",     # a bug on the server side; the message is dropped, the server goes on
)

REQUIRED_FIELDS = ("v", "stream", "frame", "t", "layout", "width", "height", "kp")


class ProtocolError(ValueError):
    """An input message was rejected; ``reason`` is a code from REJECT_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REJECT_REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class _FrameFields:
    """The scalar fields every 2D frame message carries, once for the checked header and
    the frame built from it."""

    stream: str
    frame: int
    t: float
    layout: str
    width: int
    height: int


@dataclass
class Frame2D(_FrameFields):
    """One validated 2D input frame, still in its own layout and in pixels.

    ``kp`` is (J, 2) float64 pixels; a missing joint is NaN in both coordinates.
    ``conf`` is (J,) float64 in [0, 1] or None when the sender gave no confidences.
    """

    kp: np.ndarray
    conf: np.ndarray | None = None
    t_recv: float = 0.0  # time.perf_counter() when received (for latency), not on the wire
    focal_px: float | None = None  # the camera's focal length in pixels, if the sender states it


@dataclass
class EndOfStream:
    """A validated ``{"v": 1, "type": "end", "stream": ID}`` input message: the sender is
    done with ``stream`` (flush its pending poses, free its slot, answer with a status
    message whose event is ``end``)."""

    stream: str
    t_recv: float = 0.0


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_stream(stream: Any) -> str:
    if not isinstance(stream, str) or not stream or len(stream) > MAX_STREAM_NAME:
        raise ProtocolError("bad_type", f"'stream' must be a non-empty string of at most {MAX_STREAM_NAME} characters")
    if not stream.isprintable() or " " in stream:
        raise ProtocolError("bad_type", "'stream' must be printable and contain no spaces")
    return stream


@dataclass
class _Header(_FrameFields):
    """The checked fields of a 2D frame message, before its keypoints are checked."""

    kp: Any  # the message's `kp` list, not yet checked beyond its length


def _check_header(msg: Any) -> _Header | EndOfStream:
    """Every check of :func:`validate_input` up to the keypoints, in the same order."""
    if not isinstance(msg, dict):
        raise ProtocolError("not_a_map", f"message is a msgpack {type(msg).__name__}, not a map")
    if "v" not in msg:
        raise ProtocolError("bad_version", "field 'v' (protocol version, 1) is missing")
    if msg["v"] != VERSION or not _is_int(msg["v"]):
        raise ProtocolError("bad_version", f"protocol version {msg['v']!r} is not supported (this server speaks {VERSION})")
    if msg.get("type") == END_TYPE:
        if "stream" not in msg:
            raise ProtocolError("missing_field", "missing field(s): stream")
        return EndOfStream(_check_stream(msg["stream"]))
    missing = [f for f in REQUIRED_FIELDS if f not in msg]
    if missing:
        raise ProtocolError("missing_field", f"missing field(s): {', '.join(missing)}")
    stream = _check_stream(msg["stream"])
    frame = msg["frame"]
    if not _is_int(frame) or frame < 0:
        raise ProtocolError("bad_type", f"'frame' must be a non-negative integer, got {frame!r}")
    t = msg["t"]
    if not _is_number(t):
        raise ProtocolError("bad_type", f"'t' must be a number (seconds), got {type(t).__name__}")
    if not math.isfinite(t):
        raise ProtocolError("non_finite", f"'t' is {t}")
    layout_name = msg["layout"]
    if not isinstance(layout_name, str):
        raise ProtocolError("bad_type", "'layout' must be a string")
    if layout_name not in LAYOUTS:
        raise ProtocolError("unknown_layout", f"layout {layout_name!r} is not one of {', '.join(LAYOUTS)}")
    width, height = msg["width"], msg["height"]
    for name, value in (("width", width), ("height", height)):
        if not _is_int(value) or not 0 < value <= MAX_IMAGE_SIDE:
            raise ProtocolError("bad_type", f"'{name}' must be an integer in [1, {MAX_IMAGE_SIDE}] pixels, got {value!r}")
    kp_in = msg["kp"]
    if not isinstance(kp_in, (list, tuple)):
        raise ProtocolError("bad_type", "'kp' must be a list of [x, y] or [x, y, confidence]")
    n = LAYOUTS[layout_name].num_joints
    if len(kp_in) != n:
        raise ProtocolError("wrong_joint_count", f"layout {layout_name} has {n} joints, 'kp' has {len(kp_in)}")
    return _Header(stream, int(frame), float(t), layout_name, int(width), int(height), kp_in)


_JOINT_COUNTS = {name: layout.num_joints for name, layout in LAYOUTS.items()}


def _fast_header(msg: Any) -> _Header | None:
    """:func:`_check_header` of the common message (a plain 2D frame whose fields all have
    their usual types) in a few operations, or None for anything else, which then takes
    :func:`_check_header` for the exact error. It accepts only what that accepts, with the
    same result (tested); it exists because the server checks every message it reads, and
    the general path's per-field calls were ~10 µs of the ~100 µs a pose costs at load."""
    if type(msg) is not dict:
        return None
    get = msg.get
    v, stream, frame, t, layout = get("v"), get("stream"), get("frame"), get("t"), get("layout")
    width, height, kp = get("width"), get("height"), get("kp")
    if not (type(v) is int and v == VERSION and get("type") != END_TYPE
            and type(stream) is str and 0 < len(stream) <= MAX_STREAM_NAME and stream.isprintable() and " " not in stream
            and type(frame) is int and frame >= 0
            and (type(t) is float or type(t) is int) and math.isfinite(t)
            and type(width) is int and 0 < width <= MAX_IMAGE_SIDE and type(height) is int and 0 < height <= MAX_IMAGE_SIDE
            and type(kp) is list and type(layout) is str and _JOINT_COUNTS.get(layout) == len(kp)):
        return None
    return _Header(stream, frame, float(t), layout, width, height, kp)


def _check_keypoints(kp_in: Any, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The per-joint checks of ``kp`` (any mix of [x, y], [x, y, c] and nil rows):
    (kp (n, 2) float64, NaN = absent; conf (n,) or None when no row has one)."""
    kp = np.full((n, 2), np.nan)
    conf = np.ones(n)
    has_conf = False
    for j, p in enumerate(kp_in):
        if p is None:  # an absent joint stays NaN
            continue
        if not isinstance(p, (list, tuple)) or len(p) not in (2, 3) or not all(_is_number(c) for c in p):
            raise ProtocolError("bad_type", f"kp[{j}] must be [x, y] or [x, y, confidence] numbers (or nil), got {p!r}"[:200])
        x, y = float(p[0]), float(p[1])
        if math.isinf(x) or math.isinf(y) or (math.isnan(x) != math.isnan(y)):
            raise ProtocolError("non_finite", f"kp[{j}] = [{x}, {y}]: inf, or NaN in only one coordinate")
        if abs(x) > MAX_COORD_PX or abs(y) > MAX_COORD_PX:
            raise ProtocolError("bad_type", f"kp[{j}] = [{x}, {y}]: coordinates must be within ±{MAX_COORD_PX:g} pixels")
        if len(p) == 3:
            has_conf = True
            c = float(p[2])
            if not math.isfinite(c):
                raise ProtocolError("non_finite", f"kp[{j}] confidence is {c}")
            conf[j] = min(max(c, 0.0), 1.0)
        kp[j] = (x, y)
    return kp, (conf if has_conf else None)


_PLAIN_NUMBERS = {int, float}


def _plain_row_width(kp_in: Any) -> int:
    """2 or 3 when ``kp`` is a list of lists that all hold that many int/float values (the
    common message: no nil rows, no bools, no mixed widths), else 0. Such keypoints can be
    checked for many messages at once (:func:`_plain_keypoints_ok`); any other goes
    through :func:`_check_keypoints` joint by joint."""
    if type(kp_in) is not list or set(map(type, kp_in)) != {list}:
        return 0
    widths = set(map(len, kp_in))
    if len(widths) != 1:
        return 0
    width = widths.pop()
    if width not in (2, 3) or not set(map(type, itertools.chain.from_iterable(kp_in))) <= _PLAIN_NUMBERS:
        return 0
    return width


def _plain_keypoints_ok(arr: np.ndarray) -> np.ndarray:
    """(M,) whether each of M plain keypoint arrays (M, n, 2|3) passes every check of
    :func:`_check_keypoints`; those that do not are checked again joint by joint, which
    raises the error a single message would."""
    with np.errstate(invalid="ignore"):
        xy = arr[..., :2]
        nan = np.isnan(xy)
        bad = np.isinf(xy).any(axis=(1, 2)) | (nan[..., 0] != nan[..., 1]).any(axis=1)
        bad |= (np.abs(xy) > MAX_COORD_PX).any(axis=(1, 2))
        if arr.shape[-1] == 3:
            bad |= ~np.isfinite(arr[..., 2]).all(axis=1)
    return ~bad


def _frame(head: _Header, msg: dict, kp: np.ndarray, conf: np.ndarray | None) -> Frame2D:
    return Frame2D(head.stream, head.frame, head.t, head.layout, head.width, head.height, kp, conf,
                   focal_px=_check_focal(msg.get("focal_px")))


def validate_input(msg: Any) -> Frame2D | EndOfStream:
    """Check a decoded message against the v1 input schema (a 2D frame, or an ``end``
    message when ``type`` is "end"); raise ProtocolError if not."""
    result = validate_inputs([msg])[0]
    if isinstance(result, Exception):
        raise result
    return result


def validate_inputs(msgs: Sequence[Any]) -> list[Frame2D | EndOfStream | Exception]:
    """:func:`validate_input` for many decoded messages at once: per message, its Frame2D or
    EndOfStream, or the exception it raises (a :class:`ProtocolError`, exactly the one a
    single call gives). The keypoints of all plain messages of one shape are checked in one
    numpy pass; the header fields still cost a few dict look-ups per message."""
    out: list[Any] = [None] * len(msgs)
    plain: dict[tuple[int, int], list[tuple[int, _Header, dict]]] = {}
    for i, msg in enumerate(msgs):
        try:
            head = _fast_header(msg) or _check_header(msg)
            if isinstance(head, EndOfStream):
                out[i] = head
                continue
            width = _plain_row_width(head.kp)
            if width:
                plain.setdefault((len(head.kp), width), []).append((i, head, msg))
            else:
                out[i] = _frame(head, msg, *_check_keypoints(head.kp, len(head.kp)))
        except Exception as exc:  # ProtocolError, or a bug: returned, never raised, per message
            out[i] = exc
    for (n, width), group in plain.items():
        try:
            arr = np.array([head.kp for _, head, _ in group], dtype=np.float64)  # (M, n, 2|3)
            ok = _plain_keypoints_ok(arr)
        except (OverflowError, ValueError, TypeError):  # e.g. an integer beyond float64: one by one
            arr = np.zeros((len(group), n, width))
            ok = np.zeros(len(group), bool)
        kp_all = np.ascontiguousarray(arr[..., :2])
        conf_all = np.clip(arr[..., 2], 0.0, 1.0) if width == 3 else None
        for row, (i, head, msg) in enumerate(group):
            try:
                if ok[row]:
                    out[i] = _frame(head, msg, kp_all[row], None if conf_all is None else conf_all[row])
                else:
                    out[i] = _frame(head, msg, *_check_keypoints(head.kp, n))
            except Exception as exc:
                out[i] = exc
    return out


def _check_focal(focal: Any) -> float | None:
    """The optional ``focal_px``: absent or nil, or a positive finite number of pixels."""
    if focal is None:
        return None
    if not _is_number(focal):
        raise ProtocolError("bad_type", f"'focal_px' must be a number (pixels), got {type(focal).__name__}")
    if not math.isfinite(focal):
        raise ProtocolError("non_finite", f"'focal_px' is {focal}")
    if not 0 < focal <= MAX_COORD_PX:
        raise ProtocolError("bad_type", f"'focal_px' must be a positive number of pixels up to {MAX_COORD_PX:g}, got {focal!r}")
    return float(focal)


def _unpack(data: bytes) -> Any:
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError("oversized", f"message is {len(data)} bytes, the limit is {MAX_MESSAGE_BYTES}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:  # ExtraData, FormatError, StackError, UnicodeDecodeError, ...
        raise ProtocolError("malformed_msgpack", f"{type(exc).__name__}: {exc}"[:200]) from None


def decode_input(data: bytes) -> Frame2D | EndOfStream:
    """Bytes of one v1 input message -> Frame2D (or EndOfStream); raise ProtocolError with the reason."""
    return validate_input(_unpack(data))


def decode_inputs(datas: Sequence[bytes]) -> list[Frame2D | EndOfStream | Exception]:
    """:func:`decode_input` for many messages at once (what the server read in one drain):
    per message, in order, its Frame2D or EndOfStream, or the exception a single
    :func:`decode_input` raises for it (a :class:`ProtocolError`; anything else is a bug)."""
    msgs: list[Any] = []
    errors: dict[int, Exception] = {}
    for i, data in enumerate(datas):
        try:
            msgs.append(_unpack(data))
        except ProtocolError as exc:
            errors[i] = exc
            msgs.append(None)
    checked = validate_inputs([m for i, m in enumerate(msgs) if i not in errors]) if errors else validate_inputs(msgs)
    if not errors:
        return checked
    it = iter(checked)
    return [errors[i] if i in errors else next(it) for i in range(len(datas))]


def encode_input(stream: str, frame: int, kp: Any, *, width: int, height: int,
                 layout: str = "h36m17", t: float | None = None, focal_px: float | None = None) -> bytes:
    """Build one v1 input message (what a 2D detector sends). ``kp`` (J, 2|3) pixels;
    NaN rows are sent as nil (absent joint); ``focal_px``: the camera's focal length, if known."""
    rows = []
    for p in np.asarray(kp, dtype=np.float64).tolist():
        rows.append(None if any(math.isnan(c) for c in p[:2]) else p)
    msg = {
        "v": VERSION, "stream": stream, "frame": int(frame),
        "t": time.time() if t is None else float(t),
        "layout": layout, "width": int(width), "height": int(height), "kp": rows,
    }
    if focal_px is not None:
        msg["focal_px"] = float(focal_px)
    return msgpack.packb(msg, use_bin_type=True)


def encode_end(stream: str) -> bytes:
    """The v1 input message that ends ``stream`` (see docs/protocol.md, End of stream)."""
    return msgpack.packb({"v": VERSION, "type": END_TYPE, "stream": stream}, use_bin_type=True)


def pose_topic(stream: str) -> str:
    return POSE_TOPIC_PREFIX + stream


def encode_pose(*, stream: str, frame: int, t: float, joints: np.ndarray, valid: bool, warmup: bool,
                filled: list[int], latency_ms: float, gap: int = 0, root: np.ndarray | None = None,
                t_out: float | None = None, seq: int | None = None, rotations: np.ndarray | None = None) -> bytes:
    """One v1 output message. ``joints`` (17, 3) metres, root-relative, camera frame.
    ``seq``: the publisher's per-stream message counter (0, 1, 2, ...), so a consumer can
    count the poses it missed (PUB drops) and notice a publisher restart (seq goes back).
    ``rotations``: (19, 4) local rig rotations [x, y, z, w] (docs/protocol.md, The rig), or
    None (raw output, or no body yet): sent as nil."""
    return PoseEncoder().encode(
        [PoseFields(stream, frame, t, time.time() if t_out is None else t_out, latency_ms, valid, warmup, filled,
                    gap, root, rotations, seq)], np.asarray(joints, dtype=np.float64)[None])[0]


@dataclass
class PoseFields:
    """The per-pose fields of a pose3d message other than its joints (see :func:`encode_pose`)."""

    stream: str
    frame: int
    t: float
    t_out: float
    latency_ms: float
    valid: bool
    warmup: bool
    filled: list[int]
    gap: int = 0
    root: np.ndarray | None = None
    rotations: np.ndarray | None = None
    seq: int | None = None


_pack = msgpack.Packer(use_bin_type=True).pack
_F64 = struct.Struct(">Bd")  # a msgpack float 64: 0xcb, then the value big-endian
_NIL, _TRUE, _FALSE = b"\xc0", b"\xc3", b"\xc2"


def _float_matrices(a: np.ndarray) -> list[bytes]:
    """msgpack bytes of each ``a[i].tolist()`` for an (N, R, C) float64 array, made in one
    numpy pass: an array of R arrays of C float 64s (C <= 15)."""
    n, rows, cols = a.shape
    dtype = np.dtype([("h", "u1")] + [f for c in range(cols) for f in ((f"m{c}", "u1"), (f"v{c}", ">f8"))])
    rec = np.empty((n, rows), dtype)
    rec["h"] = 0x90 | cols
    for c in range(cols):
        rec[f"m{c}"] = 0xCB
        rec[f"v{c}"] = a[..., c]
    head = _pack([None] * rows)[:-rows]  # the array header alone (each nil is one byte)
    raw = memoryview(rec.tobytes())
    size = rows * dtype.itemsize
    return [head + raw[i * size:(i + 1) * size] for i in range(n)]


class PoseEncoder:
    """pose3d messages for a batch, byte for byte what ``msgpack.packb`` makes of the map
    (docs/protocol.md, key order as listed there): the constant keys and values are packed
    once, the float arrays of the whole batch in one numpy pass (:func:`_float_matrices`)."""

    def __init__(self) -> None:
        k = _pack
        self._head = {n: (b"\xde" + struct.pack(">H", n)) + k("v") + k(VERSION) + k("type") + k("pose3d") + k("stream")
                      for n in (16, 17)}
        self._names = k("layout") + k("h36m17") + k("joint_names") + k(list(H36M_JOINT_NAMES)) + k("joints")
        self._keys = {name: k(name) for name in ("frame", "t", "t_out", "latency_ms", "valid", "warmup", "filled",
                                                 "gap", "root", "rotations", "seq")}

    def encode(self, fields: Sequence[PoseFields], joints: np.ndarray) -> list[bytes]:
        """One message per pose: ``fields[i]`` and ``joints[i]`` (N, 17, 3)."""
        key = self._keys
        packed_joints = _float_matrices(np.asarray(joints, dtype=np.float64))
        rot_rows = [i for i, f in enumerate(fields) if f.rotations is not None]
        rotations = dict(zip(rot_rows, _float_matrices(np.stack(
            [np.asarray(fields[i].rotations, dtype=np.float64).reshape(-1, 4) for i in rot_rows])))) if rot_rows else {}
        out = []
        for i, f in enumerate(fields):
            root = _NIL if f.root is None else _pack(np.asarray(f.root, dtype=np.float64).reshape(3).tolist())
            parts = [self._head[16 if f.seq is None else 17], _pack(f.stream),
                     key["frame"], _pack(int(f.frame)), key["t"], _F64.pack(0xCB, float(f.t)),
                     key["t_out"], _F64.pack(0xCB, float(f.t_out)), key["latency_ms"], _F64.pack(0xCB, float(f.latency_ms)),
                     self._names, packed_joints[i], key["valid"], _TRUE if f.valid else _FALSE,
                     key["warmup"], _TRUE if f.warmup else _FALSE, key["filled"], _pack([int(j) for j in f.filled]),
                     key["gap"], _pack(int(f.gap)), key["root"], root, key["rotations"], rotations.get(i, _NIL)]
            if f.seq is not None:
                parts += (key["seq"], _pack(int(f.seq)))
            out.append(b"".join(parts))
        return out


def encode_status(event: str, counters: dict[str, Any], *, stream: str | None = None,
                  reason: str | None = None, detail: str | None = None,
                  skeleton: dict[str, Any] | None = None) -> bytes:
    """A status message: ``event`` is "counters", "rejected", "reset", "end", "skeleton" or
    "error"; a "skeleton" event carries ``skeleton`` (:func:`skeleton_map`)."""
    msg = {"v": VERSION, "type": "status", "event": event, "t_out": time.time(),
           "stream": stream, "reason": reason, "detail": detail, "counters": counters}
    if skeleton is not None:
        msg["skeleton"] = skeleton
    return msgpack.packb(msg, use_bin_type=True)


def skeleton_map(offsets: np.ndarray, frame: int) -> dict[str, Any]:
    """The ``skeleton`` field of a "skeleton" status message: the rig's joint names, parents
    (-1 for the root) and rest offsets (19, 3) in metres, rig frame, and the first ``frame``
    of the stream whose pose uses them."""
    return {"names": list(RIG_NAMES), "parents": list(RIG_PARENTS),
            "offsets": np.asarray(offsets, dtype=np.float64).reshape(len(RIG_NAMES), 3).tolist(),
            "frame": int(frame)}


def decode_message(data: bytes) -> dict[str, Any]:
    """Decode an output (pose3d or status) message; for consumers and tests."""
    msg = msgpack.unpackb(data, raw=False)
    if not isinstance(msg, dict) or msg.get("v") != VERSION:
        raise ValueError("not a poselift v1 message")
    return msg
