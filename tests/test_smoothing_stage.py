"""The --smooth stage (stream.smoothing.SmoothingStage) in the PoseLoop: it smooths each
stream causally, forgets a stream when the engine starts it over, lets invalid poses through
untouched, and is off unless asked for."""

from __future__ import annotations

import numpy as np
import pytest

from poselift.stream.apps import make_engine, run_demo, smoothing_stages
from poselift.stream.engine import LiftEngine, PoseOut
from poselift.stream.loop import PoseLoop, collect
from poselift.stream.protocol import Frame2D
from poselift.stream.smoothing import SmoothingStage, smooth_sequence
from tests.helpers import random_model
from tests.stream_helpers import HEIGHT, WIDTH, project, synthetic_poses, write_clip


def pose(stream: str, frame: int, joints: np.ndarray, valid: bool = True, epoch: int = 1) -> PoseOut:
    p = PoseOut(stream, frame, frame / 30, 0.0, joints.astype(np.float32), valid, False, [])
    p.epoch = epoch  # the engine's stretch id (0 on engines without it)
    return p


def jitter(x: np.ndarray) -> float:
    return float(np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1).mean())


def noisy_sequence(T: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (synthetic_poses(T, seed) + rng.normal(0, 0.02, (T, 17, 3))).astype(np.float32)


def test_stage_smooths_each_stream_as_the_one_euro_filter():
    seqs = {"a": noisy_sequence(seed=1), "b": noisy_sequence(seed=2)}
    stage = SmoothingStage(30.0, min_cutoff=1.0, beta=0.5)
    out = {s: [] for s in seqs}
    for t in range(120):  # both streams in every round, as a batched engine delivers them
        for p in stage([pose(s, t, seqs[s][t]) for s in seqs]):
            out[p.stream].append(p.joints)
            np.testing.assert_array_equal(p.extras["joints_unsmoothed"], seqs[p.stream][t])
    for s, seq in seqs.items():
        got = np.stack(out[s])
        np.testing.assert_allclose(got, smooth_sequence(seq, 30.0, min_cutoff=1.0, beta=0.5), atol=1e-6)
        assert jitter(got) < 0.5 * jitter(seq)


def test_stage_parameters_matter():
    seq = noisy_sequence()
    runs = {}
    for min_cutoff in (0.5, 4.0):
        stage = SmoothingStage(30.0, min_cutoff=min_cutoff, beta=0.0)
        runs[min_cutoff] = np.stack([stage([pose("a", t, seq[t])])[0].joints for t in range(len(seq))])
    assert jitter(runs[0.5]) < jitter(runs[4.0])
    with pytest.raises(ValueError):
        SmoothingStage(30.0, min_cutoff=0.0)


def test_stage_resets_when_the_stream_starts_over():
    stage = SmoothingStage(30.0)
    seq = noisy_sequence(40)
    for t in range(20):
        stage([pose("a", t, seq[t], epoch=1)])
    jump = seq[20] + 1.0  # far away: a filter with history would lag behind it
    again = stage([pose("a", 0, jump, epoch=2)])[0]  # the engine reset the stream (new epoch)
    np.testing.assert_array_equal(again.joints, jump)
    held = stage([pose("a", 1, jump + 1.0, epoch=2)])[0]  # same epoch: filtered, not passed through
    assert np.abs(held.joints - (jump + 1.0)).max() > 0.01


def test_stage_follows_real_engine_resets_and_ends():
    model = random_model((3, 3), causal=True, channels=16).eval()
    engine = LiftEngine(model, max_streams=2)
    stage = SmoothingStage(30.0, engine=engine)
    got: list[PoseOut] = []
    loop = PoseLoop(engine, collect(got), stages=[stage])
    kp = project(synthetic_poses(30))
    for t in range(15):
        loop.submit(Frame2D("a", t, t / 30, "h36m17", WIDTH, HEIGHT, kp[t]))
        loop.step()
    assert "a" in stage._state
    loop.submit(Frame2D("a", 3, 0.5, "h36m17", WIDTH, HEIGHT, kp[20]))  # frame number went back: restart
    loop.step()
    after = got[-1]
    assert after.epoch != got[-2].epoch
    np.testing.assert_array_equal(after.joints, after.extras["joints_unsmoothed"])  # fresh filter: unchanged
    engine.end("a")
    loop.submit(Frame2D("b", 0, 0.0, "h36m17", WIDTH, HEIGHT, kp[0]))
    loop.step()
    assert set(stage._state) == {"b"}  # an ended stream's state is dropped at the next round


def test_invalid_poses_pass_through_and_leave_the_state_alone():
    stage = SmoothingStage(30.0)
    seq = noisy_sequence(30)
    ref = SmoothingStage(30.0)
    for t in range(30):
        if t % 5 == 3:
            bad = np.full((17, 3), np.nan if t % 2 else 0.0)
            out = stage([pose("a", t, bad, valid=False)])[0]
            np.testing.assert_array_equal(out.joints, bad.astype(np.float32))
            assert "joints_unsmoothed" not in out.extras
            continue
        a = stage([pose("a", t, seq[t])])[0].joints
        b = ref([pose("a", t, seq[t])])[0].joints
        np.testing.assert_array_equal(a, b)  # the invalid frames changed nothing


def test_smoothing_is_off_by_default(tmp_path):
    model = random_model((3, 3), causal=True, channels=16).eval()
    engine = LiftEngine(model, max_streams=1)
    assert smoothing_stages(engine, 30.0) == []
    assert isinstance(smoothing_stages(engine, 30.0, smooth=True)[0], SmoothingStage)
    from poselift.cli import build_parser

    for cmd in (["demo"], ["webcam"], ["serve"], ["video", "x.mp4", "--out", "x.npz"]):
        a = build_parser().parse_args(cmd)
        assert (a.smooth, a.smooth_min_cutoff, a.smooth_beta, a.lookahead) == (False, 1.0, 0.5, None)


def test_demo_with_smooth_is_smoother(tmp_path):
    clip = write_clip(tmp_path / "clip.npz", T=80)
    from tests.stream_helpers import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "m.pt", widths=(3, 3), channels=16)
    kw = dict(clip=clip, checkpoint=ckpt, out=None, publish=None, device="cpu")
    raw = run_demo(**kw)["poses"]
    smooth = run_demo(**kw, smooth=True, smooth_min_cutoff=0.5, smooth_beta=0.0)["poses"]
    assert jitter(smooth) < 0.7 * jitter(raw)
    np.testing.assert_array_equal(run_demo(**kw, smooth=False)["poses"], raw)
