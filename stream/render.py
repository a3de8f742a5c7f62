"""Renderings of lifted poses: the real video frame under its 2D skeleton, beside a 3D view.

One composed image per frame (:class:`FrameRenderer`, or :func:`render_frame` for a single
frame): on the left the video frame scaled to the panel height with the 2D keypoints drawn
on it (bones coloured by side, joints filled when detected, hollow rings and dashed bones
where a joint was filled in or had low confidence, a note listing the joints not detected);
on the right the 3D view of :mod:`stream.view3d` (floor grid, the body with its shadow, a
camera that follows the root, the root's trail). Everything is drawn with OpenCV, a few
milliseconds per frame, so ``webcam`` uses the same renderer live.

Output size: the panels are ``height`` pixels tall (720 by default); the video panel keeps
the frame's aspect ratio and the 3D panel is at least square and widens until the whole
image is at least 1280 wide (640x360 video: 1280 + 720 = 2000 x 720; portrait 540x960:
405 + 875 = 1280 x 720).

Files: :class:`VideoRenderer` writes ``.mp4`` (H.264 through an ``ffmpeg`` on the PATH when
there is one, else OpenCV's MPEG-4 part 2 ``mp4v``), ``.avi`` (MJPG) or ``.gif`` (Pillow).
:func:`render_video` re-reads a video's frames to draw under its keypoints;
:func:`render_animation` draws keypoints without a video (the demo clip) on a dark background.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from poselift.model.skeleton import H36M_JOINT_NAMES, H36M_LEFT, H36M_PARENTS

from .view3d import BONES, SkeletonView3D, ViewOptions, _pt, _text, joint_color

LOW_CONFIDENCE = 0.5  # a joint below this confidence is drawn as uncertain (a hollow ring)
MIN_WIDTH = 1280
DARK_BGR = (38, 34, 32)

_BONES = [(j, p) for j, p in enumerate(H36M_PARENTS) if p >= 0]


def _bone_color(j: int) -> str:  # matplotlib colours for LivePlot
    return "tab:red" if j in H36M_LEFT else ("tab:blue" if j in (1, 2, 3, 14, 15, 16) else "0.2")


# ------------------------------------------------------------------------ composition
def panel_widths(frame_width: int, frame_height: int, height: int = 720) -> tuple[int, int]:
    """(video panel, 3D panel) widths for panels ``height`` tall: the video keeps its aspect
    (clamped to 9:16 .. 16:9, the rest letterboxed); the 3D panel is at least square and
    fills the image to at least :data:`MIN_WIDTH`. Both even (video codecs want even sizes)."""
    aspect = float(np.clip(frame_width / max(frame_height, 1), 9 / 16, 16 / 9))
    left = 2 * int(round(height * aspect / 2))
    right = max(height, MIN_WIDTH - left)
    return left, 2 * ((right + 1) // 2)


def _dashed(img: np.ndarray, a: tuple[int, int], b: tuple[int, int], color, thickness: int, dash: int) -> None:
    import cv2

    length = float(np.hypot(b[0] - a[0], b[1] - a[1]))
    n = max(1, int(length // (2 * dash)))
    for i in range(n):
        t0, t1 = (2 * i) / (2 * n), (2 * i + 1) / (2 * n)
        p = (int(a[0] + (b[0] - a[0]) * t0), int(a[1] + (b[1] - a[1]) * t0))
        q = (int(a[0] + (b[0] - a[0]) * t1), int(a[1] + (b[1] - a[1]) * t1))
        cv2.line(img, p, q, color, thickness, cv2.LINE_AA)


def draw_skeleton_2d(img: np.ndarray, keypoints: np.ndarray, confident: np.ndarray, scale: float = 1.0) -> list[int]:
    """Draw (17, 2) pixel keypoints on ``img`` in place; returns the joints that are missing (NaN).

    Joints that are ``confident`` are filled discs and their bones solid; the others (low
    confidence, or filled in by the gap filler) are hollow rings and their bones dashed and
    thinner, so the viewer sees what the model had to guess."""
    import cv2

    kp = np.asarray(keypoints, dtype=np.float64)
    present = np.isfinite(kp).all(axis=1)
    sure = present & np.asarray(confident, dtype=bool)
    pts = [_pt(q) if ok else (0, 0) for q, ok in zip(kp.tolist(), present.tolist())]
    t = max(2, int(round(4 * scale)))
    r = max(3, int(round(5 * scale)))
    for j, p in BONES:
        if not (present[j] and present[p]):
            continue
        a, b = pts[j], pts[p]
        if sure[j] and sure[p]:
            cv2.line(img, a, b, (15, 15, 15), t + 3, cv2.LINE_AA)
            cv2.line(img, a, b, joint_color(j), t, cv2.LINE_AA)
            continue
        # Dashed, and stopping at the uncertain joint's ring so the ring stays hollow.
        d = np.subtract(b, a, dtype=np.float64)
        length = float(np.hypot(*d))
        if length <= 2 * (r + 3):
            continue
        u = d / length
        a = _pt(np.add(a, u * (r + 3))) if not sure[j] else a
        b = _pt(np.subtract(b, u * (r + 3))) if not sure[p] else b
        _dashed(img, a, b, (15, 15, 15), max(2, t // 2) + 2, max(4, int(8 * scale)))
        _dashed(img, a, b, joint_color(j), max(2, t // 2), max(4, int(8 * scale)))
    for j in np.nonzero(present)[0]:
        c = pts[j]
        if sure[j]:
            cv2.circle(img, c, r + 1, (15, 15, 15), -1, cv2.LINE_AA)
            cv2.circle(img, c, r, joint_color(int(j)), -1, cv2.LINE_AA)
        else:
            cv2.circle(img, c, r + 1, (15, 15, 15), 3, cv2.LINE_AA)
            cv2.circle(img, c, r + 1, (255, 255, 255), 1, cv2.LINE_AA)
    return [int(j) for j in np.nonzero(~present)[0]]


def _short(j: int) -> str:
    return H36M_JOINT_NAMES[j].replace("left_", "l.").replace("right_", "r.")


class FrameRenderer:
    """Composes one output image per frame; keeps the 3D view's state (follow camera, floor,
    root trail) between calls, so use one renderer per stream and call it in frame order.

    ``height``: panel height in pixels (720 gives at least 1280x720 in all)."""

    def __init__(self, height: int = 720, view: ViewOptions | None = None) -> None:
        if height < 120:
            raise ValueError("height must be at least 120 pixels")
        self.height = int(height)
        self.view = SkeletonView3D(view)
        self._canvas: np.ndarray | None = None

    def render(self, frame_bgr: np.ndarray | None, keypoints_px: np.ndarray | None,
               confidence: np.ndarray | None = None, joints3d: np.ndarray | None = None,
               root: np.ndarray | None = None, *, label: str = "", label3d: str = "",
               frame_size: tuple[int, int] | None = None, ghost: np.ndarray | None = None) -> np.ndarray:
        """One composed BGR image (H, W, 3) uint8.

        ``frame_bgr``: the video frame (H0, W0, 3), or None for a dark background of
        ``frame_size`` (width, height). ``keypoints_px`` (17, 2) pixels of that frame, NaN =
        missing (None: nothing drawn). ``confidence`` (17,) in [0, 1] or a bool mask of the
        joints that were really detected (None: all). ``joints3d`` (17, 3) metres, camera
        frame (the consistent skeleton, root-relative), None or NaN when there is no pose;
        ``root`` (3,) camera metres, where the joints' origin is (a trajectory), or None.
        ``ghost``: a second (17, 3) pose drawn thin and grey at the same root (ground truth).
        The returned array is reused by the next call: copy it to keep it."""
        import cv2

        if frame_bgr is not None:
            fh, fw = frame_bgr.shape[:2]
        elif frame_size is not None:
            fw, fh = frame_size
        else:
            raise ValueError("give a frame or its frame_size")
        h = self.height
        lw, rw = panel_widths(fw, fh, h)
        if self._canvas is None or self._canvas.shape != (h, lw + rw, 3):
            self._canvas = np.zeros((h, lw + rw, 3), np.uint8)
        canvas = self._canvas
        left = canvas[:, :lw]
        s = min(lw / fw, h / fh)  # fit the frame, letterboxed when its aspect was clamped
        sw, sh = max(1, int(round(fw * s))), max(1, int(round(fh * s)))
        ox, oy = (lw - sw) // 2, (h - sh) // 2
        left[:] = 0 if frame_bgr is not None else DARK_BGR
        if frame_bgr is not None:
            interp = cv2.INTER_AREA if s < 0.5 else cv2.INTER_LINEAR  # AREA is slow; needed only below 1/2
            left[oy:oy + sh, ox:ox + sw] = cv2.resize(frame_bgr, (sw, sh), interpolation=interp)
        scale = h / 720.0
        missing: list[int] = []
        if keypoints_px is not None:
            kp = np.asarray(keypoints_px, dtype=np.float64) * s + (ox, oy)
            if confidence is None:
                sure = np.ones(17, bool)
            else:
                conf = np.asarray(confidence)
                sure = conf.astype(bool) if conf.dtype == bool else conf >= LOW_CONFIDENCE
            missing = draw_skeleton_2d(left, kp, sure, scale)
        if label:
            _text(left, label, (int(12 * scale), int(30 * scale)), 0.7 * scale, (255, 255, 255))
        if keypoints_px is not None:
            if len(missing) == 17:
                note = "no person detected"
            else:
                note = "ring/dashed: filled in or low confidence"
                if missing:
                    names = " ".join(_short(j) for j in missing[:6]) + (" ..." if len(missing) > 6 else "")
                    note += f"; missing: {names}"
            _text(left, note, (int(12 * scale), h - int(14 * scale)), 0.5 * scale, (230, 230, 230))
        self.view.draw(canvas[:, lw:], joints3d, root, ghost=ghost, label=label3d)
        cv2.line(canvas, (lw, 0), (lw, h), (90, 90, 90), 1)
        return canvas


def render_frame(frame_bgr: np.ndarray | None, keypoints_px: np.ndarray | None,
                 confidence: np.ndarray | None = None, joints3d: np.ndarray | None = None,
                 root: np.ndarray | None = None, *, label: str = "", height: int = 720,
                 frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """A single composed frame (no history: no trail, the camera is centred on this pose).
    See :meth:`FrameRenderer.render` for the arguments; returns a new (H, W, 3) uint8 array."""
    return FrameRenderer(height).render(frame_bgr, keypoints_px, confidence, joints3d, root, label=label,
                                        frame_size=frame_size).copy()


# ---------------------------------------------------------------------------- writers
class VideoRenderer:
    """Writes BGR frames of one size to ``.mp4``, ``.avi`` or ``.gif``.

    ``.mp4``: H.264 through ``ffmpeg`` when it is on the PATH (plays everywhere, browsers
    included), else OpenCV's ``mp4v`` (no extra dependency; plays in VLC, mpv, most players).
    ``size`` (width, height) is taken from the first frame when not given. Use as a context
    manager, or call :meth:`close`; ``frames`` counts what was written."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int] | None = None, *,
                 use_ffmpeg: bool | None = None) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in (".mp4", ".avi", ".gif"):
            raise ValueError(f"rendering must end in .mp4, .avi or .gif, got {self.path.name}")
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 30.0
        self.size = size
        self.use_ffmpeg = (shutil.which("ffmpeg") is not None) if use_ffmpeg is None else use_ffmpeg
        self.frames = 0
        self._writer = None
        self._proc: subprocess.Popen | None = None
        self._gif: list = []
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _open(self, size: tuple[int, int]) -> None:
        import cv2

        w, h = size
        suffix = self.path.suffix.lower()
        if suffix == ".gif":
            return
        if suffix == ".mp4" and self.use_ffmpeg:
            cmd = ["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
                   "-r", f"{self.fps:g}", "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "20",
                   "-movflags", "+faststart", str(self.path)]
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
            return
        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if suffix == ".mp4" else "MJPG"))
        self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (w, h))
        if not self._writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {self.path} (no {suffix} encoder in this build); "
                               f"try .avi or .gif")

    def write(self, frame_bgr: np.ndarray) -> None:
        h, w = frame_bgr.shape[:2]
        if self.frames == 0 and self._writer is None and self._proc is None and not self._gif:
            self.size = self.size or (w, h)
            self._open(self.size)
        if (w, h) != tuple(self.size):
            raise ValueError(f"frame of {w}x{h} for a {self.size[0]}x{self.size[1]} rendering")
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.write(np.ascontiguousarray(frame_bgr).tobytes())
        elif self._writer is not None:
            self._writer.write(np.ascontiguousarray(frame_bgr))
        else:
            from PIL import Image

            rgb = np.ascontiguousarray(frame_bgr[..., ::-1])
            # Fast octree: a quarter of the time of an adaptive palette at 2000x720 (17 vs 66 ms).
            self._gif.append(Image.fromarray(rgb).quantize(colors=128, method=Image.Quantize.FASTOCTREE))
        self.frames += 1

    def close(self) -> Path:
        """Finish the file; returns its path."""
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            if self._proc.wait() != 0:
                raise RuntimeError(f"ffmpeg failed to write {self.path}")
            self._proc = None
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._gif:
            self._gif[0].save(self.path, save_all=True, append_images=self._gif[1:],
                              duration=int(round(1000 / self.fps)), loop=0, optimize=False)
            self._gif = []
        return self.path

    def __enter__(self) -> "VideoRenderer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -------------------------------------------------------------------------- sequences
def pose_arrays(poses: list, width: int, height: int, keypoints2d: np.ndarray | None = None) -> dict[str, np.ndarray | None]:
    """Per-frame arrays for :func:`render_sequence` from the loop's poses in frame order
    (:class:`~stream.engine.PoseOut` or None for a frame without one): ``keypoints2d`` the
    model's filled input in pixels (else the given detections), ``confidence`` False where a
    joint was filled in, ``joints3d`` as the loop delivered them (the motion stage's
    consistent joints unless it was turned off; NaN where not valid), ``root`` (or None
    when no pose has one)."""
    from poselift.model.normalization import denormalize_screen

    T = len(poses)
    kp = np.full((T, 17, 2), np.nan) if keypoints2d is None else np.array(keypoints2d, dtype=np.float64)[:T]
    sure = np.ones((T, 17), bool)
    joints = np.full((T, 17, 3), np.nan)
    valid = np.zeros(T, bool)
    root = np.full((T, 3), np.nan)
    for t, p in enumerate(poses):
        if p is None:
            continue
        if p.input2d is not None:
            kp[t] = denormalize_screen(p.input2d, width, height)
        sure[t, list(p.filled)] = False
        valid[t] = bool(p.valid) and np.isfinite(p.joints).all()
        if valid[t]:
            joints[t] = p.joints
        if p.root is not None:
            root[t] = p.root
    has_root = np.isfinite(root).all(axis=1).any()
    return {"keypoints2d": kp, "confidence": sure, "joints3d": joints, "root": root if has_root else None}


def _video_frames(path: str | Path) -> Iterator[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield bgr
    finally:
        cap.release()


def render_sequence(out: str | Path, frames: Iterable[np.ndarray | None], keypoints2d: np.ndarray,
                    joints3d: np.ndarray | None, *, fps: float, confidence: np.ndarray | None = None,
                    root: np.ndarray | None = None, ghost: np.ndarray | None = None,
                    indices: np.ndarray | None = None, frame_size: tuple[int, int] | None = None,
                    title: str = "", height: int = 720) -> tuple[Path, int]:
    """Render frames ``indices`` (default all) of a sequence; returns (path, frames written).

    ``frames`` yields the video frames in order from frame 0 (None items, or an exhausted
    iterator, draw a dark background of ``frame_size``); per-frame arrays: ``keypoints2d``
    (T, 17, 2) pixels, ``confidence`` (T, 17), ``joints3d``/``ghost`` (T, 17, 3) with NaN
    where there is no pose, ``root`` (T, 3). A frame index past the video's end stops."""
    kp = np.asarray(keypoints2d, dtype=np.float64)
    T = len(kp)
    wanted = np.arange(T) if indices is None else np.asarray(indices)
    keep = set(int(i) for i in wanted)
    renderer = FrameRenderer(height)
    writer = VideoRenderer(out, fps)
    it = iter(frames)
    try:
        for i in range(int(wanted.max()) + 1 if len(wanted) else 0):
            try:
                bgr = next(it)
            except StopIteration:
                if frame_size is None:
                    break
                bgr = None
            if i not in keep:
                continue
            size = frame_size if bgr is None else None
            j3 = None if joints3d is None else joints3d[i]
            r = None if root is None else root[i]
            image = renderer.render(bgr, kp[i], None if confidence is None else confidence[i], j3, r,
                                    label=f"{title}  frame {i}".strip(), frame_size=size,
                                    ghost=None if ghost is None else ghost[i])
            writer.write(image)
    finally:
        path = writer.close()
    return path, writer.frames


def render_video(out: str | Path, video: str | Path, keypoints2d: np.ndarray, joints3d: np.ndarray, *,
                 fps: float, confidence: np.ndarray | None = None, root: np.ndarray | None = None,
                 title: str = "", height: int = 720) -> tuple[Path, int]:
    """Re-read ``video`` and draw every frame under its keypoints beside the 3D view
    (arrays as in :func:`render_sequence`); returns (path, frames written)."""
    return render_sequence(out, _video_frames(video), keypoints2d, joints3d, fps=fps, confidence=confidence,
                           root=root, title=title, height=height)


def render_animation(out: str | Path, keypoints2d: np.ndarray, poses3d: np.ndarray, *, width: int, height: int,
                     fps: float = 30.0, ground_truth: np.ndarray | None = None, max_frames: int | None = 150,
                     title: str = "", root: np.ndarray | None = None, confidence: np.ndarray | None = None,
                     panel_height: int = 720) -> Path:
    """Keypoints without a video (a replayed 2D clip): a dark ``width`` x ``height`` background
    under the 2D skeleton, same layout as :func:`render_video`. ``max_frames``: at most this
    many frames, evenly subsampled (the playback rate is lowered to keep real time).
    Returns the written path."""
    kp = np.asarray(keypoints2d, dtype=np.float64)
    T = min(len(kp), len(poses3d))
    if T == 0:
        raise ValueError("nothing to render: no frames")
    step = max(1, int(np.ceil(T / max_frames))) if max_frames else 1
    idx = np.arange(0, T, step)
    path, _ = render_sequence(out, iter(()), kp[:T], np.asarray(poses3d, dtype=np.float64)[:T],
                              fps=max(1.0, fps / step), confidence=confidence, root=root, ghost=ground_truth,
                              indices=idx, frame_size=(int(width), int(height)), title=title,
                              height=panel_height)
    return path


class LivePlot:
    """A live 3D skeleton view for ``poselift listen --plot`` (one figure, redrawn per pose).

    ``update(joints)`` takes (17, 3) metres in the camera frame (drawn with up = -y).
    ``interactive=False`` draws off-screen (tests); ``max_fps`` limits redraws.
    """

    def __init__(self, *, interactive: bool = True, max_fps: float = 30.0) -> None:
        import matplotlib

        if not interactive:
            matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        self.plt = plt
        self.interactive = interactive
        self.min_dt = 1.0 / max_fps
        self.last = 0.0
        if interactive:
            plt.ion()
        self.fig = plt.figure(figsize=(5, 5))
        self.ax = self.fig.add_subplot(projection="3d")
        self.ax.set_xlim(-1, 1)
        self.ax.set_ylim(-1, 1)
        self.ax.set_zlim(-1, 1)
        self.ax.set_xlabel("x")
        self.ax.set_ylabel("z (depth)")
        self.ax.set_zlabel("-y (up)")
        self.ax.view_init(elev=15.0, azim=-70)
        self.lines = [self.ax.plot([], [], [], color=_bone_color(j), lw=2)[0] for j, _ in _BONES]
        self.title = self.ax.set_title("")

    def update(self, joints: np.ndarray, label: str = "") -> bool:
        """Redraw with a new pose; returns False when the window was closed."""
        import time

        now = time.monotonic()
        if now - self.last < self.min_dt:
            return True
        self.last = now
        pose = np.asarray(joints, dtype=np.float64)
        for line, (j, p) in zip(self.lines, _BONES):
            line.set_data_3d([pose[j, 0], pose[p, 0]], [pose[j, 2], pose[p, 2]], [-pose[j, 1], -pose[p, 1]])
        self.title.set_text(label)
        if self.interactive:
            if not self.plt.fignum_exists(self.fig.number):
                return False
            self.plt.pause(0.001)
        else:
            self.fig.canvas.draw()
        return True

    def close(self) -> None:
        self.plt.close(self.fig)
