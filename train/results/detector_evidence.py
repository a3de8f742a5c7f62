"""Evidence for docs/corruption.md: MediaPipe on the real videos vs clean projected mocap.

Run ``poselift video VIDEO --out /tmp/train_NAME.npz`` for each video first, then
``python train/results/detector_evidence.py``. Prints per-joint high-pass jitter (torso
lengths) and placement ratios for both.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from poselift.model.skeleton import H36M_JOINT_NAMES
from poselift.train.dataset import load_takes
from poselift.train.detector_stats import highpass_jitter, placement_ratios, second_difference_autocorr
from poselift.train.generators import protocol_views

VIDEOS = ("rooftop_dance", "break_dance")
MOCAP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mocap" / "cmu"


def main() -> None:
    rows = {}
    for name in VIDEOS:
        d = np.load(f"/tmp/train_{name}.npz")
        rows[f"MediaPipe {name} ({float(d['fps']):.0f} fps)"] = (highpass_jitter(d["keypoints2d"]),
                                                               placement_ratios(d["keypoints2d"]),
                                                               second_difference_autocorr(d["keypoints2d"]))
    for folder in ("salsa", "indian"):
        takes = load_takes(MOCAP / folder, fps=25.0, progress=False)[:4]
        jit, ratios, acs = [], [], []
        for t in takes:
            for px, _ in protocol_views(t.positions, cameras=2, distance=4.0):
                jit.append(highpass_jitter(px.numpy()))
                ratios.append(placement_ratios(px.numpy()))
                acs.append(second_difference_autocorr(px.numpy()))
        keys = [k for k in ratios[0] if k != "frames"]
        rows[f"mocap {folder} (25 fps, 4 m)"] = (np.mean(jit, axis=0),
                                                {k: float(np.median([r[k] for r in ratios if k in r])) for k in keys},
                                                np.mean(acs, axis=0))
    print("| joint | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for j, jn in enumerate(H36M_JOINT_NAMES):
        print(f"| {jn} | " + " | ".join(f"{v[0][j]:.4f}" for v in rows.values()) + " |")
    print()
    motion = np.mean([v[2] for k, v in rows.items() if k.startswith("mocap")], axis=0)
    print("second-difference lag-1 autocorrelation (white noise -0.67) and the white-noise std per axis it implies "
          "(torso lengths)")
    print("| joint | mocap r_m | " + " | ".join(f"{k}: r, noise std" for k in rows if k.startswith("MediaPipe")) + " |")
    print("|---|---|" + "---|" * sum(k.startswith("MediaPipe") for k in rows))
    for j, jn in enumerate(H36M_JOINT_NAMES):
        cells = []
        for k, v in rows.items():
            if k.startswith("MediaPipe"):
                share = np.clip((motion[j] - v[2][j]) / (motion[j] + 2 / 3), 0, 1)
                cells.append(f"{v[2][j]:+.2f}, {np.sqrt(share) * v[0][j] / np.sqrt(12):.4f}")
        print(f"| {jn} | {motion[j]:+.2f} | " + " | ".join(cells) + " |")
    print()
    keys = [k for k in next(iter(rows.values()))[1] if k != "frames"]
    print("| ratio | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{v[1].get(k, float('nan')):.3f}" for v in rows.values()) + " |")


if __name__ == "__main__":
    sys.exit(main())
