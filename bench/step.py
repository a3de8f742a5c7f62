"""Benchmark 1 and 2: the streaming step against re-running the whole window, and the floor.

For one model, in the same interleaved rounds:

* ``step_<precision>``: :meth:`model.StreamingLifter.step` at batch 1;
* ``window_dilated``: the plain dilated model in eval mode under ``no_grad`` on the last
  RF frames (what the reference implementation and mmpose's demo do per frame);
* ``window_strided``: the strided training twin on the same window;
* ``bandwidth``: an fp32 ``sum`` over a buffer far larger than the last-level cache.

The floor is the fp32 folded weight bytes divided by that read bandwidth: a batch-1 step
must read every weight once, so fp32 cannot beat it; smaller formats can.
"""

from __future__ import annotations

import torch

from poselift.model import StreamingLifter, TemporalModel, precision_names

from .hardware import BandwidthProbe
from .timing import interleave


def trials_for(budget_s: float) -> int:
    return 1 if budget_s < 4 else 3


def cpu_precisions() -> list[str]:
    return list(precision_names("cpu"))


def cuda_precisions() -> list[str]:
    return list(precision_names("cuda"))


def bench_step(
    model: TemporalModel,
    device: str = "cpu",
    precisions: list[str] | None = None,
    probe: BandwidthProbe | None = None,
    budget_s: float = 6.0,
    windows: bool = True,
) -> dict:
    precisions = precisions or (cuda_precisions() if device == "cuda" else cpu_precisions())
    rf = model.config.receptive_field
    gen = torch.Generator().manual_seed(1)
    frame = (torch.rand(1, model.config.num_joints_in, model.config.in_features, generator=gen) - 0.5)
    candidates = {}
    lifters = {}
    notes = {}
    x = frame.to(device)
    for p in precisions:
        lifter = StreamingLifter(model, batch_size=1, device=device, precision=p)
        if device == "cuda":
            try:  # CUDA graph capture happens on the first steps
                lifter.step(x)
                lifter.step(x)
            except Exception as exc:  # report it and measure the eager path instead
                notes[f"step_{p}"] = f"CUDA graph failed ({type(exc).__name__}: {exc}); eager step measured"
                lifter = StreamingLifter(model, batch_size=1, device=device, precision=p, cuda_graph=False)
        lifters[p] = lifter
        candidates[f"step_{p}"] = (lambda lf=lifter, xx=x: lf.step(xx))
    if device == "cuda":  # what the graph buys: the same step launched kernel by kernel
        eager = StreamingLifter(model, batch_size=1, device=device, precision=precisions[-1], cuda_graph=False)
        candidates[f"step_{precisions[-1]}_eager"] = lambda: eager.step(x)
    if windows:
        dilated = model.to(device).eval()
        strided = dilated.strided_twin().eval()
        window = (torch.rand(1, rf, model.config.num_joints_in, model.config.in_features, generator=gen) - 0.5).to(device)

        def run_dilated():
            with torch.no_grad():
                return dilated(window)

        def run_strided():
            with torch.no_grad():
                return strided(window)

        candidates["window_dilated"] = run_dilated
        candidates["window_strided"] = run_strided
    if probe is not None:
        candidates["bandwidth"] = probe
    # Several short trials; the least disturbed one (lowest combined score below) is
    # reported, every trial is kept.
    trials = []
    n_trials = trials_for(budget_s) if probe is not None else 1
    for _ in range(n_trials):
        trials.append(interleave(candidates, budget_s=budget_s / n_trials, device=device))
    # Score of a trial: the sum, over the neutral probe and the two window baselines (never
    # the step itself), of its median divided by the best median of that candidate in any trial.
    # Judged by the neutral probe and the two window baselines:
    # picking the trial where the baselines ran fastest can only shrink the claimed
    # speed-ups, and the fastest probe gives the lowest floor, the strictest one.
    judges = [k for k in ("bandwidth", "window_dilated", "window_strided") if k in candidates]
    best = {k: min(t[k].quantile(0.5) for t in trials) for k in judges}
    scores = [sum(t[k].quantile(0.5) / best[k] for k in judges) for t in trials]
    chosen = min(range(len(trials)), key=scores.__getitem__) if judges else 0
    samples = trials[chosen]
    model.to("cpu")
    weight_bytes = lifters[precisions[0]].weight_bytes
    out: dict = {
        "receptive_field": rf,
        "channels": model.config.channels,
        "causal": model.config.causal,
        "weight_bytes_fp32": weight_bytes,
        "backends": {p: lf.backend + ("+cudagraph" if lf._use_graph else "") for p, lf in lifters.items()},
        "notes": notes,
        "latency": {k: s.summary() for k, s in samples.items() if k != "bandwidth"},
    }
    if probe is not None:
        bw = probe.gbs(samples["bandwidth"].quantile(0.5))
        out["read_bandwidth_gbs"] = bw
        out["read_bandwidth_best_gbs"] = probe.gbs(min(samples["bandwidth"].times_s))
        floor_ms = weight_bytes / (bw * 1e9) * 1e3
        out["floor_ms"] = floor_ms
        out["floor_multiple"] = {k: out["latency"][k]["p50_ms"] / floor_ms for k in out["latency"]}
        out["floor_rule"] = "fp32 folded weight bytes / read bandwidth of a buffer >> last-level cache"
    out["trials"] = {
        "count": len(trials),
        "chosen": chosen,
        "rule": "the trial where the bandwidth probe and the two window baselines ran fastest together "
                "(the least disturbed machine; never judged by the streaming step)",
        "scores": scores,
        "p50_ms": [{k: v.p50_ms for k, v in t.items()} for t in trials],
    }
    lat = out["latency"]
    if windows:
        out["speedup_vs_dilated"] = {
            p: lat["window_dilated"]["p50_ms"] / lat[f"step_{p}"]["p50_ms"] for p in precisions
        }
        out["speedup_vs_strided"] = {
            p: lat["window_strided"]["p50_ms"] / lat[f"step_{p}"]["p50_ms"] for p in precisions
        }
    return out
