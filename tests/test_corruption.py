"""The detector-like corruption (train/corruption.py): seeded, time-correlated, per-joint
scaled, body-relative systematic offsets, brief swaps, clean at strength 0."""

import math

import pytest
import torch

from poselift.model.skeleton import H36M_JOINT_NAMES, flip_permutation
from poselift.train.cameras import Corruption, corrupt_keypoints
from poselift.train.corruption import (DetectorNoise, body_axes, derive_matrix, detector_corrupt, episodes,
                                       ou_noise, random_errors)

J = {n: i for i, n in enumerate(H36M_JOINT_NAMES)}
PERM = torch.from_numpy(flip_permutation())
QUIET = dict(drift_std=0.0, white_std=0.0, jump_prob=0.0, swap_prob=0.0, offset_scale=0.0)


def standing_pose() -> torch.Tensor:
    """(17, 2) pixels of a frontal standing figure, torso 100 px, derived joints derived."""
    p = torch.zeros(17, 2)
    pts = {"right_hip": (-20, 0), "right_knee": (-20, 60), "right_ankle": (-20, 120), "left_hip": (20, 0),
           "left_knee": (20, 60), "left_ankle": (20, 120), "neck_nose": (0, -130), "head": (0, -140),
           "left_shoulder": (30, -100), "left_elbow": (45, -60), "left_wrist": (50, -20),
           "right_shoulder": (-30, -100), "right_elbow": (-45, -60), "right_wrist": (-50, -20)}
    for k, v in pts.items():
        p[J[k]] = torch.tensor(v, dtype=torch.float32)
    p[J["pelvis"]] = (p[J["left_hip"]] + p[J["right_hip"]]) / 2
    p[J["thorax"]] = (p[J["left_shoulder"]] + p[J["right_shoulder"]]) / 2
    p[J["spine"]] = (p[J["pelvis"]] + p[J["thorax"]]) / 2
    return p + torch.tensor([500.0, 400.0])


def sequences(n: int, t: int, rotate: bool = False) -> torch.Tensor:
    """(n, t, 17, 2): the standing figure, static or turning in the image plane."""
    base = standing_pose() - torch.tensor([500.0, 400.0])
    angle = torch.linspace(0, 1.5, t) if rotate else torch.zeros(t)
    c, s = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (t, 2, 2)
    seq = torch.einsum("tab,jb->tja", rot, base) + torch.tensor([500.0, 400.0])
    return seq.expand(n, t, 17, 2).clone()


def autocorr(x: torch.Tensor, lag: int) -> float:
    """Autocorrelation along axis 1 of zero-mean noise, pooled over everything else."""
    return float((x[:, lag:] * x[:, :-lag]).mean() / (x * x).mean())


def test_deterministic_per_seed_and_seeds_differ():
    px = sequences(4, 60)
    cfg = DetectorNoise(strength=1.0, random_strength=True, swap_prob=0.05)
    a = detector_corrupt(px, cfg, PERM, torch.Generator().manual_seed(3))
    b = detector_corrupt(px, cfg, PERM, torch.Generator().manual_seed(3))
    c = detector_corrupt(px, cfg, PERM, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_clean_when_strength_is_zero():
    px = sequences(3, 40)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(detector_corrupt(px, DetectorNoise(strength=0.0), PERM, g), px)
    assert torch.equal(detector_corrupt(px, DetectorNoise(random_strength=True, clean_prob=1.0), PERM, g), px)
    # and through the public Corruption path, which the trainer and evaluation use
    size = torch.tensor([[1280.0, 720.0]]).expand(3, 2)
    assert torch.equal(corrupt_keypoints(px, size, Corruption(detector=DetectorNoise(strength=0.0)), PERM, g), px)
    noisy = corrupt_keypoints(px, size, Corruption(detector=DetectorNoise()), PERM, g)
    assert (noisy - px).abs().mean() > 0.5  # pixels: the default level is not negligible


def test_ou_noise_has_the_stated_autocorrelation():
    tau = 10.0
    x = ou_noise(400, 120, 1, tau, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert float(x.var()) == pytest.approx(1.0, abs=0.05)
    for lag in (1, 5, 10, 20):
        assert autocorr(x, lag) == pytest.approx(math.exp(-lag / tau), abs=0.04)


def test_drift_is_correlated_and_white_noise_is_not():
    px = sequences(200, 100)
    g = torch.Generator().manual_seed(1)
    strength = torch.ones(200)
    drift = random_errors(px, strength, DetectorNoise(**(QUIET | dict(drift_std=0.02, drift_frames=10.0))), g)
    white = random_errors(px, strength, DetectorNoise(**(QUIET | dict(white_std=0.02))), g)
    assert autocorr(drift, 5) == pytest.approx(math.exp(-0.5), abs=0.06)
    assert abs(autocorr(white, 1)) < 0.03
    # amplitude: stationary std per axis = drift_std x torso (100 px) x joint scale (1 at the hips)
    assert float(drift[:, :, J["left_hip"]].std()) == pytest.approx(2.0, rel=0.15)


def test_extremities_and_head_err_more_than_the_torso():
    px = sequences(100, 100)
    cfg = DetectorNoise(**(QUIET | dict(drift_std=0.02, white_std=0.005)))
    err = detector_corrupt(px, cfg, PERM, torch.Generator().manual_seed(2)) - px
    rms = err.pow(2).sum(-1).mean(dim=(0, 1)).sqrt()
    torso = max(rms[J[n]] for n in ("left_hip", "right_hip", "left_shoulder", "right_shoulder", "pelvis", "thorax"))
    for n in ("left_wrist", "right_wrist", "left_ankle", "right_ankle", "head", "neck_nose"):
        assert rms[J[n]] > 1.3 * torso, n


def test_derived_joints_stay_derived():
    px = sequences(5, 30)
    cfg = DetectorNoise(jump_prob=0.05, swap_prob=0.0)
    out = detector_corrupt(px, cfg, PERM, torch.Generator().manual_seed(5))
    hips = (out[..., J["left_hip"], :] + out[..., J["right_hip"], :]) / 2
    shoulders = (out[..., J["left_shoulder"], :] + out[..., J["right_shoulder"], :]) / 2
    assert torch.allclose(out[..., J["pelvis"], :], hips, atol=1e-3)
    assert torch.allclose(out[..., J["thorax"], :], shoulders, atol=1e-3)
    assert torch.allclose(out[..., J["spine"], :], (hips + shoulders) / 2, atol=1e-3)
    assert derive_matrix().sum(dim=1).allclose(torch.ones(17))


def test_systematic_offsets_are_constant_within_a_sequence_in_the_body_frame():
    cfg = DetectorNoise(**(QUIET | dict(offset_scale=1.0)))
    static = sequences(8, 50)
    d = detector_corrupt(static, cfg, PERM, torch.Generator().manual_seed(6)) - static
    assert float(d.abs().max()) > 2.0  # there are offsets (pixels)...
    assert torch.allclose(d, d[:, :1].expand_as(d), atol=1e-4)  # ...and they do not move
    assert not torch.allclose(d[0], d[1])  # each sequence has its own
    # a turning body: the offsets turn with it (constant coefficients in the body frame)
    turning = sequences(8, 50, rotate=True)
    d = detector_corrupt(turning, cfg, PERM, torch.Generator().manual_seed(6)) - turning
    up, _, _, _ = body_axes(turning)
    u = up / up.norm(dim=-1, keepdim=True)
    perp = torch.stack([-u[..., 1], u[..., 0]], -1)
    along = (d * u[:, :, None]).sum(-1)
    across = (d * perp[:, :, None]).sum(-1)
    assert torch.allclose(along, along[:, :1].expand_as(along), atol=1e-3)
    assert torch.allclose(across, across[:, :1].expand_as(across), atol=1e-3)
    # hips and shoulders move symmetrically: both up by the same amount
    assert torch.allclose(along[..., J["left_hip"]], along[..., J["right_hip"]], atol=1e-3)


def test_episodes_last_their_duration():
    starts = torch.zeros(1, 20, dtype=torch.bool)
    starts[0, 3] = starts[0, 12] = True
    dur = torch.full((1, 20), 2)
    dur[0, 12] = 4
    active, origin = episodes(starts, dur)
    assert active[0].nonzero().flatten().tolist() == [3, 4, 12, 13, 14, 15]
    assert origin[0, 14] == 12


def test_swaps_are_brief():
    px = sequences(50, 200)
    cfg = DetectorNoise(**(QUIET | dict(swap_prob=0.01, swap_frames=4)))
    out = detector_corrupt(px, cfg, PERM, torch.Generator().manual_seed(7))
    swapped = (out[..., J["left_ankle"], :] - px[..., J["right_ankle"], :]).norm(dim=-1) < 1e-4  # (50, 200)
    assert swapped.any()
    runs = []
    for row in swapped.tolist():
        n = 0
        for s in row + [False]:
            if s:
                n += 1
            elif n:
                runs.append(n)
                n = 0
    assert max(runs) <= 8  # at most two episodes back to back
    assert sum(runs) / len(runs) <= 3.0  # the mean of 1..4 frames is 2.5
    assert float(swapped.float().mean()) < 0.05
    # whole-body swaps also swap the arms, legs-only ones do not
    arms = (out[..., J["left_wrist"], :] - px[..., J["right_wrist"], :]).norm(dim=-1) < 1e-4
    assert arms.any() and (swapped & ~arms).any()
