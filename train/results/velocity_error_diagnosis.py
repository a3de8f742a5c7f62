"""Where the models' velocity error (MPJVE) on clean 2D comes from: noise, or wrong motion?

If a model's MPJVE were frame-to-frame noise, smoothing its output over time would lower
it, as it lowers the jitter of a noisy signal. This smooths each shipped model's output on
the validation takes (subjects 09, 12, 94, 2 of the protocol cameras, clean 2D) with a
Gaussian over time (sigma 1, 2, 4 frames) and reports P1 and MPJVE; it also reports what
the same smoothing does to the ground truth itself (how much real motion it removes).

``python train/results/velocity_error_diagnosis.py [--md OUT]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from tqdm import tqdm

from poselift.bench.isolated import write_results
from poselift.model import lift_sequence
from poselift.model.checkpoint import load_checkpoint
from poselift.train.dataset import VALIDATION_SUBJECTS, load_takes
from poselift.train.generators import evaluation_views

ROOT = Path(__file__).resolve().parents[2]
SIGMAS = (0.0, 1.0, 2.0, 4.0)
MODELS = ("full", "causal", "single_frame")


def _smooth(poses: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter1d(poses, sigma, axis=0) if sigma else poses


def _p1_and_mpjve(preds: list[np.ndarray], gts: list[np.ndarray]) -> tuple[float, float]:
    frames = sum(len(g) for g in gts)
    p1 = sum(np.linalg.norm(p - g, axis=-1).mean() * len(g) for p, g in zip(preds, gts)) / frames
    ve = sum(np.linalg.norm(np.diff(p, axis=0) - np.diff(g, axis=0), axis=-1).mean() * len(g)
             for p, g in zip(preds, gts)) / frames
    return p1 * 1e3, ve * 1e3


def measure(models: tuple[str, ...] = MODELS, sigmas: tuple[float, ...] = SIGMAS) -> dict[str, dict[float, tuple[float, float]]]:
    """``{model or "ground truth": {sigma: (P1 mm, MPJVE mm/frame)}}``."""
    torch.set_num_threads(1)
    data = ROOT.parent / "shared" / "data" / "mocap" / "cmu"
    takes = load_takes(data, subjects=set(VALIDATION_SUBJECTS), variants=0, progress=False)
    views = [v for take in takes for v in evaluation_views(take, 2)]
    gts = [gt.double().numpy() for _, gt in views]
    out = {"ground truth": {s: _p1_and_mpjve([_smooth(g, s) for g in gts], gts) for s in sigmas}}
    for name in tqdm(models, desc="models"):
        model = load_checkpoint(ROOT / "model" / "weights" / f"{name}.pt").model.eval()
        preds = [lift_sequence(model, kp[None])[0].double().numpy() for kp, _ in views]
        out[name] = {s: _p1_and_mpjve([_smooth(p, s) for p in preds], gts) for s in sigmas}
    return out


def markdown(r: dict[str, dict[float, tuple[float, float]]]) -> str:
    sigmas = list(next(iter(r.values())))
    head = "| output | " + " | ".join("as is" if not s else f"smoothed, sigma {s:g}" for s in sigmas) + " |"
    lines = ["P1 mm / MPJVE mm per frame, validation takes, 2 protocol cameras, clean 2D.", "", head,
             "|---|" + "---:|" * len(sigmas)]
    for name, row in r.items():
        lines.append(f"| {name} | " + " | ".join(f"{p1:.1f} / {ve:.2f}" for p1, ve in row.values()) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--md", default=str(Path(__file__).with_suffix(".md")))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    result = measure()
    as_json = {name: {str(s): {"p1_mm": p1, "mpjve_mm": ve} for s, (p1, ve) in row.items()} for name, row in result.items()}
    write_results(as_json, markdown(result), args.json, args.md)


if __name__ == "__main__":
    main()
