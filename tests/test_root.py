"""The moving root (issue 13): depth over focal length, back-projection, training, shipping."""

import math

import numpy as np
import pytest
import torch

from poselift.model import TemporalModel, load_checkpoint
from poselift.model.checkpoint import read_raw
from poselift.model.commands import default_checkpoint
from poselift.model.normalization import normalize_screen
from poselift.model.root import (DEFAULT_FOV_DEG, MIN_FIT_JOINTS, TRAJECTORY_META, focal_from_fov, fov_from_focal,
                                 fuse_roots, is_depth_over_focal, normalized_focal, principal_point_normalized,
                                 root_from_depth, root_from_output, root_from_pose)
from poselift.train.cameras import Corruption
from poselift.train.generators import Batch, WindowSampler
from poselift.train.trajectory import (RootPrediction, RootTrainConfig, depth_target, predict_root, predicted_root,
                                       root_loss, root_views, score_root, ship_trajectory, state_path, train_root)


def pinhole(point, focal_px, width, height):
    """Pixels of a camera-frame point, principal point at the image centre."""
    x, y, z = point
    return np.array([focal_px * x / z + width / 2, focal_px * y / z + height / 2])


# --------------------------------------------------------------------------- geometry
def test_root_from_depth_hand_computed():
    # 1000x500 image, f = 500 px -> f_n = 1. The point (1, 0.5, 4) m lands at pixel
    # (500 * 1/4 + 500, 500 * 0.5/4 + 250) = (625, 312.5) -> normalised (0.25, 0.125); q = 4.
    assert normalized_focal(500.0, 1000.0) == 1.0
    xy = normalize_screen(np.array([625.0, 312.5]), 1000, 500)
    np.testing.assert_allclose(xy, [0.25, 0.125])
    np.testing.assert_allclose(root_from_depth(4.0, xy, 500.0, 1000, 500), [1.0, 0.5, 4.0], atol=1e-6)
    # f = 1000 px (f_n = 2): the same point lands at (750, 375) -> (0.5, 0.25); q = 4 / 2 = 2.
    xy = normalize_screen(pinhole((1.0, 0.5, 4.0), 1000.0, 1000, 500), 1000, 500)
    np.testing.assert_allclose(xy, [0.5, 0.25])
    np.testing.assert_allclose(root_from_depth(2.0, xy, 1000.0, 1000, 500), [1.0, 0.5, 4.0], atol=1e-6)


@pytest.mark.parametrize("size", [(1280, 720), (640, 480), (720, 1280), (1000, 1000)])
def test_root_from_depth_inverts_a_pinhole(size):
    w, h = size
    rng = np.random.default_rng(1)
    points = np.stack([rng.uniform(-2, 2, 50), rng.uniform(-1, 1.5, 50), rng.uniform(1.5, 12, 50)], axis=1)
    for fov in (40.0, 60.0, 78.0):
        f = focal_from_fov(fov, w)
        px = np.stack([pinhole(p, f, w, h) for p in points])
        xy = normalize_screen(px, w, h)
        q = points[:, 2] / normalized_focal(f, w)
        np.testing.assert_allclose(root_from_depth(q, xy, f, w, h), points, rtol=1e-5, atol=1e-5)
        # torch twin: same numbers, dtype kept, differentiable
        qt = torch.tensor(q, requires_grad=True)
        out = root_from_depth(qt, torch.from_numpy(xy.astype(np.float64)), f, w, h)
        assert out.dtype == torch.float64
        np.testing.assert_allclose(out.detach().numpy(), points, rtol=1e-5, atol=1e-5)
        out.sum().backward()
        assert qt.grad is not None


def test_principal_point_is_the_image_centre_in_normalised_units():
    for w, h in ((1280, 720), (720, 1280), (640, 480)):
        assert principal_point_normalized(w, h) == pytest.approx((0.0, 0.0))
        np.testing.assert_allclose(normalize_screen(np.array([w / 2, h / 2]), w, h), [0.0, 0.0], atol=1e-7)


def test_focal_fov_conversion():
    assert DEFAULT_FOV_DEG == 60.0
    assert focal_from_fov(90.0, 1000) == pytest.approx(500.0)
    assert focal_from_fov(60.0, 1280) == pytest.approx(640 / math.tan(math.radians(30)))  # 1108.5
    assert focal_from_fov(width=1280) == pytest.approx(1108.5125, abs=1e-3)
    for fov in (30.0, 55.0, 60.0, 78.0, 120.0):
        assert fov_from_focal(focal_from_fov(fov, 640), 640) == pytest.approx(fov)
    # a wider lens has a shorter focal length
    assert focal_from_fov(78.0, 1280) < focal_from_fov(55.0, 1280)
    for bad in (0.0, 180.0, -5.0):
        with pytest.raises(ValueError):
            focal_from_fov(bad, 1280)
    with pytest.raises(ValueError):
        focal_from_fov(60.0, 0)


def test_stated_focal_scales_depth_only():
    """Same 2D, focal length doubled: the depth doubles, X and Y stay (a pinhole's rule)."""
    q = np.array([2.0, 3.5])
    xy = np.array([[0.3, -0.1], [-0.5, 0.2]])
    a = root_from_depth(q, xy, 800.0, 1280, 720)
    b = root_from_depth(q, xy, 1600.0, 1280, 720)
    np.testing.assert_allclose(b[:, 2], 2 * a[:, 2])
    np.testing.assert_allclose(b[:, :2], a[:, :2])
    # through a (random) trajectory network, as the evaluation and the stream run it
    torch.manual_seed(0)
    model = TemporalModel(filter_widths=(3, 3), causal=True, channels=16, num_joints_out=1).eval()
    kp = torch.rand(40, 17, 2) - 0.5
    r1 = predict_root(model, kp, 900.0, (1280, 720))
    r2 = predict_root(model, kp, 1800.0, (1280, 720))
    np.testing.assert_allclose(r2[:, 2], 2 * r1[:, 2], rtol=1e-6)
    np.testing.assert_allclose(r2[:, :2], r1[:, :2], rtol=1e-6, atol=1e-6)
    # the decoder reads log q from the z channel
    out = torch.zeros(5, 1, 3)
    out[..., 0, 2] = math.log(3.0)
    f = 640.0
    np.testing.assert_allclose(root_from_output(out, torch.zeros(5, 2), f, 1280, 720)[:, 2].numpy(),
                               3.0 * normalized_focal(f, 1280), rtol=1e-6)


# --------------------------------------------------------------------------- targets
def test_depth_target_of_a_hand_made_batch():
    traj = torch.tensor([[[[0.1, 0.2, 6.0]]], [[[0.0, 0.0, 3.0]]]])  # (B=2, K=1, 1, 3)
    intr = torch.zeros(2, 9)
    intr[:, 0] = torch.tensor([1.5, 2.0])
    b = Batch(torch.zeros(2, 3, 17, 2), torch.zeros(2, 1, 17, 3), traj, torch.zeros(2, 1, 17, 2), intr,
              torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(depth_target(b), torch.tensor([[4.0], [1.5]]))


@pytest.fixture(scope="module")
def small_takes(mocap_dir):
    from poselift.train.dataset import load_takes

    return load_takes(mocap_dir / "subject_05", progress=False) + load_takes(mocap_dir / "subject_06", progress=False)


def test_depth_target_is_what_the_image_determines(small_takes):
    """On sampled batches (no distortion, no noise; flips on) the pelvis in the 2D input
    is the pinhole projection of the root, and q = Z / f_n; so root_from_depth(q, pelvis)
    gives the camera-frame root back, up to the sampler's principal point jitter."""
    sampler = WindowSampler(small_takes, 9, True, 1, "cpu", flip=True, corruption=Corruption(), distortion=False)
    batch = sampler.sample(256, torch.Generator().manual_seed(3))
    v = batch.valid
    q = depth_target(batch)[v][:, 0]
    root = batch.trajectory[v][:, 0, 0]
    intr = batch.intrinsics[v]
    assert (q > 0).all()
    torch.testing.assert_close(q * intr[:, 0], root[:, 2])
    pelvis = batch.inputs_at_targets[v][:, 0, 0]
    # projection with the sampled principal point c: x_n = c + f_n X / Z
    torch.testing.assert_close(pelvis, intr[:, 2:4] + intr[:, 0:2] * root[:, :2] / root[:, 2:], atol=1e-4, rtol=1e-4)
    # decoding with the principal point at the centre: exact depth; x, y off by c * q only
    w, h = 1000.0, 500.0
    back = root_from_depth(q, pelvis - intr[:, 2:4], intr[:, 0] * w / 2, w, h)
    torch.testing.assert_close(back[:, 2], root[:, 2])
    torch.testing.assert_close(back[:, 0], root[:, 0], atol=1e-4, rtol=1e-4)
    # the sampler's fy differs from fx by ~1%; q is defined with fx, so y comes back scaled by fy / fx
    torch.testing.assert_close(back[:, 1], root[:, 1] * intr[:, 1] / intr[:, 0], atol=1e-4, rtol=1e-4)


def test_root_loss_is_the_log_depth_error():
    q = torch.tensor([[2.0, 4.0]])
    perfect = torch.zeros(1, 2, 1, 3)
    perfect[..., 0, 2] = q.log()
    assert root_loss(perfect, q)["log_q"].item() == pytest.approx(0.0, abs=1e-7)
    off = perfect.clone()
    off[..., 0, 2] += math.log(1.1)  # 10% too far
    assert root_loss(off, q)["log_q"].item() == pytest.approx(math.log(1.1), rel=1e-5)
    off[..., 0, :2] = 1.0
    assert root_loss(off, q, xy_weight=0.1)["xy"].item() == pytest.approx(0.1)


def test_evaluation_views_hold_the_true_root(small_takes):
    """root_views' clean 2D pelvis back-projects, with the true q, onto the true root."""
    take = small_takes[0]
    for v in root_views(take, distance=6.0, cameras=2):
        q = v.root[:, 2] / normalized_focal(v.focal_px, v.size[0])
        back = root_from_depth(q, v.keypoints[:, 0].double().numpy(), v.focal_px, *v.size)
        np.testing.assert_allclose(back, v.root, atol=2e-5)
        assert v.in_view.any()


# --------------------------------------------------------------------------- the fitted root
def _posed_views(n=40, seed=3, size=(1280, 720), fov=60.0):
    """Random root-relative bodies (pelvis at the origin) placed at random roots, and their 2D."""
    w, h = size
    rng = np.random.default_rng(seed)
    pose = rng.normal(0.0, 0.35, (n, 17, 3))
    pose[:, 0] = 0.0
    root = np.stack([rng.uniform(-1.5, 1.5, n), rng.uniform(-0.8, 0.8, n), rng.uniform(2.5, 10.0, n)], axis=1)
    f = focal_from_fov(fov, w)
    px = np.stack([[pinhole(p, f, w, h) for p in body + r] for body, r in zip(pose, root)])
    return pose, root, normalize_screen(px, w, h), f


@pytest.mark.parametrize("size", [(1280, 720), (720, 1280), (640, 480)])
def test_the_fitted_root_inverts_a_pinhole(size):
    pose, root, xy, f = _posed_views(size=size)
    np.testing.assert_allclose(root_from_pose(pose, xy, f, *size), root, rtol=1e-6, atol=1e-6)
    # The pelvis need not sit exactly at the origin: the fit returns the pelvis, T + pose[0].
    shifted = pose + np.array([0.02, -0.01, 0.03])
    np.testing.assert_allclose(root_from_pose(shifted, xy, f, *size), root, rtol=1e-6, atol=1e-6)


def test_the_fitted_root_scales_with_the_stated_focal_length():
    """What fixes the depth is 2D extent over 3D extent: a focal length stated 20 % long
    makes the body about 20 % farther: exactly so for a distant body, and within a few per
    cent up close, where the body's own depth (perspective) no longer scales with it."""
    pose, root, xy, f = _posed_views()
    ratio = root_from_pose(pose, xy, 1.2 * f, 1280, 720)[:, 2] / root_from_pose(pose, xy, f, 1280, 720)[:, 2]
    np.testing.assert_allclose(ratio, 1.2, rtol=0.04)
    np.testing.assert_allclose(ratio[root[:, 2] > 6.0], 1.2, rtol=0.01)


def test_the_fitted_root_leaves_out_what_it_should():
    pose, root, xy, f = _posed_views(n=5)
    bad = xy.copy()
    bad[:, 13] += 0.3                              # a wrist far off: a filled-in guess
    weights = np.ones((5, 17))
    weights[:, 13] = 0.0
    np.testing.assert_allclose(root_from_pose(pose, bad, f, 1280, 720, weights), root, rtol=1e-6, atol=1e-6)
    assert np.abs(root_from_pose(pose, bad, f, 1280, 720) - root).max() > 1e-3
    nan = xy.copy()
    nan[:, 16] = np.nan                            # a non-finite joint drops out by itself
    np.testing.assert_allclose(root_from_pose(pose, nan, f, 1280, 720), root, rtol=1e-6, atol=1e-6)
    few = np.zeros((5, 17))
    few[:, :MIN_FIT_JOINTS - 1] = 1.0              # too few joints: no root rather than a guess
    assert np.isnan(root_from_pose(pose, xy, f, 1280, 720, few)).all()
    point = np.zeros_like(pose)                    # a point-sized body seen spread out: only
    assert np.isnan(root_from_pose(point, xy, f, 1280, 720)).all()  # T = 0 fits, on the lens: none


def test_fuse_roots_blends_depth_geometrically_and_falls_back():
    net = np.array([[0.4, 0.1, 8.0], [np.nan, 0.0, 5.0], [1.0, 0.2, 4.0]])
    fit = np.array([[0.2, 0.05, 4.0], [0.5, 0.1, 5.0], [np.nan, np.nan, np.nan]])
    out = fuse_roots(net, fit, network_weight=0.5)
    assert out[0, 2] == pytest.approx(math.sqrt(8.0 * 4.0))
    np.testing.assert_allclose(out[0, :2], [0.5 * 0.4 * 0.5**0.5 + 0.5 * 0.2 * 2**0.5,
                                            0.5 * 0.1 * 0.5**0.5 + 0.5 * 0.05 * 2**0.5])
    np.testing.assert_allclose(out[1], fit[1])     # the network's is not finite: the fit
    np.testing.assert_allclose(out[2], net[2])     # the fit is not finite: the network's
    np.testing.assert_allclose(fuse_roots(net[:1], fit[:1], 1.0), net[:1])
    np.testing.assert_allclose(fuse_roots(net[:1], fit[:1], 0.0), fit[:1])
    same = fuse_roots(fit[:2], fit[:2])
    np.testing.assert_allclose(same, fit[:2])


def test_scored_methods_with_a_perfect_pose_model(small_takes):
    """With the true pose and the true q, every method gives the true root back (clean 2D)."""
    preds = []
    for v in root_views(small_takes[0], distance=6.0, cameras=2):
        q = v.root[:, 2] / normalized_focal(v.focal_px, v.size[0])
        preds.append(RootPrediction(v, q, v.pose))
    for method in ("network", "fitted", "fused"):
        for p in preds:
            np.testing.assert_allclose(predicted_root(p, p.view.focal_px, method)[p.view.in_view],
                                       p.view.root[p.view.in_view], atol=1e-4)
        assert score_root(preds, 1.0, method).bins["4-8 m (all)"]["root_m"] < 1e-4
    with pytest.raises(ValueError, match="pose model"):
        predicted_root(RootPrediction(preds[0].view, preds[0].q), preds[0].view.focal_px, "fitted")
    with pytest.raises(ValueError, match="unknown root method"):
        predicted_root(preds[0], preds[0].view.focal_px, "magic")


# --------------------------------------------------------------------------- training + shipping
def test_training_smoke_writes_a_shippable_checkpoint(tmp_path, small_takes):
    base = default_checkpoint("causal")
    cfg = RootTrainConfig(data="unused", filter_widths=(3, 3), channels=16, epochs=2, batch_size=32,
                          max_batches_per_epoch=2, variants=0, validation_subjects=("06",), eval_cameras=1)
    out = tmp_path / "root.pt"
    trainer = train_root(cfg, out, base, device="cpu", takes=small_takes, progress=False)
    assert [h["epoch"] for h in trainer.history] == [1, 2]
    assert "val_root_m" in trainer.history[-1] and state_path(out).exists()
    ckpt = load_checkpoint(out)
    assert ckpt.trajectory_model is not None
    tcfg = ckpt.trajectory_model.config
    assert tcfg.num_joints_out == 1 and tcfg.causal and tcfg.filter_widths == (3, 3)
    assert is_depth_over_focal(ckpt.meta) and ckpt.meta["trajectory"]["target"] == "depth_over_focal"
    assert ckpt.meta["trajectory"]["training"]["epochs_done"] == 2
    assert {k: v for k, v in ckpt.meta["trajectory"].items() if k != "training"} == TRAJECTORY_META
    # the pose model is copied untouched: same tensors, same dtype, same metadata otherwise
    raw_base, raw_out = read_raw(base), read_raw(out)
    assert raw_out["config"] == raw_base["config"]
    assert raw_base["state_dict"].keys() == raw_out["state_dict"].keys()
    for k, v in raw_base["state_dict"].items():
        assert raw_out["state_dict"][k].dtype == v.dtype and torch.equal(raw_out["state_dict"][k], v), k
    assert {k: v for k, v in raw_out["meta"].items() if k != "trajectory"} == \
        {k: v for k, v in raw_base["meta"].items() if k != "trajectory"}
    assert all(t.dtype == torch.float16 for t in raw_out["trajectory"]["state_dict"].values() if t.is_floating_point())
    # the trajectory weights are the trained ones (fp16-rounded); calibration only
    # re-estimates batch-norm statistics and the output's z bias, on a copy
    trained = trainer.model.state_dict()
    calibration = ckpt.meta["trajectory"]["training"]["calibration"]
    assert abs(calibration["median_after"]) <= abs(calibration["median_before"]) + 0.05
    changed = set()
    for k, v in ckpt.trajectory_model.state_dict().items():
        expected = trained[k].half().float() if trained[k].is_floating_point() else trained[k]
        if not torch.equal(v, expected):
            changed.add(k.split(".")[0] if not k.startswith("shrink") else k)
    assert changed <= {"expand_bn", "layers_bn", "shrink.bias"}, changed


def test_training_resumes_bit_for_bit(tmp_path, small_takes):
    kw = dict(data="unused", filter_widths=(3,), channels=8, batch_size=16, max_batches_per_epoch=2, variants=0,
              validation_subjects=("06",), eval_cameras=1)
    base = default_checkpoint("causal")
    full = train_root(RootTrainConfig(epochs=2, **kw), tmp_path / "a.pt", base, takes=small_takes, progress=False,
                      validate=False)
    train_root(RootTrainConfig(epochs=1, **kw), tmp_path / "b.pt", base, takes=small_takes, progress=False,
               validate=False)
    resumed = train_root(RootTrainConfig(epochs=2, **kw), tmp_path / "b.pt", base, resume=True, takes=small_takes,
                         progress=False, validate=False)
    assert [h["loss_log_q"] for h in resumed.history] == [h["loss_log_q"] for h in full.history]
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ship_refuses_a_latency_mismatch(tmp_path):
    symmetric = TemporalModel(filter_widths=(3, 3), causal=False, channels=8, num_joints_out=1)
    with pytest.raises(ValueError, match="latency"):
        ship_trajectory(default_checkpoint("causal"), symmetric, tmp_path / "x.pt")


def test_streaming_root_matches_offline():
    """What the engine will do per frame (StreamingLifter step, then root_from_output with the
    frame's pelvis) equals the offline evaluation path (predict_root)."""
    from poselift.model import StreamingLifter

    torch.manual_seed(1)
    model = TemporalModel(filter_widths=(3, 3), causal=True, channels=16, num_joints_out=1).eval()
    kp = (torch.rand(30, 17, 2) - 0.5) * 0.4
    w, h = 1280, 720
    f = focal_from_fov(DEFAULT_FOV_DEG, w)
    lifter = StreamingLifter(model, batch_size=1)
    assert lifter.latency_frames == 0
    live = np.stack([root_from_output(lifter.step(kp[t][None]).cpu(), kp[t, 0][None], f, w, h)[0].numpy()
                     for t in range(30)])
    np.testing.assert_allclose(live, predict_root(model, kp, f, (w, h)), rtol=1e-4, atol=1e-5)


def test_calibration_centres_the_log_depth_residual(small_takes):
    """calibrate() re-estimates BN statistics and moves the z bias so that the median
    log-depth residual on training windows is 0 (eval mode, as the model will run)."""
    from poselift.train.root_calibration import calibrate, depth_log_residuals

    torch.manual_seed(0)
    model = TemporalModel(filter_widths=(3, 3), causal=True, channels=16, num_joints_out=1)
    with torch.no_grad():
        model.shrink.bias[2] += 0.7  # 2x too far
    sampler = WindowSampler(small_takes, 9, True, 1, "cpu", corruption=Corruption(2.0))
    weight = model.expand_conv.weight.clone()
    rec = calibrate(model, sampler, batches=6, batch_size=128)
    assert abs(rec["median_after"]) < 0.05 < abs(rec["median_before"])
    res = depth_log_residuals(model, sampler, 4, 128, torch.Generator().manual_seed(99))
    assert abs(res.median().item()) < 0.08
    assert torch.equal(model.expand_conv.weight, weight) and not model.training
