"""Test-time flip averaging (model/mirror.py): offline and streamed alike, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poselift.model import StreamingLifter, lift_sequence
from poselift.model.mirror import MirrorAveragedLifter, mirror_keypoints, unmirror_poses
from poselift.model.skeleton import (H36M_LEFT, H36M_RIGHT, flip_permutation, model_flip_permutation,
                                     model_input_index)
from tests.helpers import random_model
from tests.test_lookahead import lookahead_model
from tests.test_streaming import stream_all


def test_mirroring_swaps_sides_and_negates_x_and_is_its_own_inverse():
    perm = flip_permutation()
    kp = torch.randn(5, 17, 2)
    m = mirror_keypoints(kp, perm)
    assert torch.equal(m[:, H36M_LEFT[0]], kp[:, H36M_RIGHT[0]] * torch.tensor([-1.0, 1.0]))
    assert torch.equal(mirror_keypoints(m, perm), kp)
    pose = torch.randn(5, 17, 3)
    assert torch.equal(unmirror_poses(unmirror_poses(pose, perm), perm), pose)
    assert torch.equal(unmirror_poses(pose, perm)[:, 0], pose[:, 0] * torch.tensor([-1.0, 1.0, 1.0]))


def test_offline_flip_tta_is_the_mean_of_the_pose_and_the_unmirrored_mirror_pose():
    model = random_model((3, 3), causal=False, channels=32, seed=2)
    x = torch.randn(2, 30, 17, 2)
    perm = flip_permutation()
    manual = (lift_sequence(model, x) + unmirror_poses(lift_sequence(model, mirror_keypoints(x, perm)), perm)) / 2
    torch.testing.assert_close(lift_sequence(model, x, flip_tta=True), manual, atol=1e-6, rtol=0)
    assert (lift_sequence(model, x, flip_tta=True) - lift_sequence(model, x)).abs().max() > 1e-3  # it does something


@pytest.mark.parametrize("future", [0, 3, 13])  # causal, a look-ahead, full context (RF 27)
def test_streamed_flip_averaging_equals_offline(future):
    model = lookahead_model((3, 3, 3), future, seed=future)
    x = torch.randn(3, 60, 17, 2)
    lifter = MirrorAveragedLifter(StreamingLifter(model, batch_size=6))
    assert lifter.batch_size == 3 and lifter.latency_frames == future
    streamed = stream_all(lifter, x)
    torch.testing.assert_close(streamed, lift_sequence(model, x, flip_tta=True), atol=2e-5, rtol=0)


def test_streams_and_their_twins_step_flush_and_reset_independently():
    model = lookahead_model((3, 3), 2, seed=1)
    x = torch.randn(2, 25, 17, 2)
    lifter = MirrorAveragedLifter(StreamingLifter(model, batch_size=4))
    outs: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    for t in range(25):  # stream 0 steps alone first; stream 1 starts at frame 10, rows in either order
        rows = [0] if t < 10 else [1, 0] if t % 2 else [0, 1]
        y = lifter.step(x[rows, t], None if rows == [0, 1] else rows)
        for row, stream in enumerate(rows):
            outs[stream].append(y[row])
    tails = lifter.flush([1, 0])
    assert lifter.frames_seen().tolist() == [0, 0]  # flushed streams start afresh
    got0 = torch.cat([torch.stack(outs[0])[2:], tails[1]])  # the first 2 steps are the look-ahead's wait
    got1 = torch.cat([torch.stack(outs[1])[2:], tails[0]])
    torch.testing.assert_close(got0, lift_sequence(model, x[:1], flip_tta=True)[0], atol=2e-5, rtol=0)
    torch.testing.assert_close(got1, lift_sequence(model, x[1:, 10:], flip_tta=True)[0], atol=2e-5, rtol=0)


def test_a_coco_model_mirrors_in_its_own_joint_order():
    index = model_input_index("coco17")
    perm = model_flip_permutation("coco17")
    h36m = torch.randn(4, 17, 2)
    torch.testing.assert_close(mirror_keypoints(h36m, flip_permutation())[:, index],
                               mirror_keypoints(h36m[:, index], perm), atol=0, rtol=0)
    assert np.array_equal(model_flip_permutation("h36m17"), flip_permutation())


def test_refuses_what_it_cannot_mirror():
    model = random_model((3,), causal=True, channels=16)
    with pytest.raises(ValueError, match="even"):
        MirrorAveragedLifter(StreamingLifter(model, batch_size=3))
    lifter = MirrorAveragedLifter(StreamingLifter(model, batch_size=2))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        lifter.step(torch.zeros(1, 17, 2), [1])
    with pytest.raises(ValueError, match="joints"):
        MirrorAveragedLifter(StreamingLifter(model, batch_size=2), input_perm=[0, 1, 2])


def test_a_trajectory_model_is_mirrored_too():
    """One output joint (the root): only x changes sign."""
    from poselift.model import ModelConfig, TemporalModel
    from tests.helpers import randomize_batch_norm

    torch.manual_seed(3)
    traj = randomize_batch_norm(TemporalModel(ModelConfig(filter_widths=(3, 3), causal=True, channels=16,
                                                          num_joints_out=1)), 3).eval()
    x = torch.randn(2, 20, 17, 2)
    offline = lift_sequence(traj, x, flip_tta=True)
    perm = flip_permutation()
    manual = (lift_sequence(traj, x) + lift_sequence(traj, mirror_keypoints(x, perm)) * torch.tensor([-1.0, 1, 1])) / 2
    torch.testing.assert_close(offline, manual, atol=1e-6, rtol=0)
    torch.testing.assert_close(stream_all(MirrorAveragedLifter(StreamingLifter(traj, batch_size=4)), x), offline,
                               atol=2e-5, rtol=0)
