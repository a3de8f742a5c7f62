"""LiftEngine against the offline model on timelines with drops, restarts and several streams."""

import numpy as np
import pytest
import torch

from poselift.model import lift_sequence
from poselift.model.normalization import normalize_screen
from poselift.stream.engine import LiftEngine
from poselift.stream.gapfill import GapPolicy
from poselift.stream.protocol import Frame2D
from tests.helpers import random_model
from tests.stream_helpers import HEIGHT, WIDTH, project, synthetic_poses


def expected(model, timeline, flip_tta=False):
    """Offline poses for a list of segments, each a list of (frame, normalised kp, published)."""
    out = {}
    for seg in timeline:
        x = torch.from_numpy(np.stack([kp for _, kp, _ in seg]))[None]
        y = lift_sequence(model, x, flip_tta=flip_tta)[0].numpy()
        for (frame, _, published), pose in zip(seg, y):
            if published:
                out.setdefault(frame, []).append(pose)
    return out


@pytest.mark.parametrize("flip_tta", [False, True])
@pytest.mark.parametrize("causal", [True, False])
def test_drops_and_restarts_match_offline_segments(causal, flip_tta):
    model = random_model((3, 3), causal=causal, channels=32, seed=4)
    policy = GapPolicy(max_gap_frames=4)
    eng = LiftEngine(model, max_streams=2, policy=policy, flip_tta=flip_tta)
    kp = project(synthetic_poses(80, seed=4))
    norm = normalize_screen(kp, WIDTH, HEIGHT)
    # frames sent: 0..19, drop 20-22, 23..34, restart at 5..14, long gap (jump to 40), 40..49
    sent = list(range(20)) + list(range(23, 35)) + list(range(5, 15)) + list(range(40, 50))
    # what the engine should have stepped: segments split at resets, drops interpolated
    seg1 = [(f, norm[f], True) for f in range(20)]
    for k, f in enumerate(range(20, 23), start=1):
        seg1.append((f, norm[19] + (norm[23] - norm[19]) * k / 4, False))
    seg1 += [(f, norm[f], True) for f in range(23, 35)]
    timeline = [seg1, [(f, norm[f], True) for f in range(5, 15)], [(f, norm[f], True) for f in range(40, 50)]]
    want = expected(model, timeline, flip_tta)
    out = []
    for f in sent:
        eng.submit(Frame2D("s", f, f / 30, "h36m17", WIDTH, HEIGHT, kp[f]))
        out += eng.run()
    out += eng.flush()
    assert [p.frame for p in out] == sent  # one pose per input, in order
    got = {}
    for p in out:
        got.setdefault(p.frame, []).append(p.joints)
    for f in want:
        np.testing.assert_allclose(np.array(got[f]), np.array(want[f]), atol=2e-5, rtol=0)
    assert [p.gap for p in out if p.gap] == [3]
    assert [(e.kind, e.reason) for e in eng.take_events()] == [("reset", "restart"), ("reset", "gap")]


def test_streams_are_independent_and_batched():
    model = random_model((3, 3, 3), causal=True, channels=32, seed=5)
    eng = LiftEngine(model, max_streams=3)
    kps = {s: project(synthetic_poses(30, seed=i)) for i, s in enumerate("abc")}
    frames = [Frame2D(s, t, 0.0, "h36m17", WIDTH, HEIGHT, kps[s][t]) for t in range(30) for s in "abc"]
    out = eng.process(frames)  # one big backlog: 30 rounds of 3 streams
    assert eng.counters["batches"] == 30 and eng.counters["batched_rows"] == 90
    for s in "abc":
        mine = np.stack([p.joints for p in out if p.stream == s])
        ref = lift_sequence(model, torch.from_numpy(normalize_screen(kps[s], WIDTH, HEIGHT))[None])[0].numpy()
        np.testing.assert_allclose(mine, ref, atol=1e-5, rtol=0)


def test_image_size_change_resets_and_other_layouts_work():
    model = random_model((3, 3), causal=True, channels=16)
    eng = LiftEngine(model)
    coco = np.random.default_rng(0).uniform(100, 300, (17, 2))
    out = eng.process([Frame2D("s", 0, 0.0, "coco17", 640, 480, coco), Frame2D("s", 1, 0.0, "coco17", 1280, 720, coco)])
    assert len(out) == 2 and all(np.isfinite(p.joints).all() for p in out)
    assert [(e.kind, e.reason) for e in eng.take_events()] == [("reset", "size_change")]


def test_unliftable_frame_still_gives_one_invalid_pose():
    model = random_model((3, 3), causal=True, channels=16)
    eng = LiftEngine(model)
    empty = np.full((17, 2), np.nan)
    out = eng.process([Frame2D("s", 0, 0.0, "h36m17", 640, 480, empty)])
    assert len(out) == 1 and not out[0].valid and (out[0].joints == 0).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("causal", [True, False])
def test_engine_on_cuda_with_restart_and_trajectory(causal):
    from poselift.model import TemporalModel

    model = random_model((3, 3, 3), causal=causal, channels=64, seed=1)
    torch.manual_seed(0)
    traj = TemporalModel(filter_widths=(3, 3, 3), causal=causal, channels=32, num_joints_out=1).eval()
    eng = LiftEngine(model, trajectory_model=traj, max_streams=2, device="cuda")
    kp = project(synthetic_poses(40, seed=1))
    sent = list(range(25)) + list(range(3, 20))  # restart: flushes on the GPU
    out = []
    for f in sent:
        eng.submit(Frame2D("s", f, 0.0, "h36m17", WIDTH, HEIGHT, kp[f]))
        out += eng.run()
    out += eng.flush()
    assert [p.frame for p in out] == sent
    for seg, frames in ((out[:25], range(25)), (out[25:], range(3, 20))):
        x = torch.from_numpy(normalize_screen(kp[list(frames)], WIDTH, HEIGHT))[None]
        ref = lift_sequence(model, x, device="cuda")[0].cpu().numpy()
        np.testing.assert_allclose(np.stack([p.joints for p in seg]), ref, atol=2e-3, rtol=0)  # TF32 on GPUs
        assert all(p.root is not None and np.isfinite(p.root).all() for p in seg)


def test_non_finite_model_output_is_never_valid():
    """The engine's non-finite guard: a model whose output overflows for one stream only.

    The expand weights are scaled by 1e30, so ordinary keypoints still give finite (huge)
    poses, while keypoints of 3e38 px (finite, and valid for the engine's intake) overflow
    to inf and then NaN inside the network. That stream's pose must be marked invalid; the
    other stream in the same batch stays valid."""
    model = random_model((3,), causal=True, channels=8)
    kp = project(synthetic_poses(1, seed=0))[0]
    huge = np.full((17, 2), 3e38)
    frames = [Frame2D("ok", 0, 0.0, "h36m17", WIDTH, HEIGHT, kp), Frame2D("bad", 0, 0.0, "h36m17", WIDTH, HEIGHT, huge)]
    # the input alone does not trip anything: the plain model lifts it to a finite, valid pose
    plain = {p.stream: p for p in LiftEngine(model, max_streams=2).process(frames)}
    assert plain["bad"].valid and np.isfinite(plain["bad"].joints).all()
    with torch.no_grad():
        model.expand_conv.weight.mul_(1e30)
    got = {p.stream: p for p in LiftEngine(model, max_streams=2).process(frames)}
    assert not np.isfinite(got["bad"].joints).all()  # the model really produced NaN/inf here
    assert not got["bad"].valid
    assert got["ok"].valid and np.isfinite(got["ok"].joints).all()


def _frames(stream, kp, start=0):
    return [Frame2D(stream, start + t, float(t), "h36m17", WIDTH, HEIGHT, kp[t]) for t in range(len(kp))]


def test_loop_stages_see_every_batch_before_the_sink():
    """The one loop's post-processing hook: each round's poses (several streams batched)
    pass every stage, in order, before the sink; a stage may mark, replace or drop poses;
    the poses a flush releases pass the stages too."""
    from poselift.stream.loop import PoseLoop, collect

    eng = LiftEngine(random_model((3, 3), causal=False, channels=16), max_streams=2)  # 4 frames held back
    kp = project(synthetic_poses(10))
    batches, order = [], []

    def mark(poses):
        batches.append([(p.stream, p.frame) for p in poses])
        for p in poses:
            p.extras["marked"] = True
        return poses

    def drop_frame_3(poses):
        order.append("drop")
        assert all(p.extras.get("marked") for p in poses)  # stages run in the given order
        return [p for p in poses if p.frame != 3]

    got = []
    loop = PoseLoop(eng, collect(got), stages=[mark, drop_frame_3])
    for fa, fb in zip(_frames("a", kp), _frames("b", kp)):
        loop.submit(fa)
        loop.submit(fb)
        loop.step()
    loop.flush()
    everything = sorted((s, t) for s in "ab" for t in range(10))
    assert sorted(x for b in batches for x in b) == everything  # flushed poses included
    assert sorted((p.stream, p.frame) for p in got) == [x for x in everything if x[1] != 3]
    assert all(p.extras["marked"] for p in got)
    assert any({s for s, _ in b} == {"a", "b"} for b in batches)  # one round = both streams
    assert loop.delivered == len(got) == 18 and len(loop.latencies_ms) == 18 and loop.last is got[-1]


def test_end_flushes_pending_poses_and_frees_the_slot():
    model = random_model((3, 3), causal=False, channels=16)
    eng = LiftEngine(model, max_streams=1)
    kp = project(synthetic_poses(10))
    for f in _frames("s", kp):
        eng.submit(f)
    eng.end("s")
    eng.end("s")  # already ended: says so
    out = eng.run()
    assert [p.frame for p in out] == list(range(10))
    y = lift_sequence(model, torch.from_numpy(normalize_screen(kp, WIDTH, HEIGHT))[None])[0].numpy()
    np.testing.assert_allclose(np.array([p.joints for p in out]), y, atol=1e-5)
    assert [(e.kind, e.stream, e.reason) for e in eng.take_events()] == [("end", "s", "ended"),
                                                                          ("end", "s", "unknown_stream")]
    assert eng.streams == {} and eng.counters["ended"] == 1 and eng.counters["resets"] == 0
    eng.submit(_frames("t", kp)[0])  # max_streams=1: the slot is free again
    assert "t" in eng.streams
