"""``poselift bench``: every performance claim, measured side by side."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure the streaming step, throughput, many streams, ZeroMQ and the webcam pipeline",
        description=(
            "Measure every performance figure in one run, candidates interleaved so that machine "
            "noise hits them alike: the streaming step (fp32/bf16/int8, or fp32/fp16/bf16 on CUDA) "
            "against re-running the window, the weight-read floor, offline throughput, many streams, "
            "ZeroMQ end to end and the webcam pipeline. Writes a Markdown table and PNG plots."),
        epilog="example: poselift bench --json bench/results/cpu.json --out-dir bench/results\n"
               "         poselift bench --load-curve --json bench/results/load_curve.json --drains 16,64,256,1024\n"
               "         poselift bench --load-curve --workers 1,2 --json bench/results/load_curve_workers2.json\n"
               "         poselift bench --quick           # under a minute, for CI",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", metavar="OUT", default=None, help="write every figure to this JSON file")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default cpu)")
    p.add_argument("--quick", action="store_true",
                   help="CI smoke run (< 1 minute): short budgets, fewer sizes, 256-channel models, one torch thread")
    p.add_argument("--out-dir", metavar="DIR", default=None,
                   help="write bench.md and the PNG plots here (default: beside --json, else nothing)")
    p.add_argument("--onnx", action="store_true",
                   help="only compare the exported ONNX step (onnxruntime) with StreamingLifter fp32 at batch 1 "
                        "and 32 on the CPU (needs pip install -e '.[export]'; see docs/onnx.md)")
    p.add_argument("--load-curve", action="store_true",
                   help="only measure serve's load curve (serve --lossless with its stages, loopback): the sustained "
                        "lossless rate and p50/p99 latency at 50 %% and 90 %% of it per stream count, the light-load "
                        "point (8 streams x 30 fps) and the drain bound's trade; writes JSON, Markdown and a PNG")
    p.add_argument("--streams", default="1,8,64,256", metavar="N,N,...",
                   help="with --load-curve: the stream counts (default 1,8,64,256)")
    p.add_argument("--duration", type=float, default=3.0, metavar="S",
                   help="with --load-curve: seconds per paced run (default 3)")
    p.add_argument("--threads", type=int, default=1, help="with --load-curve: torch threads in the server (default 1, as serve)")
    p.add_argument("--workers", default="1", metavar="N,N,...",
                   help="with --load-curve: measure serve --workers N (default 1: one server process); several "
                        "values, e.g. 1,2: one curve each, reported side by side")
    p.add_argument("--drains", default="", metavar="N,N,...",
                   help="with --load-curve: also compare these drain bounds (PoseServer max_drain) at the largest stream count")
    p.set_defaults(func=run)


def _counts(text: str, option: str) -> list[int]:
    from poselift.errors import UserError

    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{option} {text!r}: expected comma-separated integers, e.g. 1,8,64,256") from None
    if any(v < 1 for v in values):
        raise UserError(f"{option} {text!r}: every value must be at least 1")
    return values


def run(args: argparse.Namespace) -> int:
    if args.onnx:
        from .onnx_step import main as onnx_main

        return onnx_main(["--json", args.json] if args.json else [])
    if args.load_curve:
        from .load import main as load_main

        load_main(args.json, args.out_dir, _counts(args.streams, "--streams"), args.duration, args.threads,
                  _counts(args.drains, "--drains"), _counts(args.workers, "--workers"))
        return 0
    import sys
    from pathlib import Path

    from poselift.errors import UserError

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: torch.cuda.is_available() is False")
    from .report import markdown, plots
    from .runner import run_bench, write_json

    save = (lambda r: write_json(r, args.json)) if args.json else None
    results = run_bench(args.device, args.quick, log=lambda m: print(m, file=sys.stderr, flush=True), save=save)
    out_dir = Path(args.out_dir) if args.out_dir else (Path(args.json).parent if args.json else None)
    if args.json:
        write_json(results, args.json)
    md = markdown(results)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = Path(args.json).stem if args.json else f"bench_{args.device}"
        (out_dir / f"{stem}.md").write_text(md)
        plots(results, out_dir)
    print(md)
    return 0
