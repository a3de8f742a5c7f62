"""Fuzzing the v1 decoder and a running ``poselift serve``.

* Property tests (hypothesis): random bytes, arbitrary msgpack, valid maps with wrong
  types/shapes, huge arrays, NaN/inf, negative and huge frame numbers, unknown layouts,
  extra fields. The decoder only ever raises ProtocolError with a known reason and a
  detail; whatever it accepts, the lifting engine processes into finite poses.
* Wire soak: POSELIFT_FUZZ_MESSAGES (default 1500; the recorded run used 10,000) random
  and malformed messages to a real ``poselift serve --lossless`` process, interleaved
  with a valid stream. 0 crashes, every bad message counted by reason in the status
  output, valid frames during and after answered exactly as ``lift_sequence`` offline.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter

import msgpack
import numpy as np
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poselift.model.skeleton import LAYOUTS
from poselift.stream.engine import LiftEngine
from poselift.stream.protocol import (
    MAX_COORD_PX,
    MAX_MESSAGE_BYTES,
    REJECT_REASONS,
    ProtocolError,
    decode_input,
    encode_input,
)
from tests.helpers import random_model
from tests.reliability_helpers import (
    CATEGORIES,
    ServeProcess,
    expected_reason,
    final_counters,
    fuzz_message,
    good_map,
    pull,
    push,
    recv_all,
)
from tests.stream_helpers import HEIGHT, WIDTH, project, synthetic_poses, write_checkpoint, offline

FUZZ_MESSAGES = int(os.environ.get("POSELIFT_FUZZ_MESSAGES", "1500"))


def pack(m):
    return msgpack.packb(m, use_bin_type=True)


def decode_or_reason(data: bytes):
    """Decode; any exception other than ProtocolError fails the test."""
    try:
        return decode_input(data), None
    except ProtocolError as exc:
        assert exc.reason in REJECT_REASONS, exc.reason
        assert exc.detail and isinstance(exc.detail, str)
        return None, exc.reason


def check_accepted(f) -> None:
    n = LAYOUTS[f.layout].num_joints
    assert f.kp.shape == (n, 2) and f.kp.dtype == np.float64
    assert not np.isinf(f.kp).any() and np.all(np.isnan(f.kp[:, 0]) == np.isnan(f.kp[:, 1]))
    assert np.nanmax(np.abs(f.kp), initial=0.0) <= MAX_COORD_PX
    assert isinstance(f.frame, int) and f.frame >= 0 and math.isfinite(f.t)
    assert 1 <= f.width <= 65536 and 1 <= f.height <= 65536
    assert f.conf is None or (f.conf.shape == (n,) and ((f.conf >= 0) & (f.conf <= 1)).all())


# --------------------------------------------------------------------------- properties
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_are_rejected_with_a_reason(data):
    f, reason = decode_or_reason(data)
    if f is not None:  # astronomically unlikely, but then it must be a well-formed frame
        check_accepted(f)


_scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=True)
            | st.text(max_size=10) | st.binary(max_size=10))
_any = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=8)
                    | st.dictionaries(st.text(max_size=6) | st.integers(-5, 5), inner, max_size=6), max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(_any)
def test_any_msgpack_value_is_rejected_or_well_formed(value):
    f, _ = decode_or_reason(msgpack.packb(value, use_bin_type=True))
    if f is not None:
        check_accepted(f)


_engine = None


def engine() -> LiftEngine:
    global _engine
    if _engine is None:
        _engine = LiftEngine(random_model((3, 3), causal=True, channels=16), max_streams=4, evict_after_s=0.0)
    return _engine


_coord = st.floats(-MAX_COORD_PX, MAX_COORD_PX) | st.just(math.nan) | st.sampled_from([1e7, 1e300, -1e300, math.inf])
_joint = (st.none() | st.lists(_coord, min_size=2, max_size=2)
          | st.tuples(_coord, _coord, st.floats(allow_nan=True) | st.integers(-3, 3)).map(list)
          | _scalars | st.lists(_coord, min_size=0, max_size=4))
_layouts = st.sampled_from(["h36m17", "coco17", "mediapipe33"]) | st.text(max_size=12)


@st.composite
def mutated_maps(draw):
    layout = draw(_layouts)
    n = LAYOUTS[layout].num_joints if layout in LAYOUTS else draw(st.integers(0, 40))
    n = draw(st.sampled_from([n, n, n, n - 1, n + 1, 0, 1000]))
    m = {"v": draw(st.sampled_from([1, 1, 1, 1, 2, 0, 1.0, True, "1", None])),
         "stream": draw(st.sampled_from(["a", "b", "c"]) | st.text(max_size=140) | _scalars),
         "frame": draw(st.integers(0, 10**6) | st.integers(-2**63, 2**64 - 1) | _scalars),
         "t": draw(st.floats(allow_nan=True) | st.integers(-2**63, 2**63) | _scalars),
         "layout": layout,
         "width": draw(st.sampled_from([640, 1, 65536, 65537, 0, -1]) | _scalars),
         "height": draw(st.sampled_from([480, 1, 65536, 0]) | _scalars),
         "kp": [draw(_joint) for _ in range(max(n, 0))] if n < 1000 else [[1.0, 2.0]] * n}
    for k in draw(st.lists(st.sampled_from(list(m)), max_size=2, unique=True)):
        del m[k]
    for k, v in draw(st.dictionaries(st.text(max_size=6), _scalars, max_size=3)).items():
        m.setdefault(k, v)  # extra fields
    return m


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_maps())
def test_mutated_maps_rejected_with_reason_or_lifted_to_finite_poses(m):
    f, _ = decode_or_reason(pack(m))
    if f is None:
        return
    check_accepted(f)
    if f.stream not in ("a", "b", "c"):  # keep the engine's slots for a bounded set of names
        f.stream = "a"
    eng = engine()
    eng.submit(f)
    for p in eng.run():
        assert p.joints.shape == (17, 3) and np.isfinite(p.joints).all(), (m, p)
    eng.take_events()


@settings(max_examples=200, deadline=None)
@given(st.integers(-2**63, 2**64 - 1))
def test_frame_numbers(frame):
    f, reason = decode_or_reason(pack(good_map(frame=frame)))
    if frame < 0:
        assert reason == "bad_type"
    else:
        assert f is not None and f.frame == frame


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20).filter(lambda s: s not in LAYOUTS))
def test_unknown_layouts(layout):
    assert decode_or_reason(pack(good_map() | {"layout": layout}))[1] == "unknown_layout"


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in good_map() and k not in ("type", "focal_px")), _any,
                       max_size=5))
def test_extra_fields_are_ignored(extra):
    base = decode_input(pack(good_map()))
    f, reason = decode_or_reason(pack(good_map() | extra))
    assert reason is None or reason == "oversized"
    if f is not None:
        assert (f.stream, f.frame, f.t) == (base.stream, base.frame, base.t) and np.array_equal(f.kp, base.kp)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 16), st.integers(0, 2), st.sampled_from([math.nan, math.inf, -math.inf]))
def test_non_finite_values(j, where, bad):
    m = good_map()
    if where == 2:
        m["kp"] = [p + [1.0] for p in m["kp"]]
        m["kp"][j][2] = bad
        expect = "non_finite"
    else:
        m["kp"][j][where] = bad
        expect = "non_finite"
    assert decode_or_reason(pack(m))[1] == expect
    m = good_map()
    m["kp"][j] = [math.nan, math.nan]  # NaN in both coordinates: a missing joint, accepted
    f, _ = decode_or_reason(pack(m))
    assert f is not None and np.isnan(f.kp[j]).all()


def test_huge_finite_coordinates_are_rejected_not_published_as_nan():
    """Regression: 1e300 px passed validation, overflowed to inf in the float32 model
    input, and came out as NaN joints with valid = true."""
    for big in (1e300, -1e30, MAX_COORD_PX * 1.01):
        m = good_map()
        m["kp"][3] = [big, 10.0]
        assert decode_or_reason(pack(m))[1] == "bad_type"
    m = good_map()
    m["width"] = m["height"] = 1
    m["kp"] = [[MAX_COORD_PX, -MAX_COORD_PX]] * 17  # the largest accepted: lifted to finite joints
    eng = LiftEngine(random_model((3, 3), causal=True, channels=16))
    out = eng.process([decode_input(pack(m))])
    assert len(out) == 1 and np.isfinite(out[0].joints).all()


def test_huge_arrays_are_bounded():
    for n in (10_000, 100_000):
        assert decode_or_reason(pack(good_map() | {"kp": [[1.0, 2.0]] * n}))[1] in ("oversized", "wrong_joint_count")
    # a declared length far beyond the bytes present: no allocation, just malformed
    assert decode_or_reason(b"\xdd\xff\xff\xff\xff")[1] == "malformed_msgpack"
    assert decode_or_reason(b"\xdf\xff\xff\xff\xff")[1] == "malformed_msgpack"
    assert decode_or_reason(b"\x91" * 60_000 + b"\xc0")[1] == "malformed_msgpack"  # nesting too deep


BY_CONSTRUCTION = {
    "msgpack_not_map": {"not_a_map"}, "missing_field": {"missing_field", "bad_version"},
    "non_finite": {"non_finite"}, "unknown_layout": {"unknown_layout"}, "extra_fields": {None},
    "truncated": {"malformed_msgpack"}, "trailing_bytes": {"malformed_msgpack"}, "oversized": {"oversized"},
    "wrong_joint_count": {"wrong_joint_count"}, "huge_coordinate": {"bad_type"}, "valid_odd": {None},
    "bad_version": {"bad_version"}, "huge_array": {"oversized", "wrong_joint_count"},
    "deep_nesting": {"malformed_msgpack", "not_a_map"},
}


def test_fuzz_generator_categories_get_their_reasons():
    """The soak's message generator yields what each category promises (so the soak's
    per-reason counts are checked against construction, not only against the decoder)."""
    rng = np.random.default_rng(7)
    seen = Counter()
    for _ in range(2000):
        cat, data = fuzz_message(rng)
        reason = expected_reason(data)
        seen[cat] += 1
        if cat in BY_CONSTRUCTION:
            assert reason in BY_CONSTRUCTION[cat], (cat, reason, data[:80])
    assert set(seen) == set(CATEGORIES)


# ----------------------------------------------------------------------------- wire soak
def run_wire_fuzz(tmp_path, n_messages: int, seed: int = 0) -> dict:
    """Send ``n_messages`` fuzz messages (plus a valid stream woven through them and one
    after them) to a real ``serve --lossless``; return what was sent and received."""
    ckpt = write_checkpoint(tmp_path / "m.pt", causal=True, widths=(3, 3, 3), channels=32)
    from poselift.model import load_checkpoint

    model = load_checkpoint(ckpt).model
    n_good = 90
    good_kp = project(synthetic_poses(n_good, seed=1))
    after_kp = project(synthetic_poses(60, seed=2))
    rng = np.random.default_rng(seed)
    messages = [fuzz_message(rng) for _ in range(n_messages)]
    # Over 64 KiB the server's socket drops the message and disconnects its sender before the
    # server sees it (MAXMSGSIZE = MAX_MESSAGE_BYTES): those go through a socket of their own,
    # so that the rest, and the valid streams, arrive in full; they are not counted.
    too_big = [d for _, d in messages if len(d) > MAX_MESSAGE_BYTES]
    messages = [(c, d) for c, d in messages if len(d) <= MAX_MESSAGE_BYTES]
    expected = Counter(expected_reason(d) for _, d in messages)
    good_at = set(np.linspace(0, len(messages), n_good, endpoint=False).astype(int).tolist())

    serve = ServeProcess.start(ckpt, "--lossless", "--raw")
    rx = pull(serve.publish)
    got = {"pose3d": [], "status": []}
    n_poses = expected[None] + n_good + len(after_kp)
    receiver = threading.Thread(target=recv_all, args=(rx,), daemon=True,
                                kwargs=dict(poses=n_poses, timeout=300, out=got))
    receiver.start()
    tx = push(serve.input)
    big = push(serve.input)
    big.setsockopt(zmq.LINGER, 0)
    t0 = time.monotonic()
    try:
        g = 0
        for i, (_, data) in enumerate(messages):
            if i in good_at:
                tx.send(encode_input("good", g, good_kp[g], width=WIDTH, height=HEIGHT, t=float(g)))
                g += 1
            tx.send(data)
            if too_big and i % 10 == 0:
                try:
                    big.send(too_big.pop(), zmq.NOBLOCK)
                except zmq.Again:  # disconnected and not yet back: it is dropped either way
                    pass
        assert g == n_good
        alive_after_fuzz = serve.proc.poll() is None
        for t in range(len(after_kp)):
            tx.send(encode_input("after", t, after_kp[t], width=WIDTH, height=HEIGHT, t=float(t)))
        receiver.join(300)
        elapsed = time.monotonic() - t0
        alive = serve.proc.poll() is None
        rss = int(open(f"/proc/{serve.pid}/status").read().split("VmRSS:")[1].split()[0])
        code, out, err = serve.stop()
    finally:
        serve.kill()
        tx.close()
        big.close()
        rx.close()
    return dict(model=model, good_kp=good_kp, after_kp=after_kp, expected=expected, got=got, code=code, out=out,
                err=err, alive=alive and alive_after_fuzz, n_sent=len(messages) + n_good + len(after_kp),
                elapsed=elapsed, rss_kib=rss, n_poses=n_poses)


def check_wire_fuzz(r: dict) -> None:
    assert r["alive"], r["err"][-3000:]
    assert r["code"] == 0, r["err"][-3000:]
    assert "Traceback" not in r["err"], r["err"][-3000:]
    counters = final_counters(r["out"])
    bad = {k: v for k, v in r["expected"].items() if k is not None}
    # every message received; every bad one counted under the reason the decoder gives it
    assert counters["received"] == r["n_sent"]
    assert counters["rejected"] == bad and counters["rejected_total"] == sum(bad.values())
    assert "internal_error" not in counters["rejected"]
    assert counters["accepted"] == counters["published"] == r["n_poses"]
    # ... and reported one by one on the status topic, each with a reason and a detail
    # (lossless status messages are skipped, never waited for, while the consumer is behind)
    rejected_msgs = [m for m in r["got"]["status"] if m["event"] == "rejected"]
    assert rejected_msgs
    assert not Counter(m["reason"] for m in rejected_msgs) - Counter(bad)
    assert all(m["detail"] and m["counters"]["rejected_total"] >= 1 for m in rejected_msgs)
    poses = r["got"]["pose3d"]
    assert len(poses) == r["n_poses"]
    for name, kp in (("good", r["good_kp"]), ("after", r["after_kp"])):
        mine = [p for p in poses if p["stream"] == name]
        assert [p["frame"] for p in mine] == list(range(len(kp)))
        np.testing.assert_allclose(np.array([p["joints"] for p in mine]), offline(r["model"], kp), atol=1e-5, rtol=0)
        assert all(p["valid"] for p in mine)
    assert all(np.isfinite(p["joints"]).all() for p in poses)


def test_wire_fuzz_soak_against_serve_process(tmp_path):
    r = run_wire_fuzz(tmp_path, FUZZ_MESSAGES)
    check_wire_fuzz(r)
    c = final_counters(r["out"])
    print(f"\nwire fuzz: {FUZZ_MESSAGES} fuzz messages + {r['n_sent'] - FUZZ_MESSAGES} valid frames in "
          f"{r['elapsed']:.1f} s; serve alive, exit 0; rejected {c['rejected_total']} {c['rejected']}; "
          f"accepted {c['accepted']}, published {c['published']}; serve RSS {r['rss_kib'] / 1024:.0f} MiB")
