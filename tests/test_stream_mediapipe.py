"""MediaPipe on a real photo (skimage's astronaut) and the video path on a clip made from it."""

import numpy as np
import pytest

from poselift.stream.engine import LiftEngine
from poselift.stream.intake import frame_to_model_input
from poselift.stream.gapfill import GapFiller
from poselift.stream.protocol import Frame2D
from tests.helpers import random_model
from tests.stream_helpers import write_checkpoint

skimage_data = pytest.importorskip("skimage.data")
cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()  # (512, 512, 3) RGB, public domain


@pytest.fixture(scope="module")
def astronaut_video(tmp_path_factory, astronaut):
    """A short clip: the photo drifting a few pixels per frame (MJPG in AVI, always available)."""
    path = tmp_path_factory.mktemp("video") / "astronaut.avi"
    h, w = astronaut.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (w, h))
    assert writer.isOpened()
    bgr = cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR)
    for i in range(8):
        writer.write(np.roll(bgr, 2 * i, axis=1))
    writer.release()
    return path


def test_mediapipe_on_astronaut_gives_17_finite_joints(astronaut):
    from poselift.stream.sources import MediaPipeDetector

    with MediaPipeDetector(static_image_mode=True) as det:
        kp, conf = det.detect(astronaut)
    assert kp.shape == (33, 2) and conf.shape == (33,)
    h, w = astronaut.shape[:2]
    f = Frame2D("img", 0, 0.0, "mediapipe33", w, h, kp, conf)
    x = frame_to_model_input(f, 0.5)
    # The face and shoulders are clearly visible; the legs are out of the picture.
    assert np.isfinite(x[[8, 9, 10, 11, 14]]).all()
    r = GapFiller().process(x, 0)
    assert r.valid and r.x.shape == (17, 2) and np.isfinite(r.x).all()
    eng = LiftEngine(random_model((3, 3), causal=True, channels=32))
    (pose,) = eng.process([f])
    assert pose.joints.shape == (17, 3) and np.isfinite(pose.joints).all()
    assert set(pose.filled) >= {3, 6}  # ankles were filled, and say so


def test_video_command_writes_npz(tmp_path, astronaut_video):
    from poselift.stream.apps import run_video

    ckpt = write_checkpoint(tmp_path / "m.pt", causal=False, widths=(3, 3))
    out = tmp_path / "out.npz"
    import torch

    torch.set_num_threads(1)
    res = run_video(astronaut_video, out=out, checkpoint=ckpt, device="cpu", render=tmp_path / "out.gif", threads=2)
    assert torch.get_num_threads() == 2  # --threads is no longer ignored by video
    with np.load(out) as z:
        assert z["poses3d"].shape == (8, 17, 3) and np.isfinite(z["poses3d"]).all()
        assert z["keypoints2d"].shape == (8, 17, 2) and z["frames"].tolist() == list(range(8))
        assert z["valid"].all() and int(z["width"]) == 512
    assert res["frames"] == 8 and (tmp_path / "out.gif").stat().st_size > 0


def test_webcam_command_headless_on_video(tmp_path, astronaut_video):
    from poselift.stream.apps import run_webcam

    ckpt = write_checkpoint(tmp_path / "m.pt")
    res = run_webcam(video=str(astronaut_video), checkpoint=ckpt, window=False, device="cpu",
                     publish="tcp://127.0.0.1:*")
    assert res["frames"] == 8 and res["valid"] == 8 and res["p50_ms"] > 0


def test_cli_video_errors_are_one_line(tmp_path, capsys):
    from poselift.cli import main

    assert main(["video", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o.npz"),
                 "--checkpoint", str(write_checkpoint(tmp_path / "m.pt"))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "video file not found" in err


def test_webcam_window_without_display_is_a_clear_error(tmp_path, astronaut_video, monkeypatch, capsys):
    import sys

    from poselift.cli import main

    if not sys.platform.startswith("linux"):
        pytest.skip("display detection is Linux-specific")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["webcam", "--video", str(astronaut_video), "--checkpoint", str(write_checkpoint(tmp_path / "m.pt"))]) == 2
    assert "--no-window" in capsys.readouterr().err


def test_webcam_view_draws_2d_and_3d_panels(astronaut):
    from poselift.stream.render import panel_widths, render_frame
    from tests.stream_helpers import project, synthetic_poses

    bgr = cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR)
    pose = synthetic_poses(1)[0]
    kp = project(pose[None])[0]
    kp[3] = np.nan  # a missing joint is simply not drawn
    view = render_frame(bgr, kp, None, pose, label="30 FPS")
    left, right = panel_widths(512, 512)
    assert view.shape == (720, left + right, 3) and left + right >= 1280
    empty = render_frame(bgr, kp, None, None)
    assert (view[:, left:] != empty[:, left:]).any()  # the 3D panel has a skeleton on it


@pytest.mark.parametrize("verbose", [False, True])
def test_mediapipe_native_log_silenced_unless_verbose(tmp_path, astronaut_video, verbose):
    """MediaPipe/TFLite's C++ warnings (W0000 ... inference_feedback_manager, the XNNPACK
    INFO line) no longer reach the terminal; ``--verbose`` keeps them. ``--threads`` is used."""
    import subprocess
    import sys

    ckpt = write_checkpoint(tmp_path / "m.pt", causal=True, widths=(3,))
    cmd = [sys.executable, "-m", "poselift", "video", str(astronaut_video), "--out", str(tmp_path / "o.npz"),
           "--checkpoint", str(ckpt), "--device", "cpu", "--frames", "4", "--threads", "2"]
    r = subprocess.run(cmd + (["--verbose"] if verbose else []), capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    native = [line for line in r.stderr.splitlines()
              if line.startswith(("W0000", "I0000", "E0000", "INFO: Created TensorFlow Lite", "WARNING: All log"))]
    assert bool(native) == verbose, r.stderr
    assert "4 frames" in r.stdout
