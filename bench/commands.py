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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.onnx:
        from .onnx_step import main as onnx_main

        return onnx_main(["--json", args.json] if args.json else [])
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
