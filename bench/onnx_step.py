"""The ONNX streaming step (onnxruntime, CPU) against :class:`model.StreamingLifter` fp32.

Both sides step B streams one frame, in the same interleaved rounds (:mod:`bench.timing`),
one thread each (``torch.set_num_threads(1)``, onnxruntime ``intra_op_num_threads=1``:
the serving default). The onnxruntime side is the loop a user writes: ``session.run``
with numpy inputs, the state outputs fed back as the next inputs.

Run: ``poselift bench --onnx [--json OUT]`` (the shipped causal model), or
``python -m poselift.bench.onnx_step [CHECKPOINT] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from .timing import interleave


def bench_onnx_step(model, batch_sizes=(1, 32), budget_s: float = 4.0, threads: int = 1) -> dict:
    """p50/p99 per step of both runners at each batch size, and the ratio onnxruntime / torch."""
    import onnxruntime as ort

    from poselift.model import StreamingLifter
    from poselift.model.onnx_export import export_onnx

    torch.set_num_threads(threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "step.onnx"
        spec = export_onnx(model, path)
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    cfg = model.config
    results: dict = {"onnxruntime": ort.__version__, "threads": threads, "batches": {}}
    for b in batch_sizes:
        x = (torch.rand(b, cfg.num_joints_in, cfg.in_features, generator=torch.Generator().manual_seed(b)) - 0.5)
        lifter = StreamingLifter(model, batch_size=b, precision="fp32")
        feed = {"keypoints": x.numpy(), "start": np.zeros(b, bool),
                **{n: s.numpy() for n, s in zip(spec.names, spec.zero_state(b))}}

        def ort_step(feed=feed) -> None:
            out = sess.run(None, feed)
            feed.update(zip(spec.names, out[1:]))

        samples = interleave({"torch": lambda x=x, lifter=lifter: lifter.step(x), "onnxruntime": ort_step},
                             budget_s=budget_s)
        s = {k: v.summary() for k, v in samples.items()}
        s["ratio_p50"] = s["onnxruntime"]["p50_ms"] / s["torch"]["p50_ms"]
        results["batches"][str(b)] = s
    return results


def format_line(results: dict) -> str:
    parts = [f"B={b}: onnxruntime {s['onnxruntime']['p50_ms']:.3f} ms vs StreamingLifter fp32 "
             f"{s['torch']['p50_ms']:.3f} ms p50 ({s['ratio_p50']:.2f}x)" for b, s in results["batches"].items()]
    return "ONNX step (CPU, 1 thread): " + "; ".join(parts)


def main(argv=None) -> int:
    from poselift.model import load_checkpoint
    from poselift.model.commands import default_checkpoint

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", default=None, help="default: the shipped causal model")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--budget", type=float, default=4.0, help="seconds of interleaved timing per batch size")
    args = p.parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint or default_checkpoint())
    results = bench_onnx_step(ckpt.model, budget_s=args.budget)
    results["checkpoint"] = Path(ckpt.path).name
    results["architecture"] = {"filter_widths": list(ckpt.model.config.filter_widths),
                               "channels": ckpt.model.config.channels}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(format_line(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
