import math

import numpy as np
import torch

from poselift.model.normalization import normalize_screen
from poselift.model.skeleton import flip_permutation
from poselift.train.cameras import (Corruption, corrupt_keypoints, distort, fixed_cameras, look_at, normalize_pixels,
                           project_normalized, project_to_pixels, sample_cameras, world_to_camera)


def test_look_at_axes():
    eye = torch.tensor([[0.0, 1.5, 5.0]], dtype=torch.float64)
    rot, trans = look_at(eye, torch.tensor([[0.0, 1.5, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(rot[0] @ rot[0].T, torch.eye(3, dtype=torch.float64))
    assert torch.det(rot[0]) > 0
    # a point straight ahead is on the optical axis; one above is at negative y (y down)
    pts = torch.tensor([[[0.0, 1.5, 0.0], [0.0, 2.5, 0.0], [1.0, 1.5, 0.0]]], dtype=torch.float64)
    cam = (pts @ rot.transpose(1, 2)) + trans[:, None]
    torch.testing.assert_close(cam[0, 0], torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64))
    assert cam[0, 1, 1] < 0
    # a camera at +z looking toward -z (Y up) has world +x on its right, as OpenGL's default view
    assert cam[0, 2, 0] > 0


def test_projection_pinhole_and_normalisation_agree_with_model():
    cams = fixed_cameras(torch.zeros(3), count=4)
    pts = torch.tensor([[0.0, 1.0, 0.0], [0.3, 1.7, 0.1]], dtype=torch.float64).expand(4, 2, 3)
    cam = world_to_camera(pts, cams)
    px = project_to_pixels(cam, cams)
    f = cams.focal[0, 0]
    expected = cam[..., :2] / cam[..., 2:] * f + cams.center[:, None]
    torch.testing.assert_close(px, expected)
    torch.testing.assert_close(px[:, 0], cams.center)  # aim point at the image centre
    n = normalize_pixels(px, cams.size)
    np.testing.assert_allclose(n.numpy(), normalize_screen(px.numpy(), 1280, 720), atol=1e-6)
    torch.testing.assert_close(project_normalized(cam, cams.intrinsics_normalized()), n)


def test_distortion_model():
    xy = torch.tensor([[0.1, -0.2], [0.0, 0.0]], dtype=torch.float64)
    zero = distort(xy, torch.zeros(3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(zero, xy)
    k = torch.tensor([0.1, 0.01, 0.001], dtype=torch.float64)
    p = torch.tensor([0.001, -0.002], dtype=torch.float64)
    out = distort(xy, k, p)
    x, y = 0.1, -0.2
    r2 = x * x + y * y
    radial = 1 + 0.1 * r2 + 0.01 * r2 ** 2 + 0.001 * r2 ** 3
    xd = x * radial + 2 * 0.001 * x * y + (-0.002) * (r2 + 2 * x * x)
    yd = y * radial + 0.001 * (r2 + 2 * y * y) + 2 * (-0.002) * x * y
    torch.testing.assert_close(out[0], torch.tensor([xd, yd], dtype=torch.float64))
    torch.testing.assert_close(out[1], torch.zeros(2, dtype=torch.float64))


def test_sampled_cameras_are_seeded_and_see_the_subject():
    subj = torch.zeros(64, 3, dtype=torch.float64)
    a = sample_cameras(subj, torch.Generator().manual_seed(3))
    b = sample_cameras(subj, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.rotation, b.rotation)
    body = torch.tensor([[0.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 1.7, 0.0]], dtype=torch.float64).expand(64, 3, 3)
    cam = world_to_camera(body, a)
    assert (cam[..., 2] > 2.0).all()  # in front of every camera, a few metres away
    px = project_to_pixels(cam, a)
    inside = (px[..., 0] > -0.2 * a.size[:, None, 0]) & (px[..., 0] < 1.2 * a.size[:, None, 0])
    assert inside.float().mean() > 0.95
    dist = (cam[:, 1]).norm(dim=-1)
    assert 2.5 < dist.min() and dist.max() < 9.5
    yaw = torch.atan2(a.rotation[:, 2, 0], a.rotation[:, 2, 2])
    assert yaw.max() - yaw.min() > math.pi  # views from all around


def test_corruption_off_by_default_and_seeded():
    px = torch.rand(4, 10, 17, 2) * 500
    size = torch.tensor([[1000.0, 800.0]] * 4)
    perm = torch.from_numpy(flip_permutation())
    assert corrupt_keypoints(px, size, Corruption(), perm) is px
    c = Corruption(noise_px=3.0, missing_prob=0.1, swap_prob=0.1)
    a = corrupt_keypoints(px, size, c, perm, torch.Generator().manual_seed(0))
    b = corrupt_keypoints(px, size, c, perm, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    noise_only = corrupt_keypoints(px, size, Corruption(noise_px=3.0), perm, torch.Generator().manual_seed(0))
    assert 2.0 < (noise_only - px).std() < 4.0
    swapped = corrupt_keypoints(px, size, Corruption(swap_prob=1.0), perm, torch.Generator().manual_seed(0))
    torch.testing.assert_close(swapped, px[:, :, perm])
