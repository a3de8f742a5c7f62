"""Issue 14: the look-ahead table and plot (README "Look-ahead or smoothing?").

``python train/results/lookahead_report.py [--measure-step] [--plot train/results/lookahead.png]``
reads the evaluation JSONs in train/results (``poselift eval CKPT --data ../shared/data/mocap/cmu
--subjects 09,12,94 [--detector-noise 1] --json ...``): ``eval_<stem>_clean.json`` and
``eval_<stem>_det1.json`` (stems in MODELS and UNSHIPPED below), and ``lookahead_jitter.json``
(train/results/lookahead_jitter.py, keys = stems, ``+smooth`` with the One-Euro stage). Real-time latency at 30 fps
= F / 30 s + the measured streaming step time (``lookahead_step_ms.json``, written by
``--measure-step``: median of 300 single-stream steps, 1 torch thread, this machine).
Prints the markdown table, then the same with test-time flip averaging (``--flip-tta``):
``eval_<stem>_{clean,det1}_flip.json`` (``poselift eval ... --flip-tta``), jitter keys
``<stem>+flip`` and the flip-averaged step time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE.parents[1] / "model" / "weights"
# (label, F, stem): eval_<stem>_{clean,det1}.json and the jitter key <stem>. ft_lr<LR>_F<F>:
# the causal model fine-tuned 200 steps to look-ahead F (finetune_lookahead.py F OUT 200 LR).
MODELS = [("causal", 0, "causal"), ("lookahead1", 1, "ft_lr3e-5_F1"), ("lookahead3", 3, "ft_lr3e-5_F3"),
          ("full", 121, "full"), ("single_frame", None, "single_frame")]
UNSHIPPED = [(f"lr {lr}, F={f}", f, f"ft_lr{lr}_F{f}") for lr in ("1e-4", "3e-5") for f in (0, 1, 3, 7)]


def measure_step_ms(checkpoint: Path, steps: int = 300, flip_tta: bool = False) -> float:
    import numpy as np
    import torch

    from poselift.model import StreamingLifter, load_checkpoint
    from poselift.model.mirror import MirrorAveragedLifter

    torch.set_num_threads(1)
    model = load_checkpoint(checkpoint).model
    lifter = (MirrorAveragedLifter(StreamingLifter(model, batch_size=2, device="cpu")) if flip_tta
              else StreamingLifter(model, batch_size=1, device="cpu"))
    x = torch.randn(1, 17, 2) * 0.3
    for _ in range(30):
        lifter.step(x)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        lifter.step(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def load(name: str, kind: str) -> dict | None:
    path = HERE / f"eval_{name}_{kind}.json"
    return json.loads(path.read_text()) if path.exists() else None


def rows(models=None, flip: bool = False) -> list[dict]:
    """One row per model; ``flip``: the figures with test-time flip averaging."""
    step = json.loads((HERE / "lookahead_step_ms.json").read_text()) if (HERE / "lookahead_step_ms.json").exists() else {}
    jitter = json.loads((HERE / "lookahead_jitter.json").read_text()) if (HERE / "lookahead_jitter.json").exists() else {}
    variant = "_flip" if flip else ""
    out = []
    for label, future, stem in (MODELS if models is None else models):
        clean, det = load(stem, "clean" + variant), load(stem, "det1" + variant)
        if clean is None:
            continue
        step_ms = step.get(("single_frame" if future is None else "temporal") + variant, float("nan"))
        jitter_key = stem + "+flip" if flip else stem
        out.append(dict(
            name=label, stem=stem, future=future, p1=clean["mpjpe"] * 1e3, p2=clean["p_mpjpe"] * 1e3,
            mpjve=clean["mpjve"] * 1e3, det_p1=det["mpjpe"] * 1e3 if det else float("nan"),
            det_mpjve=det["mpjve"] * 1e3 if det else float("nan"), step_ms=step_ms,
            latency_ms=(0 if future is None else future) * 1000 / 30 + step_ms,
            jitter={v: j[jitter_key] for v, j in jitter.items() if jitter_key in j},
            jitter_smooth={} if flip else {v: j[stem + "+smooth"] for v, j in jitter.items() if stem + "+smooth" in j}))
    return out


def table(rs: list[dict]) -> str:
    videos = sorted({v for r in rs for v in r["jitter"]})
    head = ("| model | F (frames) | clean P1 mm | clean P2 mm | clean MPJVE | det. S=1 P1 | det. S=1 MPJVE | "
            "latency @30 fps ms | " + " | ".join(f"jitter {v} (+ --smooth)" for v in videos) + " |")
    lines = [head, "|" + "---|" * (8 + len(videos))]
    for r in rs:
        f = "-" if r["future"] is None else str(r["future"])
        jit = " | ".join((f"{r['jitter'][v]:.4f}" if v in r["jitter"] else "-")
                         + (f" ({r['jitter_smooth'][v]:.4f})" if v in r["jitter_smooth"] else "") for v in videos)
        lines.append(f"| {r['name']} | {f} | {r['p1']:.1f} | {r['p2']:.1f} | {r['mpjve']:.2f} | {r['det_p1']:.1f} | "
                     f"{r['det_mpjve']:.2f} | {r['latency_ms']:.1f} | {jit} |")
    return "\n".join(lines)


def plot(rs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    temporal = [r for r in rs if r["future"] is not None]
    extra = rows(UNSHIPPED)
    single = next((r for r in rs if r["future"] is None), None)
    xs = [r["future"] for r in temporal]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, key, label in ((axes[0], "p1", "clean P1 (mm)"), (axes[1], "det_mpjve", "MPJVE, detector noise S=1 (mm/frame)"),
                           (axes[2], "latency_ms", "real-time latency at 30 fps (ms)")):
        ax.plot(xs, [r[key] for r in temporal], "o-", label="shipped temporal models (RF 243)")
        flipped = [r for r in rows(flip=True) if r["future"] is not None]
        if flipped:
            ax.plot([r["future"] for r in flipped], [r[key] for r in flipped], "s--", color="purple",
                    label="the same, flip-averaged (--flip-tta)")
        for r in temporal:
            ax.annotate(r["name"], (r["future"], r[key]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if single is not None:
            ax.axhline(single[key], color="gray", ls="--", label="single-frame")
        for lr, color in (("1e-4", "red"), ("3e-5", "green")):
            pts = [r for r in extra if r["stem"].startswith(f"ft_lr{lr}_")]
            if pts and key != "latency_ms":
                ax.plot([r["future"] for r in pts], [r[key] for r in pts], "x:", color=color, alpha=0.7,
                        label=f"fine-tunes lr {lr} (F=0: control)")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks([0, 1, 3, 7, 121])
        ax.set_xticklabels(["0", "1", "3", "7", "121"])
        ax.set_xlabel("look-ahead F (frames)")
        ax.set_title(label, fontsize=9)
        if key == "latency_ms":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.suptitle("validation split (CMU 09, 12, 94; 4 protocol cameras); look-ahead models: causal fine-tuned "
                 "200 CPU steps (x: every fine-tune run)", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--measure-step", action="store_true")
    ap.add_argument("--plot", default=None)
    a = ap.parse_args()
    if a.measure_step:
        step = {"temporal": measure_step_ms(WEIGHTS / "causal.pt"),
                "single_frame": measure_step_ms(WEIGHTS / "single_frame.pt"),
                "temporal_flip": measure_step_ms(WEIGHTS / "causal.pt", flip_tta=True),
                "single_frame_flip": measure_step_ms(WEIGHTS / "single_frame.pt", flip_tta=True)}
        (HERE / "lookahead_step_ms.json").write_text(json.dumps(step, indent=2))
        print(step)
    rs = rows()
    print(table(rs))
    print()
    print(table(rows(flip=True)))
    print()
    print(table(rows(UNSHIPPED)))
    if a.plot:
        plot(rs, Path(a.plot))


if __name__ == "__main__":
    main()
