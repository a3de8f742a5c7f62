"""The missing-data policy: hold, structural fill, interpolated dropped frames, resets."""

import numpy as np
import pytest

from poselift.model.skeleton import H36M_PARENTS
from poselift.stream.gapfill import GapFiller, GapPolicy


def pose(value=0.0, seed=0):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (17, 2)).astype(np.float32) + value


def test_complete_frames_pass_through():
    g = GapFiller()
    for t in range(3):
        x = pose(t)
        r = g.process(x, t)
        assert r.valid and r.filled == [] and r.reset is None and r.gap == 0 and len(r.silent) == 0
        np.testing.assert_array_equal(r.x, x)


def test_missing_joint_is_held_and_marked():
    g = GapFiller()
    first = pose()
    g.process(first, 0)
    x = pose(1.0)
    x[13] = np.nan
    r = g.process(x, 1)
    assert r.filled == [13] and r.valid
    np.testing.assert_array_equal(r.x[13], first[13])
    np.testing.assert_array_equal(r.x[12], x[12])


def test_never_seen_joint_goes_to_its_parent():
    g = GapFiller()
    x = pose()
    x[[3, 6]] = np.nan  # both ankles
    r = g.process(x, 0)
    assert r.filled == [3, 6] and r.valid
    np.testing.assert_array_equal(r.x[3], x[H36M_PARENTS[3]])
    np.testing.assert_array_equal(r.x[6], x[H36M_PARENTS[6]])


def test_joint_held_too_long_falls_back_to_parent():
    g = GapFiller(GapPolicy(max_hold_frames=3))
    g.process(pose(), 0)
    for t in range(1, 6):
        x = pose(0.1 * t)
        x[16] = np.nan
        r = g.process(x, t)
    np.testing.assert_array_equal(r.x[16], x[15])


def test_dropped_frames_are_interpolated_silently():
    g = GapFiller(GapPolicy(max_gap_frames=5))
    a = pose(0.0)
    g.process(a, 10)
    b = pose(4.0)
    r = g.process(b, 14)  # frames 11, 12, 13 dropped
    assert r.gap == 3 and r.reset is None and r.silent.shape == (3, 17, 2)
    np.testing.assert_allclose(r.silent[1], (a + b) / 2, atol=1e-6)
    np.testing.assert_array_equal(r.x, b)


def test_too_long_gap_resets():
    g = GapFiller(GapPolicy(max_gap_frames=5))
    g.process(pose(), 0)
    r = g.process(pose(1.0), 7)  # 6 dropped > 5
    assert r.reset == "gap" and r.gap == 0 and len(r.silent) == 0 and r.valid


@pytest.mark.parametrize("frame", [0, 2])
def test_non_increasing_frame_is_a_restart(frame):
    g = GapFiller()
    g.process(pose(), 1)
    g.process(pose(), 2)
    r = g.process(pose(3.0), frame)
    assert r.reset == "restart" and r.gap == 0
    np.testing.assert_array_equal(r.x, pose(3.0))


def test_low_confidence_threshold_is_applied_by_the_engine_input_mapping():
    from poselift.stream.intake import frame_to_model_input
    from poselift.stream.protocol import Frame2D

    kp = np.full((33, 2), 100.0)
    conf = np.ones(33)
    conf[15] = 0.2  # left wrist (mediapipe index 15)
    x = frame_to_model_input(Frame2D("s", 0, 0.0, "mediapipe33", 640, 480, kp, conf), 0.5)
    missing = np.isnan(x).any(-1)
    assert missing.tolist() == [j == 13 for j in range(17)]  # h36m left_wrist only


def test_empty_frames_hold_then_reset():
    g = GapFiller(GapPolicy(max_gap_frames=2, min_observed_joints=6))
    first = pose()
    g.process(first, 0)
    empty = np.full((17, 2), np.nan, np.float32)
    for t in (1, 2):
        r = g.process(empty, t)
        assert not r.valid and r.filled == list(range(17)) and r.reset is None
        np.testing.assert_array_equal(r.x, first)
    r = g.process(empty, 3)
    assert r.reset == "gap" and r.x is None and not r.valid
    r = g.process(empty, 4)  # no history: nothing to lift
    assert r.x is None and r.reset is None
    r = g.process(pose(2.0), 5)  # the person is back: a fresh start
    assert r.valid and r.x is not None


def test_policy_validation():
    with pytest.raises(ValueError):
        GapPolicy(min_confidence=1.5)
    with pytest.raises(ValueError):
        GapPolicy(min_observed_joints=0)
