"""``poselift import-vp3d`` and ``poselift export``: checkpoints in and ONNX out."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import-vp3d",
        help="convert a VideoPose3D checkpoint into a poselift checkpoint",
        description="Read a VideoPose3D checkpoint (model_pos, optional model_traj) without running any code in it, "
                    "infer its architecture from the weight shapes and write a poselift checkpoint. "
                    "The official files (VideoPose3D GitHub releases) are licensed CC BY-NC 4.0: "
                    "non-commercial use only.",
        epilog="example: poselift import-vp3d pretrained_h36m_cpn.bin --out vp3d_cpn.pt\n"
               "         poselift import-vp3d pretrained_h36m_detectron_coco.bin --out vp3d_coco.pt --layout coco17",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="VideoPose3D checkpoint (.bin)")
    p.add_argument("--out", required=True, help="poselift checkpoint to write (.pt)")
    p.add_argument("--causal", action="store_true",
                   help="the model was trained with --causal (the file does not say; default: symmetric)")
    p.add_argument("--layout", choices=("h36m17", "coco17"), default="h36m17",
                   help="2D joint order the model was trained on: h36m17 for the CPN models (default), "
                        "coco17 for the Detectron ones")
    p.set_defaults(func=run_import)

    e = subparsers.add_parser(
        "export",
        help="export a checkpoint's streaming step to ONNX (and a Triton model repository)",
        description="Write the streaming step (one frame in, one pose out, per-layer state passed in and out) "
                    "as an ONNX graph; see docs/onnx.md for the contract. Needs pip install -e '.[export]'.",
        epilog="example: poselift export model/weights/causal.pt --onnx causal_step.onnx --triton triton_repo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("checkpoint", help="poselift checkpoint")
    e.add_argument("--onnx", help="ONNX file to write")
    e.add_argument("--triton", metavar="DIR", help="also write a Triton model repository into DIR")
    e.add_argument("--name", default="poselift_step", help="model name in the Triton repository")
    e.set_defaults(func=run_export)


def run_import(args: argparse.Namespace) -> int:
    from .vp3d import import_vp3d

    s = import_vp3d(args.file, args.out, causal=args.causal, layout=args.layout)
    kind = "causal" if s["causal"] else "symmetric"
    print(f"wrote {s['out']}: filter widths {','.join(map(str, s['filter_widths']))} (receptive field "
          f"{s['receptive_field']}, {kind}), {s['channels']} channels, {s['joints_in']} {s['layout']} joints in, "
          f"{s['joints_out']} out, trajectory {'yes' if s['trajectory'] else 'no'}, trained at {s['fps']:g} fps")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from poselift.errors import UserError

    from .checkpoint import load_checkpoint
    from .onnx_export import export_onnx, write_triton_repository

    if not args.onnx and not args.triton:
        raise UserError("give --onnx FILE and/or --triton DIR")
    try:
        import onnx  # noqa: F401  (the exporter writes through it)
    except ImportError:
        raise UserError("ONNX export needs the export extra: pip install -e '.[export]'") from None
    ckpt = load_checkpoint(args.checkpoint)
    if args.onnx:
        spec = export_onnx(ckpt.model, args.onnx)
        print(f"wrote {args.onnx}: {len(spec.state_shapes)} state tensors, "
              f"{spec.state_bytes_per_stream} bytes of state per stream")
    if args.triton:
        path = write_triton_repository(ckpt.model, args.triton, name=args.name)
        print(f"wrote Triton model repository {args.triton} ({path})")
    return 0
