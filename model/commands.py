"""``poselift info``: show what a checkpoint holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def default_checkpoint(name: str = "causal") -> Path:
    """Path of a shipped model: ``causal``, ``full``, ``single_frame`` or ``lookaheadF``."""
    return DEFAULT_WEIGHTS_DIR / f"{name}.pt"


def shipped_lookaheads(weights_dir: str | Path | None = None) -> dict[int, Path]:
    """The shipped temporal models by look-ahead F (``future_frames``, the frames a
    streaming lifter waits for): ``causal.pt`` (0), ``lookaheadF.pt`` and ``full.pt``
    ((RF - 1) / 2). F is read from each checkpoint's config, not from its name."""
    from .checkpoint import read_raw
    from .config import ModelConfig

    folder = Path(weights_dir) if weights_dir is not None else DEFAULT_WEIGHTS_DIR
    found: dict[int, Path] = {}
    paths = [folder / "causal.pt", *sorted(folder.glob("lookahead*.pt")), folder / "full.pt"]
    for path in paths:
        if path.exists():
            found.setdefault(ModelConfig.from_dict(read_raw(path)["config"]).future_frames, path)
    return dict(sorted(found.items()))


def describe_lookaheads(models: dict[int, Path]) -> str:
    """``0 (causal.pt), 1 (lookahead1.pt), ..., 121 (full.pt)``."""
    return ", ".join(f"{f} ({p.name})" for f, p in models.items()) or "none"


def lookahead_checkpoint(future_frames: int, weights_dir: str | Path | None = None) -> Path:
    """The shipped model with ``future_frames`` of look-ahead; ValueError (one line,
    listing the available F) if there is none."""
    models = shipped_lookaheads(weights_dir)
    if future_frames not in models:
        raise ValueError(f"no shipped model with --lookahead {future_frames}; available: "
                         f"{describe_lookaheads(models)}")
    return models[future_frames]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="print what a checkpoint holds",
        description="Print a checkpoint's architecture, frame rate, normalisation and training metadata.",
        epilog="example: poselift info model/weights/causal.pt --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="checkpoint file (default: the shipped causal model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run_info)


def variant(arch: dict) -> str:
    """``causal``, ``full-context (symmetric)`` or ``look-ahead F of P past frames``."""
    future, past = arch["future_frames"], arch["receptive_field"] - 1 - arch["future_frames"]
    if future == 0:
        return "causal"
    if future == past:
        return "full-context (symmetric)"
    return f"look-ahead ({future} future, {past} past frames)"


def format_info(info: dict) -> str:
    arch = info["architecture"]
    lines = [
        f"checkpoint      {info['path']}",
        f"format version  {info['format_version']}",
        f"variant         {variant(arch)}",
        f"future frames   {arch['future_frames']}  (latency of a streaming lifter, frames)",
        f"filter widths   {','.join(map(str, arch['filter_widths']))}  (receptive field {arch['receptive_field']} frames)",
        f"channels        {arch['channels']}   parameters {arch['parameters'] / 1e6:.2f}M   dropout {arch['dropout']}",
        f"joints          {arch['num_joints_in']} in x {arch['in_features']} features -> {arch['num_joints_out']} out ({info['layout']})",
        f"frame rate      {info['fps']} fps",
        f"normalisation   {info['normalization'].get('description', info['normalization'])}",
        f"trajectory      {'yes' if info['trajectory_model'] else 'no'}"
        + (f" ({info['trajectory_target']})" if info.get("trajectory_target") else ""),
    ]
    training = info.get("training") or {}
    for key, value in training.items():
        text = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"{'training ' + key:<24}{text}")
    return "\n".join(lines)


def run_info(args: argparse.Namespace) -> int:
    from .checkpoint import read_checkpoint_info

    path = args.checkpoint or default_checkpoint()
    info = read_checkpoint_info(path)
    if args.checkpoint is None:  # also list the shipped models that --lookahead F selects
        info["shipped_lookaheads"] = {str(f): str(p) for f, p in shipped_lookaheads().items()}
    text = format_info(info)
    if args.checkpoint is None:
        text += ("\nshipped --lookahead F (frames of latency) for serve/webcam/demo/video: "
                 + describe_lookaheads(shipped_lookaheads()))
    print(json.dumps(info, indent=2, default=str) if args.json else text)
    return 0
