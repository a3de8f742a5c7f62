"""Renderings show what a user wants to see: the real video frame under the 2D skeleton, a
readable 3D view (at least 1280x720 in all) that follows a moving root, for ``video
--render``, the demo animation and the ``webcam`` window alike."""

import numpy as np
import pytest

from poselift.model.skeleton import H36M_PARENTS
from poselift.stream.render import (FrameRenderer, VideoRenderer, draw_skeleton_2d, panel_widths, render_frame,
                                    render_sequence)
from poselift.stream.view3d import BONES, joint_color
from tests.stream_helpers import synthetic_poses

cv2 = pytest.importorskip("cv2")

TRAIL_BGR = np.array([0, 215, 255])  # the newest trail segment's colour (view3d)


def textured_frame(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A frame of 16x16 blocks of random colour: upscaling keeps block interiors exact."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(30, 226, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)[:h, :w])


def standing_keypoints(w: int, h: int, pose: np.ndarray) -> np.ndarray:
    """(17, 2) pixels: the pose seen from the front, filling half the frame's height."""
    s = 0.5 * h / 1.7
    return np.stack([w / 2 + s * pose[:, 0], h * 0.45 + s * pose[:, 1]], axis=1)


@pytest.mark.parametrize("size", [(640, 480), (640, 360), (540, 960), (1920, 1080), (100, 100), (2000, 200)])
def test_output_is_at_least_1280x720(size):
    w, h = size
    img = render_frame(textured_frame(w, h), None, joints3d=synthetic_poses(1)[0])
    assert img.shape[0] >= 720 and img.shape[1] >= 1280 and img.dtype == np.uint8
    left, right = panel_widths(w, h)
    assert img.shape[1] == left + right and left % 2 == 0 and right % 2 == 0 and right >= 720
    assert render_frame(None, None, frame_size=(w, h)).shape == img.shape  # the demo's dark background


def _left_panel(w: int, h: int, kp, conf=None):
    frame = textured_frame(w, h)
    img = render_frame(frame, kp, conf, synthetic_poses(1)[0])
    left = panel_widths(w, h)[0]
    expected = cv2.resize(frame, (left, 720), interpolation=cv2.INTER_LINEAR)
    return img[:, :left], expected


def test_video_frame_is_under_the_skeleton():
    """Away from the skeleton and the two text lines, the left panel is the video frame."""
    w, h = 320, 180  # exactly a quarter of 1280x720
    pose = synthetic_poses(1)[0]
    panel, expected = _left_panel(w, h, standing_keypoints(w, h, pose))
    body = np.zeros(panel.shape[:2], bool)
    body[:, 500:780] = True  # the skeleton stands in the middle
    body[:50] = body[-40:] = True  # label and note
    same = (panel == expected).all(axis=-1)
    assert same[~body].mean() > 0.99
    assert not same[body].all()  # and something was drawn over it


def test_bones_are_drawn_at_the_keypoints():
    w, h = 320, 180
    pose = synthetic_poses(1)[0]
    kp = standing_keypoints(w, h, pose)
    panel, expected = _left_panel(w, h, kp)
    s = 1280 / w
    for j, p in BONES:
        mid = (kp[j] + kp[p]) / 2 * s
        x, y = int(round(mid[0])), int(round(mid[1]))
        got = panel[y, x].astype(int)
        assert (got != expected[y, x]).any(), f"bone {j}-{p} not drawn"
        assert np.abs(got - joint_color(j)).max() < 40, f"bone {j}-{p} has colour {got}"


def test_uncertain_and_missing_joints_are_shown_as_such():
    w, h = 320, 180
    pose = synthetic_poses(1)[0]
    kp = standing_keypoints(w, h, pose)
    kp[16] = np.nan  # right wrist missing
    conf = np.ones(17)
    conf[13] = 0.2  # left wrist uncertain
    panel, expected = _left_panel(w, h, kp, conf)
    s = 1280 / w
    sure, weak = (kp[12] * s).round().astype(int), (kp[13] * s).round().astype(int)
    assert np.abs(panel[sure[1], sure[0]].astype(int) - joint_color(12)).max() < 40  # a filled disc
    assert (panel[weak[1], weak[0]] == expected[weak[1], weak[0]]).all()  # a ring: the frame shows inside
    img = np.zeros((180, 320, 3), np.uint8)
    assert draw_skeleton_2d(img, kp, conf >= 0.5) == [16]


def test_3d_panel_follows_a_moving_root():
    """A root that moves shows: the grid slides under the body and a trail is left; a still
    root leaves no trail and a still picture."""
    pose = synthetic_poses(1)[0]
    frame = textured_frame(640, 480)
    still, moving = FrameRenderer(), FrameRenderer()
    for t in range(40):
        a = still.render(frame, None, None, pose, np.array([0.0, 0.0, 4.0])).copy()
        b = moving.render(frame, None, None, pose, np.array([0.04 * t, 0.0, 4.0 - 0.02 * t])).copy()
    left = panel_widths(640, 480)[0]
    a3, b3 = a[:, left:].astype(int), b[:, left:].astype(int)
    trail = lambda img: (np.abs(img - TRAIL_BGR).max(axis=-1) < 30).sum()  # noqa: E731
    assert trail(b3) > 60 and trail(a3) == 0
    assert (np.abs(a3 - b3).max(axis=-1) > 30).mean() > 0.01
    # The still root converged: the next frame is the same picture.
    again = still.render(frame, None, None, pose, np.array([0.0, 0.0, 4.0]))[:, left:].astype(int)
    assert np.abs(again - a3).max() <= 1


def _pitched(poses: np.ndarray, degrees: float, axis: str = "x") -> np.ndarray:
    """Poses (camera frame) as a camera pitched (x) or rolled (z) by ``degrees`` sees them."""
    from scipy.spatial.transform import Rotation

    return poses @ Rotation.from_euler(axis, degrees, degrees=True).as_matrix().T


@pytest.mark.parametrize("degrees,axis", [(25.0, "x"), (-20.0, "x"), (15.0, "z")])
def test_3d_view_levels_a_tilted_camera(degrees, axis):
    """An upright person seen by a pitched or rolled camera leans in the camera's frame; the
    3D view estimates up from the torso and stands the body (and its floor and trail) upright."""
    from poselift.model.rig import camera_to_rig
    from poselift.stream.view3d import SkeletonView3D, ViewOptions

    poses = synthetic_poses(90)
    tilted = _pitched(poses, degrees, axis)
    view, plain = SkeletonView3D(), SkeletonView3D(ViewOptions(level=False))
    panel = np.zeros((360, 640, 3), np.uint8)
    for p in tilted:
        view.draw(panel, p, np.array([0.0, 0.0, 4.0]))
        plain.draw(panel, p, np.array([0.0, 0.0, 4.0]))
    torso = camera_to_rig(tilted[-1])
    torso = torso[8] - torso[0]
    upright = view._level @ torso
    tilt = lambda v: np.degrees(np.arccos(v[1] / np.linalg.norm(v)))  # noqa: E731
    truth = camera_to_rig(poses[-1])
    assert abs(tilt(upright) - tilt(truth[8] - truth[0])) < 1.0  # as upright as the untilted body
    assert tilt(torso) > abs(degrees) - 2.0  # ...which the camera saw leaning
    np.testing.assert_allclose(plain._level, np.eye(3))  # level=False: the camera's own up


def test_3d_view_does_not_trust_a_wild_up_estimate():
    """A body upside down (or a camera on its side) is beyond the correction's range: the
    view keeps the camera's up instead of turning the world over."""
    from poselift.stream.view3d import SkeletonView3D

    view = SkeletonView3D()
    panel = np.zeros((360, 640, 3), np.uint8)
    for p in _pitched(synthetic_poses(30), 90.0, "z"):
        view.draw(panel, p, None)
    np.testing.assert_allclose(view._level, np.eye(3))


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_3d_view_keeps_the_whole_body_in_view(scale):
    """However large the body (a poor lift can give 4 m limbs), no joint leaves the panel."""
    pose = synthetic_poses(1)[0] * scale
    pose[[13, 16], 0] *= 3  # hands spread wide
    renderer = FrameRenderer()
    for _ in range(5):
        img = renderer.render(None, None, None, pose, None, frame_size=(640, 480))
    panel = img[:, panel_widths(640, 480)[0]:].astype(int)
    near = lambda c: np.abs(panel - np.array(c)).max(-1) < 40  # noqa: E731
    body = near(joint_color(1)) | near(joint_color(4)) | near(joint_color(0))
    assert body.sum() > 500
    border = np.ones(body.shape, bool)
    border[5:-5, 5:-5] = False
    assert not (body & border).any()
    rows, cols = np.nonzero(body)
    assert rows.max() - rows.min() > 0.3 * len(panel)  # and it is not tiny


@pytest.mark.parametrize("case", ["none", "nan", "inf_root", "nan_keypoints", "far_keypoints", "bad_shape",
                                  "root_jumps_far"])
def test_invalid_poses_render_without_crashing(case):
    pose = synthetic_poses(1)[0]
    kp = standing_keypoints(640, 480, pose)
    root = np.array([0.0, 0.0, 4.0])
    joints = pose
    if case == "none":
        joints = None
    elif case == "nan":
        joints = np.full((17, 3), np.nan)
    elif case == "inf_root":
        root = np.array([np.inf, 0, 1])
    elif case == "nan_keypoints":
        kp = np.full((17, 2), np.nan)
    elif case == "far_keypoints":
        kp = kp * 1e12
    elif case == "bad_shape":
        joints = pose[:16]
    renderer = FrameRenderer(height=240)
    if case == "root_jumps_far":  # a body far behind where the camera has settled (a bad root)
        for _ in range(30):
            renderer.render(textured_frame(640, 480), kp, None, pose, root)
        root = np.array([0.0, 0.0, -50.0])
    img = renderer.render(textured_frame(640, 480), kp, None, joints, root, label="x")
    left, right = panel_widths(640, 480, 240)
    assert img.shape == (240, left + right, 3)
    if case == "root_jumps_far":  # the camera backed off at once: the body is still in view
        colours = np.abs(img[:, left:, None].astype(int) - np.array([joint_color(1), joint_color(4)])).max(-1)
        assert (colours < 30).any(axis=(0, 1)).all()


def _read(path):
    """Every frame of a video file, read back with OpenCV."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".gif"])
def test_video_renderer_writes_readable_files(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    frames = [np.full((720, 1280, 3), 40 * i, np.uint8) for i in range(5)]
    with VideoRenderer(path, 25.0, use_ffmpeg=False) as writer:
        for f in frames:
            writer.write(f)
    assert writer.frames == 5
    if suffix == ".gif":
        from PIL import Image

        with Image.open(path) as im:
            assert im.n_frames == 5 and im.size == (1280, 720)
        return
    got = _read(path)
    assert len(got) == 5 and got[0].shape == (720, 1280, 3)
    assert abs(float(got[3].mean()) - 120) < 8  # the frames, in order
    with pytest.raises(ValueError):
        VideoRenderer(tmp_path / "x.png", 25.0)


def test_render_sequence_subsamples_and_pads_a_short_video(tmp_path):
    """The demo path: no video (dark frames of frame_size), every 3rd frame."""
    poses = synthetic_poses(10)
    kp = np.stack([standing_keypoints(640, 480, p) for p in poses])
    path, n = render_sequence(tmp_path / "a.gif", iter(()), kp, poses, fps=30, indices=np.arange(0, 10, 3),
                              frame_size=(640, 480))
    assert n == 4 and path.exists()


# ------------------------------------------------------------------ the commands, end to end
@pytest.fixture(scope="module")
def person_video(tmp_path_factory):
    """A short clip of a real photo of a person (skimage's astronaut), drifting sideways."""
    skimage_data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("video") / "astronaut.avi"
    bgr = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (512, 512))
    assert writer.isOpened()
    frames = [np.roll(bgr, 3 * i, axis=1) for i in range(6)]
    for f in frames:
        writer.write(f)
    writer.release()
    return path, frames


def test_video_render_end_to_end(tmp_path, person_video, capsys):
    from poselift.cli import main
    from tests.stream_helpers import write_checkpoint

    path, frames = person_video
    ckpt = write_checkpoint(tmp_path / "m.pt", causal=True, widths=(3,))
    out = tmp_path / "r.mp4"
    assert main(["video", str(path), "--out", str(tmp_path / "o.npz"), "--render", str(out),
                 "--checkpoint", str(ckpt), "--device", "cpu"]) == 0
    assert "rendering:" in capsys.readouterr().out
    got = _read(out)
    assert len(got) == len(frames)
    h, w = got[0].shape[:2]
    assert h >= 720 and w >= 1280
    left = panel_widths(512, 512)[0]
    # The video is under the skeleton: the top-left corner (sky and space suit, no bones,
    # below the label) matches the source frame, and tells frame 0 from frame 5.
    for i in (0, 5):
        src = cv2.resize(frames[i], (left, 720)).astype(int)
        diff = np.abs(got[i][60:300, :200].astype(int) - src[60:300, :200]).mean()
        other = np.abs(got[i][60:300, :200].astype(int)
                       - cv2.resize(frames[5 - i], (left, 720)).astype(int)[60:300, :200]).mean()
        assert diff < 8 and other > diff + 4
    with np.load(tmp_path / "o.npz") as z:
        assert len(z["poses3d"]) == len(frames)


def test_video_render_bad_suffix_is_a_one_line_error(tmp_path, person_video, capsys):
    from poselift.cli import main
    from tests.stream_helpers import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "m.pt", causal=True, widths=(3,))
    assert main(["video", str(person_video[0]), "--out", str(tmp_path / "o.npz"), "--render",
                 str(tmp_path / "r.png"), "--checkpoint", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--render must end in .mp4, .avi or .gif" in err and "\n" not in err


def test_webcam_window_shows_the_composed_view(tmp_path, person_video, monkeypatch):
    """The window gets the same view as ``video --render`` (OpenCV's window calls faked)."""
    from poselift.stream.apps import run_webcam
    from tests.stream_helpers import write_checkpoint

    shown = []
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(cv2, "namedWindow", lambda *a, **k: None)
    monkeypatch.setattr(cv2, "imshow", lambda name, img: shown.append(img.copy()))
    monkeypatch.setattr(cv2, "waitKey", lambda *a: -1)
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    path, frames = person_video
    res = run_webcam(video=str(path), checkpoint=write_checkpoint(tmp_path / "m.pt"), window=True, device="cpu")
    assert res["frames"] == len(frames) == len(shown)
    h, w = shown[-1].shape[:2]
    assert h >= 720 and w >= 1280
    left = panel_widths(512, 512)[0]
    src = cv2.resize(frames[-1], (left, 720)).astype(int)
    assert np.abs(shown[-1][60:300, :200].astype(int) - src[60:300, :200]).mean() < 3
    assert (shown[-1][:, left:] != shown[0][:, left:]).any()


def test_parents_and_bones_agree():
    assert len(BONES) == 16 and all(H36M_PARENTS[j] == p for j, p in BONES)
