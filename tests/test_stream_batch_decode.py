"""Batch decode (``decode_inputs``) gives, message by message, exactly what ``decode_input``
gives, and what the joint-by-joint checks give (the vectorised path switched off), on
valid, invalid and fuzzed input: the same frames, the same error reasons and details."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poselift.stream import protocol
from poselift.stream.protocol import EndOfStream, Frame2D, ProtocolError, decode_input, decode_inputs, encode_end
from tests.reliability_helpers import fuzz_message, good_map


def pack(m) -> bytes:
    return msgpack.packb(m, use_bin_type=True)


def single(data: bytes):
    try:
        return decode_input(data)
    except ProtocolError as exc:
        return exc


def same(a, b) -> bool:
    """Two decode results (Frame2D, EndOfStream or an exception) are identical."""
    if isinstance(a, Exception) or isinstance(b, Exception):
        return type(a) is type(b) and getattr(a, "reason", None) == getattr(b, "reason", None) \
            and getattr(a, "detail", None) == getattr(b, "detail", None)
    if isinstance(a, EndOfStream):
        return a == b
    assert isinstance(a, Frame2D) and isinstance(b, Frame2D)
    fields = ("stream", "frame", "t", "layout", "width", "height", "focal_px")
    if any(getattr(a, k) != getattr(b, k) for k in fields):
        return False
    if a.kp.dtype != b.kp.dtype or not np.array_equal(a.kp, b.kp, equal_nan=True):
        return False
    if (a.conf is None) != (b.conf is None):
        return False
    return a.conf is None or (a.conf.dtype == b.conf.dtype and np.array_equal(a.conf, b.conf))


def joint_by_joint(datas: list[bytes], monkeypatch: pytest.MonkeyPatch) -> list:
    """The reference: every message through the general header checks and the per-joint
    checks (neither the header fast path nor the vectorised keypoint path)."""
    with monkeypatch.context() as m:
        m.setattr(protocol, "_plain_row_width", lambda kp: 0)
        m.setattr(protocol, "_fast_header", lambda msg: None)
        return [single(d) for d in datas]


def check_batch(datas: list[bytes], monkeypatch: pytest.MonkeyPatch) -> list:
    batch = decode_inputs(datas)
    assert len(batch) == len(datas)
    for ref in (joint_by_joint(datas, monkeypatch), [single(d) for d in datas]):
        for i, (a, b) in enumerate(zip(batch, ref)):
            assert same(a, b), (i, a, b)
    return batch


def test_plain_valid_frames(monkeypatch):
    rng = np.random.default_rng(1)
    datas = [pack(good_map(f"s{i % 5}", i, layout, rng=rng))
             for i, layout in enumerate(["h36m17", "coco17", "mediapipe33"] * 20)]
    batch = check_batch(datas, monkeypatch)
    assert all(isinstance(f, Frame2D) for f in batch)


def test_each_kind_of_bad_keypoint_in_a_batch_of_good_ones(monkeypatch):
    """One bad joint makes only its own message fail, with the per-message error."""
    bad_rows = [[math.inf, 1.0], [1.0, -math.inf], [math.nan, 1.0], [2e6, 1.0], [1.0, 2.0, math.nan],
                [1.0, 2.0, math.inf], [True, 2.0], [1.0, "2"], [1.0], [1.0, 2.0, 3.0, 4.0], None, 5,
                [1.0, 2.0, -0.5], [1.0, 2.0, 7], [math.nan, math.nan], [10**18, 1], [2**64 - 1, 0]]
    datas = []
    for k, row in enumerate(bad_rows):
        m = good_map("a", k)
        m["kp"][k % 17] = row
        datas += [pack(good_map("b", k)), pack(m)]
    datas.append(encode_end("a"))
    mixed = good_map("c", 0)
    mixed["kp"] = [[1.0, 2.0, 0.9]] * 8 + [[3.0, 4.0]] * 9  # mixed row widths: per joint, accepted
    datas.append(pack(mixed))
    batch = check_batch(datas, monkeypatch)
    assert isinstance(batch[1], ProtocolError) and batch[1].reason == "non_finite"
    assert isinstance(batch[-2], EndOfStream) and isinstance(batch[-1], Frame2D)


def test_undecodable_messages_keep_their_place(monkeypatch):
    datas = [b"\xc1", pack(good_map("a", 0)), b"x" * (protocol.MAX_MESSAGE_BYTES + 1), pack([1, 2]),
             pack(good_map("a", 1)), pack(good_map("a", 2))[:-3]]
    batch = check_batch(datas, monkeypatch)
    assert [getattr(r, "reason", "ok") for r in batch] == [
        "malformed_msgpack", "ok", "oversized", "not_a_map", "ok", "malformed_msgpack"]


def test_fuzz_messages(monkeypatch):
    """The wire soak's generator (every malformed category), in batches of 64."""
    rng = np.random.default_rng(7)
    for _ in range(10):
        check_batch([fuzz_message(rng)[1] for _ in range(64)], monkeypatch)


_coord = st.floats(-2e6, 2e6) | st.just(math.nan) | st.sampled_from([math.inf, -math.inf, 1e300]) \
    | st.integers(-10, 10) | st.booleans()
_row = (st.lists(_coord, min_size=2, max_size=2) | st.lists(_coord, min_size=3, max_size=3)
        | st.none() | st.lists(_coord, min_size=0, max_size=4))


@st.composite
def near_valid(draw):
    """A valid map with a few of its rows (or its focal length) replaced."""
    m = good_map(draw(st.sampled_from(["a", "b"])), draw(st.integers(0, 100)),
                 draw(st.sampled_from(["h36m17", "coco17", "mediapipe33"])))
    if draw(st.booleans()):
        m["kp"] = [p + [draw(st.floats(-1, 2))] for p in m["kp"]]
    for _ in range(draw(st.integers(0, 3))):
        m["kp"][draw(st.integers(0, len(m["kp"]) - 1))] = draw(_row)
    if draw(st.booleans()):
        m["focal_px"] = draw(st.none() | st.floats(allow_nan=True) | st.integers(-1, 10**7))
    return pack(m)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.lists(near_valid() | st.binary(max_size=40), min_size=1, max_size=24))
def test_batches_of_fuzzed_messages_equal_single_decodes(monkeypatch, datas):
    check_batch(datas, monkeypatch)


def test_model_inputs_of_a_batch_equal_one_by_one():
    """frames_to_model_input over a mixed batch (layouts, sizes, confidences, NaN) gives
    bit for bit what frame_to_model_input gives per frame, and PoseLoop.model_inputs
    leaves end messages out."""
    from poselift.stream.intake import frame_to_model_input, frames_to_model_input

    rng = np.random.default_rng(0)
    frames = []
    for i in range(90):
        layout = ["h36m17", "coco17", "mediapipe33"][i % 3]
        n = 33 if layout == "mediapipe33" else 17
        kp = rng.uniform(-100, 900, (n, 2))
        kp[rng.random(n) < 0.1] = np.nan
        frames.append(Frame2D("a", i, 0.0, layout, 640 if i % 5 else 1280, 480, kp, rng.random(n) if i % 2 else None))
    batch = frames_to_model_input(frames, 0.5)
    for f, x in zip(frames, batch):
        assert np.array_equal(frame_to_model_input(f, 0.5), x, equal_nan=True)
        assert x.dtype == np.float32


def test_header_fast_path_takes_the_common_message_and_agrees_with_the_general_checks():
    """``_fast_header`` accepts a plain frame (so the server uses it), and on every message
    of the fuzz generator and on single-field variants it gives either None or exactly what
    ``_check_header`` gives (never a header the general checks would refuse)."""
    head = protocol._fast_header(good_map("cam", 3, "coco17"))
    assert head == protocol._check_header(good_map("cam", 3, "coco17")) and head.frame == 3
    variants = []
    for field, values in {"v": [1, True, 1.0, 2, "1"], "stream": ["", "a b", "x" * 128, "x" * 129, "é", "\x00", 5],
                          "frame": [0, -1, True, 2**64 - 1, 1.0], "t": [0, 1.5, math.nan, math.inf, True, "0"],
                          "layout": ["h36m17", "coco17", "mediapipe33", "nope", 1],
                          "width": [1, 0, 65536, 65537, True, 640.0], "kp": [[], (1, 2), "kp", None],
                          "type": ["end", "frame", None, 1]}.items():
        for value in values:
            m = good_map("cam", 1)
            m[field] = value
            variants.append(m)
    variants += [{k: v for k, v in good_map().items() if k != field} for field in good_map()]
    rng = np.random.default_rng(3)
    for _ in range(400):
        try:
            variants.append(msgpack.unpackb(fuzz_message(rng)[1], raw=False, strict_map_key=False))
        except Exception:  # not msgpack at all: nothing to compare
            pass
    for m in variants:
        fast = protocol._fast_header(m)
        if fast is None:
            continue
        try:
            general = protocol._check_header(m)
        except ProtocolError as exc:
            raise AssertionError(f"fast path accepted what the general checks refuse ({exc}): {m!r}") from None
        assert fast == general, m
