"""Real-video quality of ``poselift video``: limb-length stability, jitter and the root.

There is no 3D ground truth for real footage, so this measures what can be judged without
it, per video and per model (``--lookahead``, ``--flip-tta``), on the output a user gets:

* limb-length CV (std / mean over frames of thighs, shins, upper arms, forearms, averaged)
  of the published joints and of the model's own (``joints_raw``);
* jitter: mean ‖second difference‖ of the joints per frame over the mean limb length. Real
  motion counts too, so the same figure after a Gaussian filter over time (sigma 2 frames,
  far more smoothing than any live filter would apply) is given as a floor: what is left of
  the jitter once nearly all frame-to-frame noise is gone is mostly the motion itself;
* the root's depth: median and 5-95 % range over the valid frames (metres, default 60 degree
  field of view), and its mean frame-to-frame change.

``python -m poselift.bench.real_video [VIDEOS...] [--json OUT] [--md OUT]``; by default the
videos in ``../shared/data/video`` beside the repository.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from poselift.model.body import joint_jitter, limb_length_cv

DEFAULT_VIDEO_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "video"
#: (label, --lookahead, --flip-tta) of each row: the offline default (full context, flip-averaged),
#: the same without flip averaging, and the live model as a live stream publishes it.
MODELS: tuple[tuple[str, int, bool], ...] = (("video default (full context, flip-averaged)", 121, True),
                                             ("full context, --no-flip-tta", 121, False),
                                             ("causal as live, --lookahead 0 --no-flip-tta", 0, False))
FLOOR_SIGMA_FRAMES = 2.0


def quality(arrays: dict[str, Any]) -> dict[str, float]:
    """The figures of one ``video`` npz (see the module docstring)."""
    from scipy.ndimage import gaussian_filter1d

    valid = np.asarray(arrays["valid"], dtype=bool)
    poses = np.asarray(arrays["poses3d"], dtype=np.float64)
    raw = np.asarray(arrays["joints_raw"], dtype=np.float64)
    depth = np.asarray(arrays["trajectory"], dtype=np.float64)[valid, 2]
    depth = depth[np.isfinite(depth)]
    return {
        "frames": int(len(valid)), "valid": int(valid.sum()),
        "limb_cv": limb_length_cv(poses, valid), "limb_cv_raw": limb_length_cv(raw, valid),
        "jitter": joint_jitter(poses, valid), "jitter_raw": joint_jitter(raw, valid),
        "jitter_floor": joint_jitter(gaussian_filter1d(poses, FLOOR_SIGMA_FRAMES, axis=0), valid),
        "root_depth_median": float(np.median(depth)), "root_depth_p5": float(np.percentile(depth, 5)),
        "root_depth_p95": float(np.percentile(depth, 95)),
        "root_depth_step": float(np.abs(np.diff(depth)).mean()),
    }


def measure(videos: list[Path], models: tuple[tuple[str, int, bool], ...] = MODELS) -> dict[str, dict[str, dict[str, float]]]:
    """``{video name: {model label: quality}}``, through :func:`poselift.stream.apps.run_video`."""
    from poselift.stream.apps import run_video

    out: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for video in tqdm(videos, desc="videos", unit="video"):
            out[video.stem] = {}
            for label, lookahead, flip_tta in models:
                npz = Path(tmp) / f"{video.stem}_{lookahead}_{flip_tta}.npz"
                run_video(video, out=npz, lookahead=lookahead, flip_tta=flip_tta)
                with np.load(npz) as data:
                    out[video.stem][label] = quality(dict(data))
    return out


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = ["| video | model | limb CV (raw) | jitter (raw) | jitter floor | root depth m, median (5-95 %) | root step m |",
             "|---|---|---|---|---|---|---|"]
    for video, by_model in results.items():
        for label, q in by_model.items():
            lines.append(f"| {video} | {label} | {q['limb_cv']:.3f} ({q['limb_cv_raw']:.3f}) | {q['jitter']:.3f} "
                         f"({q['jitter_raw']:.3f}) | {q['jitter_floor']:.3f} | {q['root_depth_median']:.2f} "
                         f"({q['root_depth_p5']:.2f}-{q['root_depth_p95']:.2f}) | {q['root_depth_step']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m poselift.bench.real_video", description=__doc__.split("\n")[0])
    p.add_argument("videos", nargs="*", help="video files (default: the shared videos)")
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args(argv)
    videos = [Path(v) for v in args.videos] or sorted(DEFAULT_VIDEO_DIR.glob("*.mp4"))
    if not videos:
        raise SystemExit(f"no videos given and none in {DEFAULT_VIDEO_DIR}")
    results = measure(videos)
    table = markdown(results)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.md:
        Path(args.md).write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
