"""BodyEstimator and conform: one skeleton per stream, robust, vectorised, resettable."""

from __future__ import annotations

import numpy as np
import pytest

from poselift.model.body import (BONE_CHILDREN, BONE_PARENTS, LIMB_BONES, SYMMETRIC_BONES, BodyEstimator,
                                 bone_lengths, conform, joint_jitter, limb_length_cv)
from tests.motion_helpers import demo_lengths, demo_poses, scaled_noisy


def test_conform_gives_the_body_and_keeps_directions():
    poses = scaled_noisy(demo_poses()[:50], 1.0, 0.1)
    lengths = demo_lengths()
    out = conform(poses, lengths)
    np.testing.assert_allclose(bone_lengths(out), np.broadcast_to(lengths, (50, 16)), atol=1e-12)
    np.testing.assert_allclose(out[:, 0], poses[:, 0])  # root stays
    girdle = {1, 4, 11, 14}  # hip and shoulder bones share one line (see conform)
    for b, (p, c) in enumerate(zip(BONE_PARENTS, BONE_CHILDREN)):
        if c in girdle:
            continue
        u = poses[:, c] - poses[:, p]
        v = out[:, c] - out[:, p]
        cos = np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
        assert cos.min() > 1 - 1e-12, f"bone {b} changed direction"
    # the pelvis and thorax are the midpoints of the hips and shoulders
    np.testing.assert_allclose(out[:, 0], 0.5 * (out[:, 1] + out[:, 4]), atol=1e-12)
    np.testing.assert_allclose(out[:, 8], 0.5 * (out[:, 11] + out[:, 14]), atol=1e-12)


def test_conform_leaves_poses_without_a_body_alone():
    poses = scaled_noisy(demo_poses()[:3], 1.0, 0.1)
    np.testing.assert_array_equal(conform(poses, np.full(16, np.nan)), poses)


def test_estimator_settles_on_the_median_despite_outliers():
    poses = scaled_noisy(demo_poses(), 1.1, 0.05, seed=1)
    poses[::4] *= 1.6  # a quarter of the poses are wild (all bones 60 % too long)
    est = BodyEstimator(1, warmup=30)
    settled_at = None
    for t, pose in enumerate(poses[:40]):
        u = est.update(pose[None])
        if u.settled_now[0]:
            settled_at = t
            assert u.changed[0]
    assert settled_at == 29
    truth = demo_lengths() * 1.1
    # a mean would be 15 % too long; the median moves only to the clean poses' 2/3 quantile
    assert np.abs(est.lengths[0] / truth - 1).max() < 0.04


def test_after_settling_one_wild_pose_barely_moves_the_body():
    est = BodyEstimator(1, warmup=10, rate=0.01, clip=0.1)
    poses = scaled_noisy(demo_poses()[:20], 1.0, 0.0)
    for pose in poses[:10]:
        est.update(pose[None])
    before = est.lengths[0].copy()
    est.update(poses[10:11] * 3.0)  # every bone three times too long
    assert np.abs(est.lengths[0] / before - 1).max() <= 0.01 * 0.1 + 1e-12


def test_estimator_adapts_slowly_to_a_new_body():
    est = BodyEstimator(1, warmup=10, rate=0.02)
    base = demo_poses()
    for pose in base[:10]:
        est.update(pose[None])
    start = est.lengths[0].copy()
    changes = 0
    for t in range(300):
        changes += int(est.update(base[t % 300][None] * 1.05).changed[0])
    limbs = list(LIMB_BONES)  # rigid in the mocap (the spine bones bend)
    np.testing.assert_allclose(est.lengths[0, limbs], start[limbs] * 1.05, rtol=0.005)
    assert 1 <= changes <= 3  # reported when it passed 2 % (and maybe 4 %), not every frame


def test_invalid_and_non_finite_poses_never_enter_and_a_stream_waits():
    est = BodyEstimator(2, warmup=5)
    good = demo_poses()[:10]
    bad = good.copy()
    bad[:, 3, 0] = np.nan
    for t in range(5):  # stream 0 sees only unusable poses, stream 1 only good ones
        u = est.update(np.stack([bad[t] if t % 2 else good[t] * 1.3, good[t]]), valid=np.array([t % 2 == 1, True]))
        assert not u.used[0] and u.used[1]
    assert np.isnan(est.lengths[0]).all() and est.count[0] == 0
    assert est.settled[1]
    # then stream 0's first valid poses start its own warm-up
    for t in range(5):
        est.update(good[t:t + 1] * 1.2, slots=np.array([0]))
    np.testing.assert_allclose(est.lengths[0], est.lengths[1] * 1.2, rtol=1e-9)


def test_streams_are_independent_and_reset_per_stream():
    poses = demo_poses()[:30]
    est = BodyEstimator(3, warmup=5)
    scales = np.array([0.9, 1.0, 1.15])
    for pose in poses[:5]:
        est.update(pose[None] * scales[:, None, None])
    np.testing.assert_allclose(est.lengths / est.lengths[1], np.broadcast_to(scales[:, None], (3, 16)), rtol=1e-9)
    est.reset(2)
    assert np.isnan(est.lengths[2]).all() and not est.settled[2] and est.settled[0]
    u = est.update(poses[:1], slots=np.array([2]))
    assert not u.settled[0]


def test_update_only_touches_the_listed_slots():
    est = BodyEstimator(4, warmup=3)
    pose = demo_poses()[:1]
    est.update(np.repeat(pose, 2, 0), slots=np.array([3, 1]))
    assert est.count.tolist() == [0, 1, 0, 1]


def test_symmetric_option():
    pose = demo_poses()[:1].copy()
    pose[0, 12] = pose[0, 11] + (pose[0, 12] - pose[0, 11]) * 1.2  # left upper arm 20 % longer (and forearm moves along)
    pose[0, 13] = pose[0, 12] + (demo_poses()[0, 13] - demo_poses()[0, 12])
    sym, asym = BodyEstimator(1, warmup=1), BodyEstimator(1, warmup=1, symmetric=False)
    sym.update(pose)
    asym.update(pose)
    for left, right in SYMMETRIC_BONES:
        assert sym.lengths[0, left] == sym.lengths[0, right]
    upper_arm = (11, 14)  # bone index = child joint - 1: left elbow 12 -> 11, right elbow 15 -> 14
    assert asym.lengths[0, upper_arm[0]] == pytest.approx(asym.lengths[0, upper_arm[1]] * 1.2)


def test_quality_measures():
    poses = demo_poses()
    assert limb_length_cv(poses) < 1e-6
    noisy = scaled_noisy(poses, 1.0, 0.1)
    assert limb_length_cv(noisy) == pytest.approx(0.1, rel=0.15)
    assert len(LIMB_BONES) == 8
    still = np.repeat(poses[:1], 10, 0)
    assert joint_jitter(still) == 0.0
    shaken = still.copy()
    shaken[1::2, :, 0] += 0.01  # 1 cm up and down every frame: second difference 2 cm
    assert joint_jitter(shaken) == pytest.approx(0.02 / bone_lengths(poses[0])[list(LIMB_BONES)].mean())
