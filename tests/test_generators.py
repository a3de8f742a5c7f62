import numpy as np
import pytest
import torch

from poselift.train.cameras import project_normalized
from poselift.train.dataset import Take
from poselift.train.generators import WindowSampler, evaluation_views


def ramp_takes():
    """Two takes whose frame number (0..9 and 100..104) is written into each frame: the pelvis
    depth is frame * 1 mm, and the head is 0.5 m + frame * 1 cm straight above the pelvis."""
    takes = []
    for name, frames in (("a", np.arange(10)), ("b", 100 + np.arange(5))):
        pos = np.zeros((len(frames), 17, 3), dtype=np.float32)
        pos[:, :, 1] = np.linspace(0, 1.7, 17)[None]
        pos[:, :, 0] = np.linspace(-0.2, 0.2, 17)[None]
        pos[:, 0, 2] = frames * 0.001  # marker in depth
        # camera-invariant marker: the head sits straight above the pelvis at 0.5 m + 1 cm per frame
        pos[:, 10] = pos[:, 0] + np.array([0.0, 1.0, 0.0]) * (0.5 + 0.01 * frames)[:, None]
        takes.append(Take(name, "s", pos))
    return takes


def _make_batch_seen(sampler, first_target, monkeypatch):
    """make_batch(first_target), plus the world windows it gathered as frame numbers (read
    back from the pelvis depth marker of ramp_takes, before any camera is applied)."""
    from poselift.train import generators

    seen = []
    real = generators.world_to_camera

    def spy(world, cams):
        seen.append(world.clone())
        return real(world, cams)

    monkeypatch.setattr(generators, "world_to_camera", spy)
    batch = sampler.make_batch(torch.tensor(first_target), torch.Generator().manual_seed(0))
    (world,) = seen
    return batch, (world[..., 0, 2] * 1000).round().long().tolist()


def _target_frames(batch):
    """Frame numbers of the 3D targets, from the pelvis-to-head distance (camera-invariant)."""
    return ((batch.targets[..., 10, :].norm(dim=-1) - 0.5) * 100).round().long().tolist()


# Written out by hand. Takes: frames 0..9 (global ids 0..9) and 100..104 (global ids
# 10..14); receptive field 5, chunk 2, so 6 input frames per sample. Edges replicate the
# take's first/last frame and never reach into the other take.
FIRST = [0, 3, 9, 10, 14]
WINDOWS = {
    True: [  # causal: frames t-4 .. t+1 (the window ends at the last target)
        [0, 0, 0, 0, 0, 1], [0, 0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 9],
        [100, 100, 100, 100, 100, 101], [100, 101, 102, 103, 104, 104]],
    False: [  # centred: frames t-2 .. t+3
        [0, 0, 0, 1, 2, 3], [1, 2, 3, 4, 5, 6], [7, 8, 9, 9, 9, 9],
        [100, 100, 100, 101, 102, 103], [102, 103, 104, 104, 104, 104]],
}
TARGETS = [[0, 1], [3, 4], [9, 9], [100, 101], [104, 104]]  # t, t+1, held at the take's end


@pytest.mark.parametrize("causal", [True, False])
def test_windows_are_edge_padded_and_shifted(causal, monkeypatch):
    s = WindowSampler(ramp_takes(), receptive_field=5, causal=causal, chunk=2, flip=False)
    batch, windows = _make_batch_seen(s, FIRST, monkeypatch)
    assert windows == WINDOWS[causal]
    assert _target_frames(batch) == TARGETS


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("flip", [False, True])
def test_targets_align_with_inputs(causal, flip, monkeypatch):
    """The 2D at the output frames is the projection of the 3D targets, and it is the 2D of
    the window's frames that hold the target frame (the causal shift is right)."""
    s = WindowSampler(ramp_takes(), 5, causal, chunk=2, flip=flip)
    b, windows = _make_batch_seen(s, FIRST, monkeypatch)
    assert b.inputs.shape == (5, 6, 17, 2) and b.targets.shape == (5, 2, 17, 3)
    reproj = project_normalized(b.targets + b.trajectory, b.intrinsics)
    torch.testing.assert_close(reproj, b.inputs_at_targets, atol=1e-4, rtol=1e-4)
    # where the target frame sits in each window, from the hand-written tables above
    where = {True: [[4, 5], [4, 5], [4, 5], [4, 5], [4, 5]],  # t is the 5th input of a causal window
             False: [[2, 3], [2, 3], [2, 3], [2, 3], [2, 3]]}[causal]
    for i in range(5):
        for c in range(2):
            assert WINDOWS[causal][i][where[i][c]] == TARGETS[i][c]
            # every window position showing that same frame carries the same 2D
            same = [k for k, f in enumerate(windows[i]) if f == TARGETS[i][c]]
            assert where[i][c] in same
            for k in same:
                torch.testing.assert_close(b.inputs[i, k], b.inputs_at_targets[i, c], atol=1e-6, rtol=0)
    torch.testing.assert_close(b.targets[:, :, 0], torch.zeros(5, 2, 3))  # root-relative


def test_flip_mirrors_inputs_and_targets_consistently():
    s = WindowSampler(ramp_takes(), 1, True, flip=True)
    b = s.sample(256, torch.Generator().manual_seed(1))
    # right joints (x > 0 in the ramp) sit on either side after the flip; geometry still projects
    reproj = project_normalized(b.targets + b.trajectory, b.intrinsics)
    torch.testing.assert_close(reproj, b.inputs_at_targets, atol=1e-4, rtol=1e-4)


def test_evaluation_views_are_fixed():
    take = ramp_takes()[0]
    a = evaluation_views(take)
    b = evaluation_views(take)
    assert len(a) == 4
    for (ka, pa), (kb, pb) in zip(a, b):
        torch.testing.assert_close(ka, kb)
        torch.testing.assert_close(pa[:, 0], torch.zeros(10, 3))
