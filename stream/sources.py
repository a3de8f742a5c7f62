"""Where 2D frames come from: camera or video file (OpenCV + MediaPipe Pose), or a
recorded keypoint file (npz replay). The ZeroMQ feed is read by :class:`stream.service.PoseServer`.

Every source yields :class:`stream.protocol.Frame2D` (pixels, its own layout), the same
type the wire decoder produces, so the lifting loop does not care where frames come from.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .protocol import Frame2D

DEMO_CLIP = Path(__file__).resolve().parent / "assets" / "demo_clip.npz"


# --------------------------------------------------------------------------- MediaPipe
@contextmanager
def quiet_native_stderr(enabled: bool = True) -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to /dev/null while the block runs.

    MediaPipe 0.10 and its TFLite log through C++ absl before ``absl::InitializeLog()``, so
    neither ``GLOG_minloglevel`` nor ``TF_CPP_MIN_LOG_LEVEL`` nor Python's absl.logging
    reaches them: every run printed ``W0000 ... inference_feedback_manager ...`` and
    ``landmark_projection_calculator ...`` warnings. Python exceptions are unaffected (they
    are raised, not printed, inside the block)."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class MediaPipeDetector:
    """2D keypoints from MediaPipe Pose (``mp.solutions.pose``, models inside the wheel).

    ``detect(rgb)`` returns (33, 2) pixels and (33,) visibility in [0, 1]; with no person
    found, all keypoints are NaN and all confidences 0. Only ``model_complexity=1`` is
    bundled with mediapipe 0.10.21 (0 and 2 try to download their model).

    ``verbose``: keep MediaPipe's and TFLite's native log lines (silenced by default, see
    :func:`quiet_native_stderr`).
    """

    def __init__(self, *, static_image_mode: bool = False, model_complexity: int = 1,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 verbose: bool = False) -> None:
        self.verbose = verbose
        if not verbose:  # older MediaPipe/TFLite builds honour these (set before the import)
            os.environ.setdefault("GLOG_minloglevel", "2")
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            import mediapipe as mp
        except ImportError as exc:  # pragma: no cover - mediapipe is a hard dependency
            raise RuntimeError(f"mediapipe is needed for camera/video input: {exc}") from None
        with quiet_native_stderr(not verbose):
            self._pose = mp.solutions.pose.Pose(
                static_image_mode=static_image_mode, model_complexity=model_complexity,
                smooth_landmarks=not static_image_mode, enable_segmentation=False,
                min_detection_confidence=min_detection_confidence, min_tracking_confidence=min_tracking_confidence)
            if not verbose:
                # The graph opens its calculators (and logs) on its own threads after Pose()
                # returns; one blank frame waits for that inside the quiet block. Nobody is
                # found in it, so no tracking or smoothing state is left behind.
                self._pose.process(np.zeros((64, 64, 3), np.uint8))

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = rgb.shape[:2]
        with quiet_native_stderr(not self.verbose):
            result = self._pose.process(np.ascontiguousarray(rgb))
        if result.pose_landmarks is None:
            return np.full((33, 2), np.nan), np.zeros(33)
        lm = result.pose_landmarks.landmark
        kp = np.array([[p.x * w, p.y * h] for p in lm], dtype=np.float64)
        conf = np.array([p.visibility for p in lm], dtype=np.float64)
        return kp, np.clip(conf, 0.0, 1.0)

    def close(self) -> None:
        with quiet_native_stderr(not self.verbose):
            self._pose.close()

    def __enter__(self) -> "MediaPipeDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------- camera/video
class VideoSource:
    """Frames from a camera index or a video file, with MediaPipe keypoints.

    Iterating yields ``(bgr_image, Frame2D)``; Frame2D is in the ``mediapipe33`` layout
    with the image size the capture reports. ``t`` is wall-clock time for a camera and
    ``frame / fps`` for a file.
    """

    def __init__(self, source: int | str, *, stream: str = "cam0", detector: MediaPipeDetector | None = None,
                 max_frames: int | None = None, verbose: bool = False) -> None:
        import cv2

        self.is_file = not isinstance(source, int)
        if self.is_file and not Path(source).is_file():
            raise FileNotFoundError(f"video file not found: {source}")
        self.cap = cv2.VideoCapture(str(source) if self.is_file else int(source))
        if not self.cap.isOpened():
            what = f"video file {source}" if self.is_file else f"camera {source}"
            raise RuntimeError(f"cannot open {what} (OpenCV could not read it)")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 30.0
        self.stream = stream
        self.detector = detector or MediaPipeDetector(verbose=verbose)
        self.max_frames = max_frames

    def __iter__(self) -> Iterator[tuple[np.ndarray, Frame2D]]:
        import cv2

        n = 0
        while self.max_frames is None or n < self.max_frames:
            ok, bgr = self.cap.read()
            if not ok:
                break
            t_recv = time.perf_counter()
            h, w = bgr.shape[:2]
            kp, conf = self.detector.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            t = n / self.fps if self.is_file else time.time()
            yield bgr, Frame2D(self.stream, n, t, "mediapipe33", w, h, kp, conf, t_recv)
            n += 1

    def close(self) -> None:
        self.cap.release()
        self.detector.close()


# ------------------------------------------------------------------------------ replay
@dataclass
class Clip:
    """A recorded 2D clip (the demo asset format).

    ``keypoints`` (T, 17, 2) float32 pixels, H36M-17; ``width``/``height`` pixels; ``fps``;
    ``poses3d`` (T, 17, 3) metres root-relative camera frame, or None; ``source`` text.
    """

    keypoints: np.ndarray
    width: int
    height: int
    fps: float
    poses3d: np.ndarray | None = None
    source: str = ""

    def frames(self, stream: str = "replay", *, realtime: bool = False, limit: int | None = None) -> Iterator[Frame2D]:
        """Yield the clip as Frame2D; ``realtime`` paces them at ``fps``."""
        t0 = time.perf_counter()
        n = len(self.keypoints) if limit is None else min(limit, len(self.keypoints))
        for i in range(n):
            if realtime:
                delay = t0 + i / self.fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            yield Frame2D(stream, i, i / self.fps, "h36m17", self.width, self.height,
                          self.keypoints[i].astype(np.float64), None, time.perf_counter())


def load_clip(path: str | Path) -> Clip:
    """Read a clip npz (keys ``keypoints``, ``width``, ``height``, ``fps``; optional
    ``poses3d``, ``source``); raises ValueError/FileNotFoundError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"keypoint clip not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:
        raise ValueError(f"{path}: not a readable npz file: {exc}") from None
    missing = [k for k in ("keypoints", "width", "height") if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)} (need keypoints (T,17,2) pixels, width, height)")
    if data["keypoints"].dtype.kind not in "iuf":
        raise ValueError(f"{path}: 'keypoints' must be numbers, got dtype {data['keypoints'].dtype}")
    kp = np.asarray(data["keypoints"], dtype=np.float32)
    if kp.ndim != 3 or kp.shape[1:] != (17, 2) or len(kp) == 0:
        raise ValueError(f"{path}: 'keypoints' must be (T, 17, 2) H36M-17 pixels, got {kp.shape}")
    bad = np.isinf(kp).any(-1) | (np.isnan(kp[..., 0]) != np.isnan(kp[..., 1]))  # NaN in both = missing joint
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise ValueError(f"{path}: 'keypoints' [frame {t}, joint {j}] is {kp[t, j].tolist()}: inf, or NaN in "
                         f"only one coordinate (NaN in both marks a missing joint)")
    poses3d = data.get("poses3d")
    if poses3d is not None:
        poses3d = np.asarray(poses3d, dtype=np.float32)
        if poses3d.shape != (len(kp), 17, 3):
            raise ValueError(f"{path}: 'poses3d' must be ({len(kp)}, 17, 3), got {poses3d.shape}")
        if not np.isfinite(poses3d).all():
            raise ValueError(f"{path}: 'poses3d' contains NaN or inf (frame {np.argwhere(~np.isfinite(poses3d))[0][0]})")

    def scalar(key: str) -> float:  # int() of an array or a string raised without naming the file
        v = np.asarray(data[key])
        if v.size != 1 or v.dtype.kind not in "iuf" or not np.isfinite(v).all():
            raise ValueError(f"{path}: '{key}' must be one finite number, got {v.dtype} {v.shape} {v.ravel()[:3]}")
        return float(v.reshape(()))

    width, height = scalar("width"), scalar("height")
    if not (1 <= width <= 65536 and 1 <= height <= 65536) or width % 1 or height % 1:
        raise ValueError(f"{path}: image size must be whole pixels in [1, 65536], got {width:g}x{height:g}")
    width, height = int(width), int(height)
    fps = scalar("fps") if "fps" in data else 30.0
    if fps <= 0:
        raise ValueError(f"{path}: 'fps' must be positive, got {fps:g}")
    source = str(data["source"]) if "source" in data else ""
    return Clip(kp, width, height, fps, poses3d, source)


def save_clip(path: str | Path, keypoints: np.ndarray, width: int, height: int, fps: float = 30.0,
              poses3d: np.ndarray | None = None, source: str = "") -> None:
    """Write a clip in the format :func:`load_clip` reads."""
    arrays = dict(keypoints=np.asarray(keypoints, np.float32), width=np.int64(width), height=np.int64(height),
                  fps=np.float64(fps), source=np.str_(source))
    if poses3d is not None:
        arrays["poses3d"] = np.asarray(poses3d, np.float32)
    np.savez_compressed(path, **arrays)
