"""Jitter/lag trade-off of the One-Euro filter (stream/smoothing.py) on real video output.

First ``poselift video VIDEO --out /tmp/train_NAME.npz``; then
``python train/results/smoothing_tradeoff.py [--plot OUT.png]``. Jitter: mean norm of
the second difference of the joints over the mean bone length (limb lengths per
frame^2). Lag: the shift (frames, parabola-refined) that best aligns the filtered
sequence with the unfiltered one.
"""

from __future__ import annotations

import argparse

import numpy as np

from poselift.model.skeleton import H36M_PARENTS
from poselift.stream.smoothing import smooth_sequence

VIDEOS = ("rooftop_dance", "break_dance")
MIN_CUTOFFS = (0.3, 0.5, 1.0, 2.0, 4.0)
BETAS = (0.0, 0.5, 2.0, 8.0)


def jitter(poses: np.ndarray) -> float:
    """Mean second-difference norm per mean bone length (limb lengths / frame^2)."""
    bones = [np.linalg.norm(poses[:, j] - poses[:, p], axis=-1).mean() for j, p in enumerate(H36M_PARENTS) if p >= 0]
    acc = np.linalg.norm(poses[2:] - 2 * poses[1:-1] + poses[:-2], axis=-1)
    return float(acc.mean() / np.mean(bones))


def lag_frames(filtered: np.ndarray, raw: np.ndarray, max_lag: int = 12) -> float:
    """Delay of ``filtered`` behind ``raw``: argmin over k of the mean error between
    filtered[t] and raw[t - k], refined by a parabola through the three best shifts."""
    err = []
    for k in range(max_lag + 1):
        a, b = filtered[max_lag:], raw[max_lag - k:len(raw) - k]
        err.append(np.linalg.norm(a - b, axis=-1).mean())
    err = np.array(err)
    k = int(err.argmin())
    if 0 < k < max_lag:
        den = err[k - 1] - 2 * err[k] + err[k + 1]
        if den > 0:
            return k + 0.5 * (err[k - 1] - err[k + 1]) / den
    return float(k)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plot")
    args = ap.parse_args()
    rows = []
    for name in VIDEOS:
        d = np.load(f"/tmp/train_{name}.npz")
        poses, fps = d["poses3d"].astype(np.float64), float(d["fps"])
        rows.append((name, "raw", "-", jitter(poses), 0.0))
        for mc in MIN_CUTOFFS:
            for beta in BETAS:
                f = smooth_sequence(poses, fps, min_cutoff=mc, beta=beta)
                rows.append((name, mc, beta, jitter(f), lag_frames(f, poses)))
    print("| video | min_cutoff Hz | beta | jitter (limb/frame^2) | lag (frames) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.4f} | {r[4]:.2f} |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name in VIDEOS:
            pts = [r for r in rows if r[0] == name and r[1] != "raw"]
            ax.scatter([r[4] for r in pts], [r[3] for r in pts], label=name, s=14)
            raw = next(r for r in rows if r[0] == name and r[1] == "raw")
            ax.axhline(raw[3], ls=":", lw=0.8)
        ax.set_xlabel("lag (frames)")
        ax.set_ylabel("jitter (limb lengths / frame$^2$)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)


if __name__ == "__main__":
    main()
