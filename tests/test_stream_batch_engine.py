"""The batched engine paths equal the one-by-one ones: the roots of a round computed
together equal model.root's per-pose formula, and a server drain (batch decode, batch
model inputs, batch encode) publishes what the per-frame path publishes."""

from __future__ import annotations

import numpy as np
import pytest

from poselift.model import root as root_model
from poselift.stream.apps import load_model
from poselift.stream.engine import LiftEngine
from poselift.stream.intake import Meta


@pytest.fixture(scope="module")
def engine():
    ckpt = load_model(None, "causal")
    if (ckpt.meta.get("trajectory") or {}).get("target") != "depth_over_focal":
        pytest.skip("the shipped causal model has no depth-over-focal root model")
    return LiftEngine(ckpt.model, trajectory_model=ckpt.trajectory_model, max_streams=2,
                      trajectory_meta=ckpt.meta["trajectory"], fov_deg=70.0)


def test_roots_of_a_round_equal_the_per_pose_formula(engine):
    """One pass over a round of mixed image sizes, stated and default focal lengths, filled
    joints and frames with nothing liftable gives what model.root's formulas give pose by pose:
    the trajectory network's root blended with the pose fitted to the 2D."""
    rng = np.random.default_rng(3)
    metas, outs = [], rng.normal(size=(12, 1, 3))
    poses = rng.normal(0.0, 0.3, (12, 17, 3))
    poses[:, 0] = 0.0
    for i in range(12):
        x = None if i % 5 == 4 else rng.uniform(-0.3, 0.3, (17, 2)).astype(np.float32)
        metas.append(Meta("s", i, 0.0, 0.0, True, [3, 16] if i % 3 == 1 else [], 0, x,
                          width=[640, 1280, 333][i % 3], height=[480, 720, 999][i % 3],
                          focal_px=None if i % 2 else 500.0 + i))
    got = engine._roots(poses, outs, metas)
    for i, m in enumerate(metas):
        if m.x is None:
            assert got[i] is None
            continue
        focal = m.focal_px if m.focal_px is not None else root_model.focal_from_fov(70.0, m.width)
        weights = np.ones(17)
        weights[m.filled] = 0.0
        network = root_model.root_from_output(outs[i], m.x[0], focal, m.width, m.height)
        fitted = root_model.root_from_pose(poses[i], m.x, focal, m.width, m.height, weights)
        np.testing.assert_allclose(got[i], root_model.fuse_roots(network, fitted), rtol=1e-12, atol=1e-12)


def _small_engine(streams: int = 4) -> LiftEngine:
    from tests.helpers import random_model

    return LiftEngine(random_model((3, 3), causal=True, channels=16), max_streams=streams)


def _frame(stream: str, frame: int, seed: int = 0):
    from poselift.stream.protocol import Frame2D

    kp = np.random.default_rng(seed).uniform(100, 500, (17, 2))
    return Frame2D(stream, frame, frame / 30.0, "h36m17", 640, 480, kp)


def test_frame_numbers_of_the_whole_wire_range_are_lifted():
    eng = _small_engine()
    top = 2**64 - 1
    poses = eng.process([_frame("a", top - 2), _frame("a", top - 1), _frame("a", top)])
    assert [p.frame for p in poses] == [top - 2, top - 1, top] and eng.take_events() == []
    from poselift.stream.protocol import ProtocolError

    with pytest.raises(ProtocolError):
        eng.submit(_frame("b", 2**64))


def test_a_failing_intake_loses_only_its_frame(monkeypatch):
    """An exception while filling a batch (a bug) is reported as internal_error for the frame
    that raises it; the other frames of the batch are lifted."""
    eng = _small_engine()
    real = eng.intake.process

    def flaky(slots, frames, xs):
        if any(f.stream == "bad" for f in frames):
            if len(frames) == 1:
                raise RuntimeError("boom")
            raise RuntimeError("boom in a batch")
        return real(slots, frames, xs)

    monkeypatch.setattr(eng.intake, "process", flaky)
    poses = eng.process([_frame("a", 0), _frame("bad", 0), _frame("c", 0)])
    assert sorted(p.stream for p in poses) == ["a", "c"]
    assert [(e.kind, e.reason, e.stream) for e in eng.take_events()] == [("rejected", "internal_error", "bad")]


def test_streams_with_frames_waiting_for_the_intake_are_not_evicted():
    """Frames wait for the intake until the next run; their stream counts as busy, as it
    did when each frame was filled at once, so a new stream cannot evict it meanwhile."""
    from poselift.stream.protocol import ProtocolError

    from tests.helpers import random_model

    eng = LiftEngine(random_model((3, 3), causal=True, channels=16), max_streams=1, evict_after_s=0.0)
    eng.submit(_frame("a", 0))
    with pytest.raises(ProtocolError) as exc:
        eng.submit(_frame("b", 0))
    assert exc.value.reason == "too_many_streams"
    assert [p.stream for p in eng.run()] == ["a"]
    eng.submit(_frame("b", 0))  # "a" is idle now (evict_after_s=0): "b" takes its slot
    assert [p.stream for p in eng.run()] == ["b"]
