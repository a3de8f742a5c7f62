"""Metrics and losses: hand-computed cases, invariances (hypothesis) and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from poselift.model.skeleton import H36M_PARENTS
from poselift.train.metrics import (bone_length_loss, bone_lengths, evaluate_poses, mpjpe, mpjpe_np, mpjve, n_mpjpe,
                           n_mpjpe_np, p_mpjpe, p_mpjpe_per_frame, procrustes_align, weighted_mpjpe)

SETTINGS = settings(max_examples=40, deadline=None)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _pose(rng: np.random.Generator, n: int = 1, j: int = 17) -> np.ndarray:
    return rng.normal(scale=0.3, size=(n, j, 3))


# ------------------------------------------------------------------ hand-computed cases


def test_mpjpe_hand_computed():
    target = torch.zeros(1, 2, 3)
    pred = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]])  # errors 5 and 1
    assert mpjpe(pred, target).item() == pytest.approx(3.0)
    assert mpjpe_np(pred.numpy(), target.numpy()) == pytest.approx(3.0)
    assert mpjpe(pred, target).ndim == 0


def test_mpjpe_averages_over_all_leading_dims():
    target = torch.zeros(2, 3, 1, 3)
    pred = torch.zeros(2, 3, 1, 3)
    pred[0, 0, 0, 0] = 6.0  # one joint of six wrong by 6
    assert mpjpe(pred, target).item() == pytest.approx(1.0)


def test_mpjpe_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        mpjpe(torch.zeros(2, 17, 3), torch.zeros(3, 17, 3))


def test_weighted_mpjpe_hand_computed_and_uniform():
    target = torch.zeros(1, 2, 3)
    pred = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]])
    w = torch.tensor([[2.0, 0.5]])
    assert weighted_mpjpe(pred, target, w).item() == pytest.approx((2 * 5 + 0.5 * 1) / 2)
    rng = np.random.default_rng(1)
    p, t = torch.tensor(_pose(rng, 4)), torch.tensor(_pose(rng, 4))
    plain = mpjpe(p, t)
    assert weighted_mpjpe(p, t, torch.ones(4, 17)).item() == pytest.approx(plain.item())
    assert weighted_mpjpe(p, t, torch.ones(4, 1)).item() == pytest.approx(plain.item())  # broadcast
    assert weighted_mpjpe(p, t, torch.tensor(1.0)).item() == pytest.approx(plain.item())
    assert weighted_mpjpe(p, t, torch.full((4, 1), 0.25)).item() == pytest.approx(0.25 * plain.item())


def test_weighted_mpjpe_inverse_depth_trajectory():
    # trajectory model: one "joint" per frame, w = 1/z of the target depth
    target = torch.tensor([[[0.0, 0.0, 2.0]], [[0.0, 0.0, 4.0]]])  # (T=2, 1, 3)
    pred = target + torch.tensor([0.0, 0.0, 1.0])
    w = 1.0 / target[..., 2]
    assert weighted_mpjpe(pred, target, w).item() == pytest.approx((0.5 + 0.25) / 2)


def test_weighted_mpjpe_rejects_enlarging_weights():
    with pytest.raises(ValueError, match="weights"):
        weighted_mpjpe(torch.zeros(4, 17, 3), torch.zeros(4, 17, 3), torch.ones(2, 4, 17))


def test_n_mpjpe_hand_computed():
    target = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    assert n_mpjpe(2.0 * target, target).item() == pytest.approx(0.0, abs=1e-7)
    # pred = (1,0,0),(0,0,0): s = <p,t>/<p,p> = 1 -> errors 0 and 1
    pred = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    assert n_mpjpe(pred, target).item() == pytest.approx(0.5)
    # pred = (2,0,0),(0,0,0): s = 2/4 = 0.5 -> same as above
    assert n_mpjpe(2 * pred, target).item() == pytest.approx(0.5)
    assert n_mpjpe_np(2 * pred.numpy(), target.numpy()) == pytest.approx(0.5)


def test_n_mpjpe_scale_is_per_pose():
    rng = np.random.default_rng(2)
    t = _pose(rng, 3)
    p = t * np.array([0.5, 2.0, 3.0])[:, None, None]
    assert n_mpjpe_np(p, t) == pytest.approx(0.0, abs=1e-12)


def test_p_mpjpe_hand_computed():
    # target: a right-angled triangle; pred: the same rotated 90 deg about z, scaled x3, shifted
    t = np.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]]])
    rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    p = 3.0 * t @ rz + np.array([5.0, -1.0, 2.0])
    assert p_mpjpe(p, t) == pytest.approx(0.0, abs=1e-10)
    # two points: best similarity aligns any segment exactly
    assert p_mpjpe(np.array([[[0.0, 0, 0], [0, 0, 7]]]), np.array([[[1.0, 1, 1], [2, 1, 1]]])) == \
        pytest.approx(0.0, abs=1e-10)
    # collinear target, pred = midpoint-symmetric points with one extra off-line: hand case
    # target (-1,0,0),(1,0,0),(0,0,0); pred all zeros -> aligns to the centroid: errors 1,1,0
    t3 = np.array([[[-1.0, 0, 0], [1, 0, 0], [0, 0, 0]]])
    assert p_mpjpe(np.zeros_like(t3), t3) == pytest.approx(2.0 / 3.0)


def test_p_mpjpe_per_frame_shape_and_mean():
    rng = np.random.default_rng(3)
    p, t = _pose(rng, 5), _pose(rng, 5)
    per = p_mpjpe_per_frame(p, t)
    assert per.shape == (5,)
    assert p_mpjpe(p, t) == pytest.approx(per.mean())
    for i in range(5):
        assert per[i] == pytest.approx(p_mpjpe(p[i:i + 1], t[i:i + 1]))


def test_mpjve_hand_computed():
    t = np.zeros((3, 1, 3))
    p = np.zeros((3, 1, 3))
    p[1, 0, 0] = 1.0  # velocities: +1, -1 in x
    assert mpjve(p, t) == pytest.approx(1.0)
    p2 = np.zeros((3, 1, 3))
    p2[:, 0, 0] = [0.0, 1.0, 2.0]  # constant velocity error of 1
    assert mpjve(p2, t) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="T >= 2"):
        mpjve(np.zeros((1, 17, 3)), np.zeros((1, 17, 3)))


def test_bone_lengths_hand_computed_torch_and_numpy():
    parents = (-1, 0, 1)
    poses = np.array([[[0.0, 0, 0], [3, 4, 0], [3, 4, 2]]])
    np.testing.assert_allclose(bone_lengths(poses, parents), [[5.0, 2.0]])
    out = bone_lengths(torch.tensor(poses), parents)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), [[5.0, 2.0]])
    assert bone_lengths(np.zeros((4, 2, 17, 3)), H36M_PARENTS).shape == (4, 2, 16)


def test_bone_length_loss_hand_computed():
    parents = (-1, 0)
    lab = torch.tensor([[[0.0, 0, 0], [1, 0, 0]], [[0.0, 0, 0], [3, 0, 0]]])  # mean bone 2
    unl = torch.tensor([[[0.0, 0, 0], [0, 0, 5]]])  # mean bone 5
    assert bone_length_loss(lab, unl, parents).item() == pytest.approx(9.0)


def test_evaluate_poses_keys_and_values():
    rng = np.random.default_rng(4)
    t = _pose(rng, 6)
    p = t + np.array([0.1, 0.0, 0.0])
    out = evaluate_poses(p, t)
    assert set(out) == {"mpjpe", "p_mpjpe", "n_mpjpe", "mpjve", "frames"}
    assert out["frames"] == 6
    assert out["mpjpe"] == pytest.approx(0.1)
    assert out["p_mpjpe"] == pytest.approx(0.0, abs=1e-10)
    assert out["mpjve"] == pytest.approx(0.0, abs=1e-12)
    assert all(isinstance(v, float) for k, v in out.items() if k != "frames")
    assert math.isnan(evaluate_poses(p[:1], t[:1])["mpjve"])


# ------------------------------------------------------------------ invariances (hypothesis)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(0.05, 20.0),
       shift=st.tuples(*[st.floats(-10.0, 10.0)] * 3))
def test_p_mpjpe_invariant_to_similarity_of_prediction(seed, scale, shift):
    rng = np.random.default_rng(seed)
    t, p = _pose(rng, 3), _pose(rng, 3)
    rot = _random_rotation(rng)
    p2 = scale * p @ rot + np.asarray(shift)
    np.testing.assert_allclose(p_mpjpe_per_frame(p2, t), p_mpjpe_per_frame(p, t), atol=1e-9)
    # and a similarity copy of the target is aligned exactly
    assert p_mpjpe(scale * t @ rot + np.asarray(shift), t) == pytest.approx(0.0, abs=1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_p_mpjpe_reflection_gives_proper_rotation(seed):
    rng = np.random.default_rng(seed)
    t = _pose(rng, 2)
    mirror = np.diag([-1.0, 1.0, 1.0])
    p = t @ mirror @ _random_rotation(rng)  # an improper copy of the target
    aligned, rot, s, _ = procrustes_align(p, t)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-9)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-9)
    assert np.all(s >= 0)
    err = p_mpjpe_per_frame(p, t)
    assert np.all(np.isfinite(err)) and np.all(err > 1e-3)  # a mirror is not forgiven
    # the constrained optimum is still no worse (in squared error) than the raw prediction
    # nor than a collapse onto the centroid
    sq = ((aligned - t) ** 2).sum(axis=(-2, -1))
    assert np.all(sq <= ((p - t) ** 2).sum(axis=(-2, -1)) + 1e-9)
    assert np.all(sq <= ((t - t.mean(axis=-2, keepdims=True)) ** 2).sum(axis=(-2, -1)) + 1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(0.05, 20.0))
def test_n_mpjpe_invariant_to_scale(seed, scale):
    rng = np.random.default_rng(seed)
    t, p = _pose(rng, 3), _pose(rng, 3)
    assert n_mpjpe_np(scale * p, t) == pytest.approx(n_mpjpe_np(p, t), rel=1e-9)
    tt, pp = torch.tensor(t), torch.tensor(p)
    assert n_mpjpe(scale * pp, tt).item() == pytest.approx(n_mpjpe(pp, tt).item(), rel=1e-9)
    assert n_mpjpe(pp, tt).item() == pytest.approx(n_mpjpe_np(p, t), rel=1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), shift=st.tuples(*[st.floats(-10.0, 10.0)] * 3))
def test_mpjve_zero_for_constant_offset(seed, shift):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=(8, 17, 3))
    assert mpjve(t + np.asarray(shift), t) == pytest.approx(0.0, abs=1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), w=st.floats(0.1, 10.0))
def test_weighted_equals_plain_for_unit_weights(seed, w):
    rng = np.random.default_rng(seed)
    p, t = torch.tensor(_pose(rng, 4)), torch.tensor(_pose(rng, 4))
    assert weighted_mpjpe(p, t, torch.ones(4, 17)).item() == pytest.approx(mpjpe(p, t).item(), rel=1e-12)
    assert weighted_mpjpe(p, t, torch.full((4, 17), w, dtype=torch.float64)).item() == pytest.approx(w * mpjpe(p, t).item(), rel=1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), stretch=st.floats(1.01, 2.0))
def test_bone_length_loss_zero_for_same_skeleton_positive_otherwise(seed, stretch):
    rng = np.random.default_rng(seed)
    base = _pose(rng, 1)
    # same skeleton, different rigid poses: each frame a rotated + shifted copy
    lab = np.concatenate([base @ _random_rotation(rng) + rng.normal(size=3) for _ in range(4)])
    unl = np.concatenate([base @ _random_rotation(rng) + rng.normal(size=3) for _ in range(3)])
    loss = bone_length_loss(torch.tensor(lab), torch.tensor(unl), H36M_PARENTS)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert bone_length_loss(torch.tensor(lab), torch.tensor(stretch * unl), H36M_PARENTS).item() > 0


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize("loss_name", ["mpjpe", "weighted", "n_mpjpe", "bones"])
def test_gradients_flow(loss_name):
    rng = np.random.default_rng(5)
    pred = torch.tensor(_pose(rng, 4), dtype=torch.float32, requires_grad=True)
    target = torch.tensor(_pose(rng, 4), dtype=torch.float32)
    if loss_name == "mpjpe":
        loss = mpjpe(pred, target)
    elif loss_name == "weighted":
        loss = weighted_mpjpe(pred, target, 1.0 / (target[..., 2].abs() + 1.0))
    elif loss_name == "n_mpjpe":
        loss = n_mpjpe(pred, target)
    else:
        loss = bone_length_loss(pred, target * 1.5, H36M_PARENTS)
    loss.backward()
    assert pred.grad is not None
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_mpjpe_gradient_finite_at_zero_error():
    target = torch.zeros(2, 17, 3)
    pred = torch.zeros(2, 17, 3, requires_grad=True)
    mpjpe(pred, target).backward()
    assert torch.isfinite(pred.grad).all()


def test_mpjpe_gradient_matches_finite_differences():
    rng = np.random.default_rng(6)
    pred = torch.tensor(_pose(rng, 2), requires_grad=True)
    target = torch.tensor(_pose(rng, 2))
    assert torch.autograd.gradcheck(lambda p: n_mpjpe(p, target), (pred,))
    assert torch.autograd.gradcheck(lambda p: mpjpe(p, target), (pred,))
