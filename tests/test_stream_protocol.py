"""Wire protocol v1: valid messages decode, every bad input is rejected with its reason."""

import math

import msgpack
import numpy as np
import pytest

from poselift.stream.protocol import (
    MAX_MESSAGE_BYTES,
    REJECT_REASONS,
    ProtocolError,
    decode_input,
    decode_message,
    encode_input,
    encode_pose,
    encode_status,
)


def good(**over):
    msg = {"v": 1, "stream": "cam0", "frame": 3, "t": 12.5, "layout": "h36m17", "width": 640, "height": 480,
           "kp": [[float(i), float(2 * i)] for i in range(17)]}
    msg.update(over)
    return msg


def pack(msg):
    return msgpack.packb(msg, use_bin_type=True)


def test_valid_message_decodes():
    f = decode_input(pack(good()))
    assert (f.stream, f.frame, f.t, f.layout, f.width, f.height) == ("cam0", 3, 12.5, "h36m17", 640, 480)
    assert f.kp.shape == (17, 2) and f.kp[5].tolist() == [5.0, 10.0]
    assert f.conf is None


@pytest.mark.parametrize("layout,n", [("h36m17", 17), ("coco17", 17), ("mediapipe33", 33)])
def test_layouts_with_confidence(layout, n):
    f = decode_input(pack(good(layout=layout, kp=[[1, 2, 0.9]] * n)))
    assert f.kp.shape == (n, 2) and f.conf.shape == (n,) and f.conf[0] == pytest.approx(0.9)


def test_missing_joints_nil_and_nan():
    kp = [[1.0, 2.0]] * 17
    kp[3] = None
    kp[4] = [math.nan, math.nan]
    f = decode_input(pack(good(kp=kp)))
    assert np.isnan(f.kp[3]).all() and np.isnan(f.kp[4]).all() and np.isfinite(f.kp[5]).all()


def test_encode_input_roundtrip_sends_nan_as_nil():
    kp = np.arange(34, dtype=float).reshape(17, 2)
    kp[2] = np.nan
    f = decode_input(encode_input("s", 7, kp, width=100, height=50, t=1.0))
    assert f.frame == 7 and np.isnan(f.kp[2]).all() and f.kp[1].tolist() == [2.0, 3.0]


BAD = [
    ("oversized", pack(good(pad=b"x" * (MAX_MESSAGE_BYTES + 1)))),
    ("malformed_msgpack", b"\xc1\x00garbage"),
    ("malformed_msgpack", pack(good())[:-5]),  # truncated
    ("malformed_msgpack", pack(good()) + b"\x01"),  # trailing bytes
    ("not_a_map", pack([1, 2, 3])),
    ("bad_version", pack({k: v for k, v in good().items() if k != "v"})),
    ("bad_version", pack(good(v=2))),
    ("missing_field", pack({k: v for k, v in good().items() if k != "kp"})),
    ("missing_field", pack({k: v for k, v in good().items() if k != "width"})),
    ("bad_type", pack(good(stream=5))),
    ("bad_type", pack(good(stream=""))),
    ("bad_type", pack(good(frame="3"))),
    ("bad_type", pack(good(frame=-1))),
    ("bad_type", pack(good(frame=True))),
    ("bad_type", pack(good(t="now"))),
    ("bad_type", pack(good(width=0))),
    ("bad_type", pack(good(height=480.0))),
    ("bad_type", pack(good(kp="nope"))),
    ("bad_type", pack(good(kp=[[1.0]] * 17))),
    ("bad_type", pack(good(kp=[["a", "b"]] * 17))),
    ("bad_type", pack(good(layout=3))),
    ("unknown_layout", pack(good(layout="openpose25"))),
    ("wrong_joint_count", pack(good(kp=[[1.0, 2.0]] * 16))),
    ("wrong_joint_count", pack(good(layout="mediapipe33"))),
    ("bad_type", pack(good(kp=[[1e300, 1.0]] + [[1.0, 2.0]] * 16))),  # finite, but inf once in float32
    ("non_finite", pack(good(t=math.inf))),
    ("non_finite", pack(good(t=math.nan))),
    ("non_finite", pack(good(kp=[[math.inf, 1.0]] + [[1.0, 2.0]] * 16))),
    ("non_finite", pack(good(kp=[[math.nan, 1.0]] + [[1.0, 2.0]] * 16))),
    ("non_finite", pack(good(kp=[[1.0, 1.0, math.nan]] + [[1.0, 2.0, 1.0]] * 16))),
]


@pytest.mark.parametrize("reason,data", BAD, ids=[f"{r}-{i}" for i, (r, _) in enumerate(BAD)])
def test_bad_input_is_rejected_with_reason(reason, data):
    with pytest.raises(ProtocolError) as info:
        decode_input(data)
    assert info.value.reason == reason
    assert info.value.reason in REJECT_REASONS and info.value.detail


def test_random_bytes_never_raise_anything_but_protocol_error():
    rng = np.random.default_rng(0)
    for n in range(300):
        data = rng.integers(0, 256, size=int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
        try:
            decode_input(data)
        except ProtocolError:
            pass


def test_pose_and_status_messages():
    joints = np.arange(51, dtype=np.float32).reshape(17, 3) / 100
    msg = decode_message(encode_pose(stream="a", frame=4, t=1.5, joints=joints, valid=True, warmup=False,
                                     filled=[3], latency_ms=0.5, gap=2, root=np.array([0.1, 0.2, 3.0])))
    assert msg["type"] == "pose3d" and msg["layout"] == "h36m17" and len(msg["joint_names"]) == 17
    assert np.allclose(msg["joints"], joints) and msg["filled"] == [3] and msg["gap"] == 2
    assert msg["root"] == pytest.approx([0.1, 0.2, 3.0])
    st = decode_message(encode_status("rejected", {"received": 1}, reason="oversized", detail="big"))
    assert st["type"] == "status" and st["event"] == "rejected" and st["reason"] == "oversized"


from hypothesis import given, settings
from hypothesis import strategies as st

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=60,
)


@settings(max_examples=200, deadline=None)
@given(over=st.dictionaries(st.sampled_from(["v", "stream", "frame", "t", "layout", "width", "height", "kp"]),
                            _values, max_size=4))
def test_mutated_messages_only_ever_raise_protocol_error(over):
    try:
        f = decode_input(pack(good(**over)))
    except ProtocolError as exc:
        assert exc.reason in REJECT_REASONS
    else:
        assert f.kp.shape[1] == 2 and not np.isinf(f.kp).any()
