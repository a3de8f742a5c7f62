"""The per-batch motion stage: per-stream bodies and rotations, as the live loop will call it."""

from __future__ import annotations

import numpy as np
import pytest

from poselift.bench.motion import bench_motion, motion_quality
from poselift.model.body import bone_lengths, symmetrize
from poselift.model.rig import camera_to_rig, forward_kinematics
from poselift.stream.motion import MotionStage
from tests.motion_helpers import demo_poses, scaled_noisy


def _streams(scales: dict[str, float], frames: int = 60) -> dict[str, np.ndarray]:
    return {s: scaled_noisy(demo_poses()[:frames], k, 0.08, seed=i) for i, (s, k) in enumerate(scales.items())}


def test_each_stream_gets_its_own_consistent_body():
    data = _streams({"a": 0.9, "b": 1.0, "c": 1.2})
    stage = MotionStage(warmup=20)
    rng = np.random.default_rng(0)
    for t in range(60):
        names = list(rng.permutation(list(data)))  # the batch order changes from call to call
        out = stage.process(names, np.stack([data[s][t] for s in names]))
        if t >= 20:
            assert out.settled.all()
    final = {s: out.lengths[out.streams.index(s)] for s in data}
    assert final["c"][4] / final["a"][4] == pytest.approx(1.2 / 0.9, rel=0.05)  # left shins
    for k, s in enumerate(out.streams):
        np.testing.assert_allclose(bone_lengths(out.joints[k]), out.lengths[k], atol=1e-9)


def test_rotations_reproduce_the_consistent_joints():
    data = _streams({"a": 1.0, "b": 1.1}, 30)
    stage = MotionStage(warmup=10)
    for t in range(30):
        root = np.array([[0.0, 0.0, 3.0], [1.0, 0.5, 4.0]]) + t * 0.01
        joints = np.stack([data["a"][t], data["b"][t]]) + [0.01, -0.02, 0.03]  # a lifter's pelvis is near 0, not at 0
        out = stage.process(["a", "b"], joints, root=root)
        fk = forward_kinematics(out.rotations, out.root, out.offsets)
        absolute = out.rig_joints + camera_to_rig(root)[:, None]
        np.testing.assert_allclose(fk[:, :17], absolute, atol=1e-6)
    assert out.root[1] == pytest.approx([1.30, -0.77, -4.32])  # camera frame -> rig frame (y up), plus the pelvis


def test_settling_and_changes_are_reported_once():
    poses = scaled_noisy(demo_poses(), 1.0, 0.02)
    stage = MotionStage(warmup=15)
    flags = [bool(stage.process(["cam"], p[None]).skeleton_changed[0]) for p in poses[:100]]
    assert flags.index(True) == 14 and sum(flags) == 1


def test_invalid_poses_pass_through_and_hold_rotations():
    poses = scaled_noisy(demo_poses()[:12], 1.0, 0.05)
    stage = MotionStage(warmup=5)
    first = stage.process(["x"], poses[:1], valid=np.array([False]))
    assert not first.valid[0] and np.isnan(first.lengths[0]).all()
    np.testing.assert_array_equal(first.joints[0], poses[0])
    np.testing.assert_array_equal(first.rotations[0], np.tile([0.0, 0, 0, 1], (19, 1)))
    good = stage.process(["x"], poses[1:2])
    held = stage.process(["x"], np.zeros((1, 17, 3)), valid=np.array([False]))
    np.testing.assert_array_equal(held.rotations, good.rotations)
    nan = stage.process(["x"], np.full((1, 17, 3), np.nan))  # non-finite: never enters
    assert not nan.valid[0]
    assert stage.body.count[stage._slots["x"]] == 1


def test_reset_forgets_a_stream_and_reuses_its_slot():
    poses = scaled_noisy(demo_poses()[:10], 1.0, 0.0)
    stage = MotionStage(warmup=3)
    for p in poses[:5]:
        stage.process(["a", "b"], np.stack([p, p * 1.3]))
    stage.reset("b")
    assert stage.streams == ["a"]
    out = stage.process(["a", "c"], np.stack([poses[5], poses[5] * 0.8]))
    assert out.settled.tolist() == [True, False]
    assert stage.body.num_streams == 2  # c took b's slot
    np.testing.assert_allclose(out.lengths[1], symmetrize(bone_lengths(poses[5] * 0.8)), rtol=1e-9)
    with pytest.raises(ValueError):
        stage.process(["a", "a"], np.stack([poses[0], poses[0]]))


def test_quality_on_noisy_motion():
    noisy = scaled_noisy(demo_poses(), 1.0, 0.1, seed=3)
    q = motion_quality(noisy)
    assert q["cv_raw"] > 0.08
    assert q["cv_consistent_settled"] <= 0.01
    assert q["jitter_consistent"] < q["jitter_raw"]


def test_bench_returns_timings():
    result = bench_motion(streams=(1, 4), frames=5)
    assert set(result) == {"streams_1", "streams_4"}
    assert result["streams_4"]["per_pose_ms"] == pytest.approx(result["streams_4"]["batch_ms"] / 4)


def test_a_valid_pose_kept_out_of_the_estimate_is_still_conformed():
    poses = scaled_noisy(demo_poses()[:12], 1.0, 0.05)
    stage = MotionStage(warmup=5)
    for p in poses[:10]:
        stage.process(["x"], p[None])
    odd = poses[10].copy()
    odd[10] = odd[9] + 0.002 * (odd[10] - odd[9]) / np.linalg.norm(odd[10] - odd[9])  # a 2 mm nose-to-head bone
    before = stage.body.lengths[0].copy()
    out = stage.process(["x"], odd[None])
    np.testing.assert_array_equal(stage.body.lengths[0], before)  # not in the estimate
    assert out.valid[0]
    np.testing.assert_allclose(bone_lengths(out.joints[0]), out.lengths[0], atol=1e-9)  # but conformed
    np.testing.assert_array_equal(out.lengths[0], stage.body.reported[0])  # to the announced body


def test_settled_poses_use_the_announced_skeleton_until_it_changes():
    """Once settled, the joints take the lengths last reported (the skeleton message a consumer
    got), not the slowly adapting estimate, so rotations + that skeleton give the joints back."""
    poses = scaled_noisy(demo_poses()[:80], 1.0, 0.05)
    stage = MotionStage(warmup=5)
    announced = None
    for p in poses:
        out = stage.process(["x"], p[None])
        if out.skeleton_changed[0]:
            announced = out.lengths[0].copy()
        if out.settled[0]:
            np.testing.assert_allclose(bone_lengths(out.joints[0])[[0, 1, 2, 6, 7, 8]], announced[[0, 1, 2, 6, 7, 8]],
                                       atol=1e-9)
    assert not np.allclose(stage.body.lengths[0], announced, atol=1e-6)  # the estimate itself moved on


def test_motion_bench_command_line_asks_before_it_writes(tmp_path, monkeypatch, capsys):
    """``--help`` and unknown options are answered by the parser: nothing is measured and no
    file appears (``--help`` once ran the whole bench and wrote a JSON file named ``--help``)."""
    import pytest

    from poselift.bench import motion

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(motion, "bench_motion", lambda **_kw: pytest.fail("measured"))
    for argv, code in ((["--help"], 0), (["--frames", "3"], 2)):
        with pytest.raises(SystemExit) as exit_:
            motion.main(argv)
        assert exit_.value.code == code
    assert list(tmp_path.iterdir()) == []
    assert "--time-only" in capsys.readouterr().out
