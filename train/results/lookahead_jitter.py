"""Issue 14: real-video jitter per look-ahead F (and with the One-Euro stage).

``python train/results/lookahead_jitter.py OUT.json [NAME=CKPT ...]`` runs MediaPipe once
per video in ../shared/data/video (cached as the list of Frame2D the ``video`` command
builds), then lifts the frames with each model through ``stream.apps.video_arrays``, the
exact path of ``poselift video FILE --out X.npz --lookahead F [--smooth]``, and writes
jitter = mean |second difference| of the joints / mean limb length (``model.body.joint_jitter``,
valid frames only) per video and model. Models: NAME=CKPT pairs (default the shipped
causal, full and single-frame models plus every shipped lookaheadF.pt); ``NAME+smooth``
entries are added for the causal model with the default One-Euro stage, and ``NAME+flip``
entries for every model with test-time flip averaging (``--flip-tta``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from poselift.model.body import joint_jitter
from poselift.model.commands import DEFAULT_WEIGHTS_DIR, shipped_lookaheads
from poselift.stream.apps import load_model, make_engine, smoothing_stages, video_arrays
from poselift.stream.sources import VideoSource

ROOT = Path(__file__).resolve().parents[2]
VIDEOS = ROOT.parent / "shared" / "data" / "video"


def detect(path: Path) -> tuple[list, float]:
    src = VideoSource(str(path), stream="video")
    try:
        frames = [f for _, f in src]
    finally:
        src.close()
    return frames, src.fps


def main(out: str, models: dict[str, str]) -> None:
    # merged into OUT.json if it exists: models can be added run by run
    results: dict[str, dict[str, float]] = json.loads(Path(out).read_text()) if Path(out).exists() else {}
    cache = Path(out).with_suffix(".frames.pkl")
    import pickle

    detected = pickle.loads(cache.read_bytes()) if cache.exists() else {}
    for video in sorted(VIDEOS.glob("*.mp4")):
        if video.stem not in detected:
            detected[video.stem] = detect(video)
            cache.write_bytes(pickle.dumps(detected))
        frames, fps = detected[video.stem]
        for name, ckpt_path in models.items():
            smooth, flip = name.endswith("+smooth"), name.endswith("+flip")
            ckpt = load_model(ckpt_path)
            engine = make_engine(ckpt, device="cpu", max_streams=1, flip_tta=flip)
            arrays = video_arrays(frames, engine, raw=True, stages=smoothing_stages(engine, fps, smooth))
            jit = joint_jitter(arrays["poses3d"], arrays["valid"])
            results.setdefault(video.stem, {})[name] = jit
            print(f"{video.stem:14s} {name:18s} fps {fps:g} frames {len(frames)} valid {int(arrays['valid'].sum())} "
                  f"jitter {jit:.4f}", flush=True)
    Path(out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 2:
        models = dict(a.rsplit("=", 1) for a in sys.argv[2:])
    else:
        models = {f"F={f}": str(p) for f, p in shipped_lookaheads().items()}
        models["single_frame"] = str(DEFAULT_WEIGHTS_DIR / "single_frame.pt")
        models["F=0+smooth"] = str(DEFAULT_WEIGHTS_DIR / "causal.pt")
        models.update({f"{name}+flip": path for name, path in list(models.items()) if "+" not in name})
    main(sys.argv[1], models)
