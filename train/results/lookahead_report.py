"""Issue 14: the look-ahead table and plot (README "Look-ahead or smoothing?").

``python train/results/lookahead_report.py [--measure-step] [--plot train/results/lookahead.png]``
reads the evaluation JSONs in train/results (``poselift eval CKPT --data ../shared/data/mocap/cmu
--subjects 09,12,94 [--detector-noise 1] --json ...``): ``eval_<model>_clean.json`` and
``eval_<model>_det1.json`` for models causal (F=0), lookahead1/3/7, full (F=121), single_frame,
and ``lookahead_jitter.json`` (train/results/lookahead_jitter.py). Real-time latency at 30 fps
= F / 30 s + the measured streaming step time (``lookahead_step_ms.json``, written by
``--measure-step``: median of 300 single-stream steps, 1 torch thread, this machine).
Prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE.parents[1] / "model" / "weights"
MODELS = [("causal", 0), ("finetune_control_F0", 0), ("lookahead1", 1), ("lookahead3", 3), ("lookahead7", 7),
          ("full", 121), ("single_frame", None)]
SHIPPED = {"causal", "lookahead3", "full", "single_frame"}  # lookahead1/7 and the control: measured, not shipped


def measure_step_ms(checkpoint: Path, steps: int = 300) -> float:
    import numpy as np
    import torch

    from poselift.model import StreamingLifter, load_checkpoint

    torch.set_num_threads(1)
    lifter = StreamingLifter(load_checkpoint(checkpoint).model, batch_size=1, device="cpu")
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


def rows() -> list[dict]:
    step = json.loads((HERE / "lookahead_step_ms.json").read_text()) if (HERE / "lookahead_step_ms.json").exists() else {}
    jitter = json.loads((HERE / "lookahead_jitter.json").read_text()) if (HERE / "lookahead_jitter.json").exists() else {}
    out = []
    for name, future in MODELS:
        clean, det = load(name, "clean"), load(name, "det1")
        if clean is None:
            continue
        key = name if name in ("single_frame", "finetune_control_F0") else f"F={future}"
        step_ms = step.get(name, step.get("temporal"))
        out.append(dict(
            name=name if name in SHIPPED else name + " (not shipped)", future=future, p1=clean["mpjpe"] * 1e3, p2=clean["p_mpjpe"] * 1e3, mpjve=clean["mpjve"] * 1e3,
            det_p1=det["mpjpe"] * 1e3 if det else float("nan"), det_mpjve=det["mpjve"] * 1e3 if det else float("nan"),
            step_ms=step_ms, latency_ms=(0 if future is None else future) * 1000 / 30 + (step_ms or 0.0),
            jitter={v: j[key] for v, j in jitter.items() if key in j}))
    return out


def table(rs: list[dict]) -> str:
    videos = sorted({v for r in rs for v in r["jitter"]})
    head = ("| model | F (frames) | clean P1 mm | clean P2 mm | clean MPJVE | det. S=1 P1 | det. S=1 MPJVE | "
            "latency @30 fps ms | " + " | ".join(f"jitter {v}" for v in videos) + " |")
    lines = [head, "|" + "---|" * (8 + len(videos))]
    for r in rs:
        f = "-" if r["future"] is None else str(r["future"])
        jit = " | ".join(f"{r['jitter'][v]:.4f}" if v in r["jitter"] else "-" for v in videos)
        lines.append(f"| {r['name']} | {f} | {r['p1']:.1f} | {r['p2']:.1f} | {r['mpjve']:.2f} | {r['det_p1']:.1f} | "
                     f"{r['det_mpjve']:.2f} | {r['latency_ms']:.1f} | {jit} |")
    return "\n".join(lines)


def plot(rs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    temporal = [r for r in rs if r["future"] is not None and "control" not in r["name"]]
    control = next((r for r in rs if "control" in r["name"]), None)
    single = next((r for r in rs if r["future"] is None), None)
    xs = [r["future"] for r in temporal]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, label in ((axes[0], "p1", "clean P1 (mm)"), (axes[1], "det_mpjve", "MPJVE, detector noise S=1 (mm/frame)"),
                           (axes[2], "latency_ms", "real-time latency at 30 fps (ms)")):
        ax.plot(xs, [r[key] for r in temporal], "o-", label="temporal (RF 243)")
        for r in temporal:
            ax.annotate(r["name"].replace(" (not shipped)", "*"), (r["future"], r[key]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        if single is not None:
            ax.axhline(single[key], color="gray", ls="--", label="single-frame")
        if control is not None:
            ax.plot([0], [control[key]], "x", color="red", label="F=0 fine-tune control")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks([0, 1, 3, 7, 121])
        ax.set_xticklabels(["0", "1", "3", "7", "121"])
        ax.set_xlabel("look-ahead F (frames)")
        ax.set_title(label, fontsize=9)
        if key == "latency_ms":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("validation split (CMU 09, 12, 94; 4 protocol cameras); * measured, not shipped; look-ahead models "
                 "fine-tuned 200 CPU steps from causal", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--measure-step", action="store_true")
    ap.add_argument("--plot", default=None)
    a = ap.parse_args()
    if a.measure_step:
        step = {"temporal": measure_step_ms(WEIGHTS / "causal.pt"),
                "single_frame": measure_step_ms(WEIGHTS / "single_frame.pt")}
        (HERE / "lookahead_step_ms.json").write_text(json.dumps(step, indent=2))
        print(step)
    rs = rows()
    print(table(rs))
    if a.plot:
        plot(rs, Path(a.plot))


if __name__ == "__main__":
    main()
