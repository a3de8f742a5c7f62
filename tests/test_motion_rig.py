"""The rig: rotations that reproduce consistent poses, continuous over time, vectorised."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from poselift.model.body import conform
from poselift.model.rig import (NUM_RIG, REST_DIRECTIONS, RIG_NAMES, RIG_ORDER, RIG_PARENTS, camera_to_rig,
                                forward_kinematics, rest_offsets, solve_rotations, solve_sequence)
from tests.motion_helpers import demo_lengths, demo_poses, scaled_noisy


def _consistent_rig_poses(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Demo poses made noisy (5 % bone noise), then conformed, in the rig frame, turned about
    random axes so that every orientation (lying, upside down) is covered."""
    lengths = demo_lengths() * 0.93
    poses = conform(scaled_noisy(demo_poses()[:n], 1.0, 0.05, seed), lengths)
    turn = Rotation.from_rotvec(np.cumsum(np.full((n, 3), 0.02), axis=0)).as_matrix()
    return np.einsum("tij,tkj->tki", turn, camera_to_rig(poses)), lengths


def test_rig_tables_are_consistent():
    assert len(RIG_NAMES) == len(RIG_PARENTS) == NUM_RIG == 19
    assert sorted(RIG_ORDER) == list(range(NUM_RIG))
    seen = set()
    for j in RIG_ORDER:
        assert RIG_PARENTS[j] < 0 or RIG_PARENTS[j] in seen
        seen.add(j)
    assert RIG_NAMES[:7] == ("Hips", "RightUpperLeg", "RightLowerLeg", "RightFoot", "LeftUpperLeg",
                             "LeftLowerLeg", "LeftFoot")


def test_camera_to_rig_is_a_rotation_to_y_up():
    upright = demo_poses()[0]  # standing: the head is above the pelvis, i.e. at negative camera y
    assert upright[10, 1] < -0.4
    rig = camera_to_rig(upright)
    assert rig[10, 1] > 0.4
    m = camera_to_rig(np.eye(3))
    assert np.linalg.det(m) == pytest.approx(1.0)  # right-handed stays right-handed


def test_rest_pose_has_identity_rotations():
    offsets = rest_offsets(demo_lengths())
    rest = forward_kinematics(np.tile([0.0, 0, 0, 1], (1, NUM_RIG, 1)), np.zeros((1, 3)), offsets)
    q = solve_rotations(rest[:, :17]).local
    np.testing.assert_allclose(np.abs(q[..., 3]), 1.0, atol=1e-9)
    # T-pose: arms along x at shoulder height, legs straight down, facing +z
    assert rest[0, 13, 0] > 0.5 and rest[0, 16, 0] < -0.5 and abs(rest[0, 13, 1] - rest[0, 11, 1]) < 1e-12
    assert rest[0, 3, 1] < -0.8


def test_forward_kinematics_reproduces_the_consistent_pose():
    rig, lengths = _consistent_rig_poses()
    root = np.random.default_rng(0).normal(0, 1, (len(rig), 3))
    q = solve_sequence(rig)
    pos = forward_kinematics(q, root, rest_offsets(lengths))
    err = np.abs(pos[:, :17] - (rig + root[:, None])).max()
    assert err < 1e-6  # goal: 1 mm; it is exact up to rounding


def test_quaternions_are_unit_and_continuous():
    rig, _ = _consistent_rig_poses()
    q = solve_sequence(rig)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12)
    assert (np.sum(q[1:] * q[:-1], axis=-1) >= 0).all()  # no sign flips
    assert (q[0, :, 3] >= 0).all()


def test_batch_equals_one_by_one():
    rig, _ = _consistent_rig_poses(20)
    batch = solve_rotations(rig).local
    single = np.stack([solve_rotations(p[None]).local[0] for p in rig])
    np.testing.assert_allclose(batch, single, atol=1e-12)


def _arm_through_straight(steps: int = 41) -> np.ndarray:
    """A T-pose whose left elbow bends forward, straightens, and bends the other way (as a
    noisy detector makes a straight arm look), frame by frame."""
    offsets = rest_offsets(demo_lengths())
    rest = forward_kinematics(np.tile([0.0, 0, 0, 1], (1, NUM_RIG, 1)), np.zeros((1, 3)), offsets)[0, :17]
    poses = np.repeat(rest[None], steps, 0)
    fore = np.linalg.norm(rest[13] - rest[12])
    for t, a in enumerate(np.linspace(0.6, -0.6, steps)):  # radians of flexion, through 0
        poses[t, 13] = poses[t, 12] + fore * np.array([np.cos(a), 0.0, np.sin(a)])
    turn = Rotation.from_euler("xyz", [40, 30, 20], degrees=True)  # not the rest orientation
    return turn.apply(poses.reshape(-1, 3)).reshape(poses.shape)


def test_no_twist_jump_when_the_arm_passes_straight():
    poses = _arm_through_straight()
    q = solve_sequence(poses)
    upper = Rotation.from_quat(q[:, 11])
    steps = np.degrees((upper[1:] * upper[:-1].inv()).magnitude())
    assert steps.max() < 5.0  # the upper arm itself did not move; at most a small drift
    fk = forward_kinematics(q, np.zeros((len(poses), 3)), rest_offsets(demo_lengths()))
    assert np.abs(fk[:, :17] - poses).max() < 1e-6


def test_twist_is_not_invented_for_leaves():
    rig, _ = _consistent_rig_poses(30)
    q = solve_sequence(rig)
    for leaf in ("LeftFoot", "RightFoot", "LeftHand", "RightHand", "HeadEnd"):
        np.testing.assert_allclose(np.abs(q[:, RIG_NAMES.index(leaf), 3]), 1.0, atol=1e-9)


def test_rest_directions_are_unit_or_zero():
    n = np.linalg.norm(REST_DIRECTIONS, axis=-1)
    assert set(np.round(n, 12)) == {0.0, 1.0}


def test_elbows_bent_forward_in_the_t_pose_are_a_pure_hinge():
    """The elbow-plane convention: T-pose, forearms bent forward (+z) 90°. The upper arms are at
    rest (identity) and each elbow turns about its own y axis (down for the left, up for the right)."""
    offsets = rest_offsets(demo_lengths())
    pose = forward_kinematics(np.tile([0.0, 0, 0, 1], (1, NUM_RIG, 1)), np.zeros((1, 3)), offsets)[0, :17]
    for elbow, wrist in ((12, 13), (15, 16)):
        pose[wrist] = pose[elbow] + [0.0, 0.0, np.linalg.norm(pose[wrist] - pose[elbow])]
    q = solve_rotations(pose[None]).local[0]
    np.testing.assert_allclose(np.abs(q[[11, 14], 3]), 1.0, atol=1e-9)
    for elbow, sign in ((12, -1.0), (15, 1.0)):
        rotvec = Rotation.from_quat(q[elbow]).as_rotvec()
        np.testing.assert_allclose(rotvec, [0.0, sign * np.pi / 2, 0.0], atol=1e-9)


def test_straight_arm_along_its_rest_secondary_on_the_first_frame():
    """A straight arm raised overhead, first frame: no elbow plane, no history, and the rest
    secondary (y) lies along the bone. The frame must still be a rotation; FK stays exact."""
    offsets = rest_offsets(demo_lengths())
    pose = forward_kinematics(np.tile([0.0, 0, 0, 1], (1, NUM_RIG, 1)), np.zeros((1, 3)), offsets)[0, :17]
    upper = np.linalg.norm(pose[12] - pose[11])
    fore = np.linalg.norm(pose[13] - pose[12])
    pose[12] = pose[11] + [0.0, upper, 0.0]
    pose[13] = pose[12] + [0.0, fore, 0.0]
    rp = solve_rotations(pose[None])
    np.testing.assert_allclose(rp.world[0, 11] @ rp.world[0, 11].T, np.eye(3), atol=1e-12)
    fk = forward_kinematics(rp.local, pose[None, 0], offsets)
    np.testing.assert_allclose(fk[0, :17], pose, atol=1e-9)
