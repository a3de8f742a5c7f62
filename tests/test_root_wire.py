"""The root wired into the protocol (issue 13): the optional input field ``focal_px``."""

from __future__ import annotations

import math

import msgpack
import pytest

from poselift.stream.protocol import ProtocolError, decode_input, encode_input


def _msg(**extra) -> bytes:
    base = msgpack.unpackb(encode_input("cam0", 0, [[1.0, 2.0]] * 17, width=640, height=480, t=0.0))
    return msgpack.packb(base | extra)


def test_focal_px_is_optional_and_read():
    assert decode_input(_msg()).focal_px is None
    assert decode_input(_msg(focal_px=None)).focal_px is None
    assert decode_input(_msg(focal_px=554)).focal_px == 554.0
    assert decode_input(encode_input("c", 0, [[1.0, 2.0]] * 17, width=640, height=480, focal_px=600.5)).focal_px == 600.5


@pytest.mark.parametrize("value, reason", [
    (0, "bad_type"), (-500.0, "bad_type"), ("600", "bad_type"), (True, "bad_type"), ([600], "bad_type"),
    (math.nan, "non_finite"), (math.inf, "non_finite"), (1e300, "bad_type"),
])
def test_a_bad_focal_px_is_rejected_with_a_reason(value, reason):
    with pytest.raises(ProtocolError) as exc:
        decode_input(_msg(focal_px=value))
    assert exc.value.reason == reason and "focal_px" in exc.value.detail


# ---- the root in the engine and the outputs (needs the shipped depth-over-focal root model) ----
import numpy as np  # noqa: E402

from poselift.errors import UserError  # noqa: E402
from poselift.model.rig import camera_to_rig  # noqa: E402
from poselift.stream.apps import load_model, make_engine, video_arrays  # noqa: E402
from poselift.stream.engine import LiftEngine  # noqa: E402
from poselift.stream.sources import DEMO_CLIP, load_clip  # noqa: E402


@pytest.fixture(scope="module")
def shipped():
    ckpt = load_model(None, "causal")
    if (ckpt.meta.get("trajectory") or {}).get("target") != "depth_over_focal":
        pytest.skip("the shipped causal model has no depth-over-focal root model")
    return ckpt


def _roots(ckpt, focal=None, fov=None, n=20):
    from dataclasses import replace

    engine = LiftEngine(ckpt.model, trajectory_model=ckpt.trajectory_model, max_streams=1,
                        trajectory_meta=ckpt.meta["trajectory"], fov_deg=fov)
    frames = [replace(f, focal_px=focal) for f in load_clip(DEMO_CLIP).frames("cam0", limit=n)]
    return np.stack([p.root for p in engine.process(frames)])


def test_the_root_scales_with_the_stated_focal_length(shipped):
    from poselift.model.root import DEFAULT_FOV_DEG, focal_from_fov

    clip = load_clip(DEMO_CLIP)
    f = focal_from_fov(DEFAULT_FOV_DEG, clip.width)
    default, same, double = _roots(shipped), _roots(shipped, focal=f), _roots(shipped, focal=2 * f)
    np.testing.assert_allclose(default, same, rtol=1e-6)  # no focal_px: the default field of view
    # Depth doubles and x, y stay: exactly for the trajectory network's share, and within a
    # per cent or two for the fitted share (with a longer lens the same image is a body
    # farther away, seen with less perspective: the fit is right for each lens, not a rescale).
    np.testing.assert_allclose(double[:, 2], 2 * same[:, 2], rtol=0.02)
    np.testing.assert_allclose(double[:, :2], same[:, :2], atol=0.02)
    assert 1.0 < np.median(same[:, 2]) < 15.0  # metres in front of the camera
    wide = _roots(shipped, fov=90.0)  # --fov: a wider lens, a shorter focal length, a nearer person
    np.testing.assert_allclose(wide[:, 2], same[:, 2] * focal_from_fov(90.0, clip.width) / f, rtol=0.02)


def test_the_motion_outputs_move_with_the_root(shipped):
    engine = make_engine(shipped, device="cpu")
    arrays = video_arrays(list(load_clip(DEMO_CLIP).frames("video", limit=40)), engine)
    assert np.isfinite(arrays["trajectory"]).all()
    expected = camera_to_rig(arrays["poses3d"][:, 0].astype(np.float64) + arrays["trajectory"])
    np.testing.assert_allclose(arrays["root"], expected, atol=1e-5)  # BVH/VMC Hips = pelvis + root


def test_a_bad_fov_fails_at_start(shipped):
    with pytest.raises(UserError, match="--fov"):
        make_engine(shipped, device="cpu", fov=180.0)
