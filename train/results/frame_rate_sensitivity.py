"""How much the shipped models lose when the input's frame rate is not their training rate (30 fps).

The validation takes (subjects 09, 12, 94) are resampled from the 120 fps capture to each
rate and seen by 2 of the protocol cameras; the model lifts them as they are (its temporal
filters then see the motion sped up or slowed down). ``serve`` and ``video`` print a warning
when a feed's rate is more than 10 % off the model's.

``python train/results/frame_rate_sensitivity.py [--md OUT]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from poselift.bench.isolated import write_results
from poselift.model.checkpoint import load_checkpoint
from poselift.train.dataset import VALIDATION_SUBJECTS, load_takes
from poselift.train.evaluate import evaluate_takes

ROOT = Path(__file__).resolve().parents[2]
RATES = (15.0, 20.0, 25.0, 30.0, 60.0, 120.0)


def measure(models: tuple[str, ...] = ("causal", "full"), rates: tuple[float, ...] = RATES) -> dict[str, dict[float, float]]:
    """``{model: {fps: P1 mm}}``."""
    torch.set_num_threads(1)
    data = ROOT.parent / "shared" / "data" / "mocap" / "cmu"
    takes = {fps: load_takes(data, fps=fps, subjects=set(VALIDATION_SUBJECTS), progress=False) for fps in rates}
    out: dict[str, dict[float, float]] = {}
    for name in models:
        model = load_checkpoint(ROOT / "model" / "weights" / f"{name}.pt").model
        out[name] = {fps: evaluate_takes(model, takes[fps], "cpu", cameras_per_take=2).mpjpe * 1e3 for fps in rates}
    return out


def markdown(r: dict[str, dict[float, float]]) -> str:
    rates = list(next(iter(r.values())))
    lines = ["# P1 (mm) of the shipped models against the input's frame rate (trained at 30 fps)", "",
             "Validation takes (subjects 09, 12, 94), 2 protocol cameras, clean 2D.", "",
             "| model | " + " | ".join(f"{fps:g} fps" for fps in rates) + " |", "|---|" + "---:|" * len(rates)]
    for name, by_rate in r.items():
        base = by_rate[30.0]
        lines.append(f"| {name} | " + " | ".join(
            f"{p1:.1f}" + ("" if fps == 30.0 else f" ({(p1 - base) / base:+.1%})") for fps, p1 in by_rate.items()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--md")
    args = p.parse_args()
    r = measure()
    write_results(r, markdown(r), None, args.md)
