"""The motion stage's fast path (written for few numpy calls at batch 1) gives what the
step-by-step implementation it replaced gave (tests/motion_reference.py), on real poses (the
demo clip's CMU motion, turned through every orientation) and on random and degenerate ones:
bodies, settling and change flags exactly; joints and rotations to rounding."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from poselift.model import rig
from poselift.model.body import BodyEstimator, conform, measure, rebuild
from poselift.model.rig import camera_to_rig, forward_kinematics, rest_offsets, solve_rotations, solve_sequence
from poselift.stream.engine import PoseOut
from poselift.stream.motion import MotionStage
from poselift.stream.motion_wire import MotionWire
from tests import motion_reference as ref
from tests.motion_helpers import demo_lengths, demo_poses, scaled_noisy

FIELDS = ("joints", "rig_joints", "root", "rotations", "lengths", "offsets")
FLAGS = ("valid", "settled", "skeleton_changed")


def _turning(poses: np.ndarray, seed: int) -> np.ndarray:
    """The poses turned about a slowly changing axis (lying, upside down, every heading)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 0.05, (len(poses), 3)) + 0.03
    turn = Rotation.from_rotvec(np.cumsum(steps, axis=0)).as_matrix()
    return np.einsum("tij,tkj->tki", turn, poses)


def _assert_same_batch(new, old, t) -> None:
    assert new.streams == old.streams
    for f in FLAGS:
        np.testing.assert_array_equal(getattr(new, f), getattr(old, f), err_msg=f"{f} at batch {t}")
    for f in FIELDS:
        a, b = getattr(new, f), getattr(old, f)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{f} NaNs at batch {t}")
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=f"{f} at batch {t}")


def _live_like(num_streams: int = 6, frames: int = 700, seed: int = 0, **options):
    """Batches as the live loop makes them: streams joining and leaving, invalid and
    non-finite poses, a bone out of range, resets, a root every other batch, bodies of
    different sizes turning through every orientation, elbows passing through straight."""
    rng = np.random.default_rng(seed)
    base = demo_poses()
    streams = []
    for s in range(num_streams):
        poses = scaled_noisy(np.roll(base, 37 * s, axis=0), 0.85 + 0.1 * s, 0.08, seed + s)
        poses = np.concatenate([poses] * (frames // len(poses) + 1))[:frames]
        poses[::53, 13] = poses[::53, 12] + (poses[::53, 12] - poses[::53, 11]) * 0.9  # arm straight
        streams.append(_turning(poses, seed + s) + rng.normal(0, 0.01, poses.shape))
    for t in range(frames):
        names = [f"cam{s}" for s in range(num_streams) if (t + 3 * s) % 11 != 4]
        idx = [int(n[3:]) for n in names]
        joints = np.stack([streams[s][t] for s in idx])
        valid = rng.random(len(idx)) > 0.08
        if t % 41 == 5:
            joints[0, 6] = np.nan
        if t % 29 == 3:
            joints[-1, 10] = joints[-1, 9] + 0.004  # a nose-to-head bone of 4 mm
        root = rng.normal(0, 3, (len(idx), 3)) if t % 2 else None
        reset = f"cam{t % num_streams}" if t % 97 == 50 else None
        yield names, joints, valid, root, reset


@pytest.mark.parametrize("options", [{}, {"symmetric": False, "warmup": 5}])
def test_stage_equals_the_reference_on_live_like_streams(options):
    new, old = MotionStage(**options), ref.ReferenceMotionStage(**options)
    changes = 0
    for t, (names, joints, valid, root, reset) in enumerate(_live_like(seed=1 if options else 0)):
        if reset:
            new.reset(reset)
            old.reset(reset)
        a = new.process(names, joints, valid, root)
        b = old.process(names, joints, valid, root)
        _assert_same_batch(a, b, t)
        changes += int(a.skeleton_changed.sum())
    assert changes > 6  # the run covered settling and notable changes, not only the steady state


def test_stage_equals_the_reference_at_batch_one():
    """One stream, one pose per call (the goal's case), through settling and a long run."""
    new, old = MotionStage(), ref.ReferenceMotionStage()
    poses = _turning(scaled_noisy(np.concatenate([demo_poses()] * 3), 1.1, 0.1, 3), 3)
    for t, pose in enumerate(poses):
        _assert_same_batch(new.process(["s"], pose[None]), old.process(["s"], pose[None]), t)


def test_estimator_equals_the_reference():
    rng = np.random.default_rng(2)
    poses = scaled_noisy(demo_poses(), 1.0, 0.1, 2)
    for options in ({}, {"symmetric": False, "warmup": 7, "rate": 0.05, "clip": 0.2}):
        new, old = BodyEstimator(4, **options), ref.ReferenceBodyEstimator(4, **options)
        for t in range(0, len(poses) - 4, 2):
            batch = poses[t:t + 4].copy()
            batch[rng.random(4) < 0.05, 3] = np.inf
            batch[rng.random(4) < 0.05, 10] = batch[0, 9]  # a bone of no length: kept out
            valid = rng.random(4) > 0.1
            slots = rng.permutation(4)[:3]
            if t % 60 == 0:
                new.reset(slots[0])
                old.reset(slots[0])
            a, b = new.update(batch[:3], valid[:3], slots), old.update(batch[:3], valid[:3], slots)
            for f in ("settled", "settled_now", "changed", "used"):
                np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f"{f} at {t}")
            np.testing.assert_allclose(a.lengths, b.lengths, rtol=1e-14, atol=0)
            np.testing.assert_allclose(a.reported, old.reported[slots], rtol=1e-14, atol=0)


def test_measure_and_rebuild_equal_conform():
    rng = np.random.default_rng(4)
    poses = np.concatenate([demo_poses(), rng.normal(0, 0.4, (200, 17, 3))])
    lengths = np.abs(rng.normal(0.3, 0.1, (len(poses), 16))) + 0.01
    _, vectors, norms = measure(poses)
    joints, unit = rebuild(poses.reshape(-1, 51), vectors, norms, lengths)
    np.testing.assert_allclose(joints.reshape(-1, 17, 3), ref.conform(poses, lengths), rtol=0, atol=1e-14)
    np.testing.assert_allclose(conform(poses, lengths), ref.conform(poses, lengths), rtol=0, atol=0)
    np.testing.assert_allclose(np.linalg.norm(unit.reshape(-1, 16, 3), axis=-1), 1.0, atol=1e-15)
    poses[0, 5] = poses[0, 4]  # a bone of no length stays as it is, no directions returned
    _, vectors, norms = measure(poses[:1])
    joints, unit = rebuild(poses[:1].reshape(1, 51), vectors, norms, lengths[:1])
    assert unit is None
    np.testing.assert_allclose(joints.reshape(1, 17, 3), ref.conform(poses[:1], lengths[:1]), rtol=0, atol=1e-14)


def _degenerate_poses() -> np.ndarray:
    """Rig-frame poses where the solver's special cases fire: straight arms (no elbow plane),
    an arm along its rest secondary with no history, a shin folded back onto the thigh (a
    half-turn swing), a head bone of no length."""
    offsets = rest_offsets(demo_lengths())
    rest = forward_kinematics(np.tile([0.0, 0, 0, 1], (1, rig.NUM_RIG, 1)), np.zeros((1, 3)), offsets)[0, :17]
    up = rest.copy()
    up[12] = up[11] + [0.0, np.linalg.norm(rest[12] - rest[11]), 0.0]
    up[13] = up[12] + [0.0, np.linalg.norm(rest[13] - rest[12]), 0.0]
    folded = rest.copy()
    folded[3] = folded[2] + (folded[1] - folded[2]) * 0.8
    headless = rest.copy()
    headless[10] = headless[9]
    return np.stack([rest, up, folded, headless])


def test_solver_equals_the_reference_on_random_and_degenerate_poses():
    rng = np.random.default_rng(5)
    poses = np.concatenate([_degenerate_poses(), camera_to_rig(demo_poses()[::7]), rng.normal(0, 0.5, (100, 17, 3))])
    first = solve_rotations(poses)
    old_first = ref.solve_rotations(poses)
    for a, b in ((first.local, old_first.local), (first.world, old_first.world), (first.twist, old_first.twist)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    # ... and with history, some rows without (NaN), the next poses a little moved
    twist, local = first.twist.copy(), first.local.copy()
    twist[::3], local[::5] = np.nan, np.nan
    moved = poses + rng.normal(0, 0.02, poses.shape)
    a, b = solve_rotations(moved, twist, local), ref.solve_rotations(moved, twist, local)
    np.testing.assert_allclose(a.local, b.local, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.twist, b.twist, rtol=0, atol=1e-12)


def test_long_sequence_with_flips_equals_the_reference_and_stays_continuous():
    """3000 frames of real motion turning through every orientation, elbows straightening and
    re-bending: the same rotations, no quaternion sign flips, no twist jumps of the upper arm."""
    poses = np.concatenate([demo_poses()] * 10)
    poses[::40, 13] = poses[::40, 12] + (poses[::40, 12] - poses[::40, 11])  # arm straight
    rig_poses = _turning(camera_to_rig(conform(poses, demo_lengths())), 6)
    q = solve_sequence(rig_poses)
    np.testing.assert_allclose(q, ref.solve_sequence(rig_poses), rtol=0, atol=1e-11)
    assert (np.sum(q[1:] * q[:-1], axis=-1) >= 0).all()
    fk = forward_kinematics(q, np.zeros((len(q), 3)), rest_offsets(demo_lengths()))
    assert np.abs(fk[:, :17] - rig_poses).max() < 1e-9


def test_quaternion_conversion_equals_the_public_api():
    """The solver may call scipy's compiled conversion directly (when it matches); either way
    it gives what Rotation.from_matrix(...).as_quat() gives."""
    m = Rotation.random(500, random_state=7).as_matrix()
    np.testing.assert_array_equal(rig._quaternions(m), Rotation.from_matrix(m, assume_valid=True).as_quat())


def test_an_empty_batch_gives_empty_outputs():
    a, b = MotionStage().process([], np.zeros((0, 17, 3))), ref.ReferenceMotionStage().process([], np.zeros((0, 17, 3)))
    for f in FIELDS + FLAGS:
        assert getattr(a, f).shape == getattr(b, f).shape, f
    assert solve_rotations(np.zeros((0, 17, 3))).local.shape == (0, rig.NUM_RIG, 4)


def _rounds(frames: int = 260, seed: int = 8):
    """Rounds as the loop hands them to MotionWire at one or two streams: one pose (the
    wire's view path), two streams, two poses of one stream (a flushed tail and the next
    frame: two layers), invalid poses, a root on some, epochs that change (resets)."""
    rng = np.random.default_rng(seed)
    base = _turning(scaled_noisy(np.concatenate([demo_poses()] * 2), 0.95, 0.08, seed), seed)
    epoch = {"a": 1, "b": 1}
    for t in range(frames):
        if t % 90 == 70:
            epoch["a"] += 1
        kind = t % 5
        names = ["a"] if kind < 2 else ["a", "b"] if kind < 4 else ["b", "b"]
        round_ = []
        for i, name in enumerate(names):
            joints = (base[(t + 31 * (name == "b") + i) % len(base)] + rng.normal(0, 0.01, (17, 3))).astype(np.float32)
            root = rng.normal(0, 3, 3) if t % 3 == 0 else None
            round_.append(PoseOut(name, t, 0.0, 0.0, joints, bool(rng.random() > 0.08), False, [], root=root,
                                  epoch=epoch[name]))
        yield round_


@pytest.mark.parametrize("options", [{}, {"warmup": 5}])
def test_wire_equals_the_reference_stage_at_one_and_two_streams(options):
    """MotionWire (one pose: a view, not a stack) gives per pose what the reference stage gave
    for the same layers, through warm-up, settling and resets."""
    wire, old = MotionWire(None, **options), ref.ReferenceMotionStage(**options)
    epochs: dict[str, int] = {}
    for t, round_ in enumerate(_rounds()):
        raw = [p.joints.copy() for p in round_]
        wire(round_)
        layers: list[list[int]] = [[]]
        for i, p in enumerate(round_):
            if any(round_[j].stream == p.stream for j in layers[-1]):
                layers.append([])
            layers[-1].append(i)
        for layer in layers:
            for i in layer:
                p = round_[i]
                if epochs.get(p.stream, p.epoch) != p.epoch:
                    old.reset(p.stream)
                epochs[p.stream] = p.epoch
            roots = None
            if any(round_[i].root is not None for i in layer):
                roots = np.stack([np.zeros(3) if round_[i].root is None else round_[i].root for i in layer])
            b = old.process([round_[i].stream for i in layer], np.stack([raw[i] for i in layer]).astype(np.float64),
                            np.array([round_[i].valid for i in layer]), roots)
            for k, i in enumerate(layer):
                p, m = round_[i], round_[i].extras["motion"]
                np.testing.assert_array_equal(p.extras["joints_raw"], raw[i])
                np.testing.assert_allclose(p.joints, b.joints[k].astype(np.float32), rtol=0, atol=1e-6, err_msg=f"{t}")
                for a, e in ((m.rotations, b.rotations[k]), (m.hips, b.root[k]), (m.offsets, b.offsets[k]),
                             (m.lengths, b.lengths[k])):
                    np.testing.assert_allclose(a, e, rtol=0, atol=1e-12, err_msg=f"round {t}")
                assert (m.valid, m.settled, m.skeleton_changed) == (b.valid[k], b.settled[k], b.skeleton_changed[k])


def test_a_batch_of_streams_equals_each_stream_alone():
    """The stage is vectorised across streams: one call for all of them gives, per stream, what
    a stage of its own gives one pose at a time (constant rows, gathers and products of the
    batch-1 path broadcast over the batch), through warm-up, invalid and non-finite poses,
    a bone out of range and resets."""
    together, alone = MotionStage(warmup=12), {}
    for t, (names, joints, valid, root, reset) in enumerate(_live_like(num_streams=5, frames=260, seed=9)):
        if reset:
            together.reset(reset)
            alone.pop(reset, None)
        batch = together.process(names, joints, valid, root)
        for i, name in enumerate(names):
            one = alone.setdefault(name, MotionStage(warmup=12)).process(
                [name], joints[i:i + 1], valid[i:i + 1], None if root is None else root[i:i + 1])
            for f in FLAGS:
                assert getattr(batch, f)[i] == getattr(one, f)[0], f"{f} of {name} at {t}"
            for f in FIELDS:
                np.testing.assert_allclose(getattr(batch, f)[i], getattr(one, f)[0], rtol=0, atol=1e-12,
                                           err_msg=f"{f} of {name} at {t}")
