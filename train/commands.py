"""``poselift train`` and ``poselift eval``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_MOCAP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mocap" / "cmu"


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated odd integers, got {text!r}") from None
    if not widths or any(w < 1 or w % 2 == 0 for w in widths):
        raise argparse.ArgumentTypeError(f"filter widths must be odd positive integers, got {text!r}")
    return widths


def _subjects(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def register(subparsers: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "train", help="train a causal or full-context model on motion capture",
        description="Train the temporal model on BVH motion capture seen through random virtual cameras.",
        epilog="examples:\n"
               "  poselift train --data ../shared/data/mocap/cmu --arch 3,3,3,3,3 --causal --channels 256 --epochs 10 --out causal.pt\n"
               "  poselift train --data ../shared/data/mocap/cmu --semi-supervised --labeled 07,08 --out semi.pt\n"
               "  poselift train ... --out causal.pt --resume      # continue an interrupted run",
        formatter_class=fmt)
    p.add_argument("--data", default=str(DEFAULT_MOCAP), help="folder (or file) of .bvh/.bvh.gz takes")
    p.add_argument("--arch", type=_widths, default=(3, 3, 3, 3, 3), help="filter widths, e.g. 3,3,3 (RF 27)")
    p.add_argument("--causal", action="store_true", help="causal model (for live use); default full-context")
    p.add_argument("--channels", type=int, default=1024)
    p.add_argument("--future-frames", type=int, default=None, metavar="F",
                   help="look-ahead: each output frame also sees F later frames (live latency F frames); "
                        "0 = causal, (RF-1)/2 = full-context; overrides --causal")
    p.add_argument("--dropout", type=float, default=0.25)
    p.add_argument("--fps", type=float, default=30.0, help="frame rate to train at (stored in the checkpoint)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--chunk", type=int, default=1,
                   help="output frames per sample: 1 trains the strided twin, >1 the dilated model on chunks")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-decay", type=float, default=0.95)
    p.add_argument("--variants", type=int, default=8, help="extra body-proportion variants per take")
    p.add_argument("--noise-px", type=float, default=0.0, help="training 2D noise std (px per 1000 px width)")
    p.add_argument("--missing-prob", type=float, default=0.0, help="training chance of a missing joint")
    p.add_argument("--swap-prob", type=float, default=0.0, help="training chance of a left/right swap per frame")
    p.add_argument("--detector-noise", type=float, default=0.0,
                   help="time-correlated detector-like corruption (docs/corruption.md); each window's strength is "
                        "drawn from [0, S], 1 = MediaPipe-like; 0 = off")
    p.add_argument("--velocity-weight", type=float, default=0.0,
                   help="weight of the velocity error term next to MPJPE (needs --chunk >= 2)")
    p.add_argument("--acceleration-weight", type=float, default=0.0,
                   help="weight of the acceleration error term (needs --chunk >= 3)")
    p.add_argument("--val-detector-noise", type=float, default=0.0,
                   help="also validate every epoch with detector-like corruption of this strength")
    p.add_argument("--init", default="", help="fine-tune: start from this checkpoint's weights (same architecture)")
    p.add_argument("--freeze-bn", action="store_true",
                   help="keep batch-norm statistics fixed (fine-tuning with small batches of chunks)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="validate and save an exponential moving average of the weights (per step, e.g. 0.998 "
                        "averages about the last 500 steps); 0 = the last step's weights")
    p.add_argument("--no-flip", action="store_true", help="disable flip augmentation")
    p.add_argument("--no-distortion", action="store_true", help="train with distortion-free cameras")
    p.add_argument("--validation-subjects", type=_subjects, default=None, help="comma list (default 09,12,94)")
    p.add_argument("--train-subjects", type=_subjects, default=(), help="train only on these subjects")
    p.add_argument("--semi-supervised", action="store_true", help="back-projection on unlabelled subjects")
    p.add_argument("--labeled", type=_subjects, default=(), help="labelled subjects for --semi-supervised")
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--max-batches", type=int, default=0, help="cap batches per epoch (0: full epochs)")
    p.add_argument("--half", action="store_true", help="store the model weights in fp16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", required=True, help="checkpoint to write (also OUT.state.pt and OUT.curves.png)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.state.pt")
    p.set_defaults(func=run_train)

    e = subparsers.add_parser(
        "eval", help="evaluate a checkpoint (P1, P2, P3, MPJVE)",
        description="Evaluate a checkpoint on BVH takes (fixed, documented camera protocol: 4 cameras at yaw "
                    "0/90/180/270 deg, 6 m from the take's mean position, 1.6 m high, 1280x720, 60 deg FOV) "
                    "or on VideoPose3D npz files (3D file then 2D file).",
        epilog="examples:\n"
               "  poselift eval model/weights/causal.pt --data ../shared/data/mocap/cmu --subjects 09,12,94\n"
               "  poselift eval causal.pt --data data_3d_h36m.npz data_2d_h36m_cpn_ft_h36m_dbb.npz --json out.json",
        formatter_class=fmt)
    e.add_argument("checkpoint")
    e.add_argument("--data", nargs="+", default=[str(DEFAULT_MOCAP)],
                   help="BVH file or folder, or the VideoPose3D 3D and 2D npz files")
    e.add_argument("--subjects", type=_subjects, default=None, help="only these subjects (BVH data)")
    e.add_argument("--cameras", type=int, default=4, help="protocol cameras per take")
    e.add_argument("--noise-px", type=float, default=0.0)
    e.add_argument("--missing-prob", type=float, default=0.0)
    e.add_argument("--swap-prob", type=float, default=0.0)
    e.add_argument("--detector-noise", type=float, default=0.0,
                   help="detector-like corruption at this strength (1 = MediaPipe-like; docs/corruption.md)")
    e.add_argument("--max-frames", type=int, default=0, help="evaluate only the first N frames of each take (0: all)")
    e.add_argument("--flip-tta", action="store_true", help="average with the mirrored input")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="auto")
    e.add_argument("--json", help="also write the figures (metres) to this JSON file")
    e.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from .trainer import TrainConfig, train

    kwargs = {}
    if args.validation_subjects is not None:
        kwargs["validation_subjects"] = args.validation_subjects
    config = TrainConfig(
        data=args.data, filter_widths=args.arch, causal=args.causal, channels=args.channels, dropout=args.dropout,
        fps=args.fps, epochs=args.epochs, batch_size=args.batch_size, chunk=args.chunk, lr=args.lr,
        lr_decay=args.lr_decay, flip=not args.no_flip, variants=args.variants, noise_px=args.noise_px,
        missing_prob=args.missing_prob, swap_prob=args.swap_prob, distortion=not args.no_distortion,
        seed=args.seed, max_batches_per_epoch=args.max_batches, train_subjects=args.train_subjects, semi_supervised=args.semi_supervised,
        labeled_subjects=args.labeled, warmup_epochs=args.warmup_epochs, half_weights=args.half,
        detector_noise=args.detector_noise, velocity_loss_weight=args.velocity_weight,
        acceleration_loss_weight=args.acceleration_weight, val_detector_noise=args.val_detector_noise,
        init_from=args.init, freeze_batch_norm=args.freeze_bn, future_frames=args.future_frames,
        ema_decay=args.ema, **kwargs)
    result = train(config, args.out, resume=args.resume, device=args.device)
    if result.interrupted:
        return 130
    print(f"wrote {args.out}")
    return 0


def evaluate_paths(checkpoint: str, data: list[str], subjects: tuple[str, ...] | None = None, cameras: int = 4,
                   noise_px: float = 0.0, missing_prob: float = 0.0, swap_prob: float = 0.0, flip_tta: bool = False,
                   seed: int = 0, device: str = "auto", detector_noise: float = 0.0, max_frames: int = 0):
    """Evaluate ``checkpoint`` on BVH takes or VideoPose3D npz files; returns an EvaluationResult."""
    import torch

    from poselift.model import load_checkpoint, resolve_device
    from poselift.model.normalization import normalize_screen

    from .cameras import Corruption
    from .corruption import DetectorNoise
    from .dataset import Take, load_takes
    from .evaluate import evaluate_sequences, evaluate_takes

    ckpt = load_checkpoint(checkpoint)
    dev = resolve_device(device)
    corruption = Corruption(noise_px, missing_prob, swap_prob,
                            detector=DetectorNoise(detector_noise) if detector_noise > 0 else None)
    if len(data) == 2 and all(d.endswith(".npz") for d in data):
        from .h36m_npz import load_videopose3d

        sequences = []
        for take in load_videopose3d(data[0], data[1]):
            kp = torch.from_numpy(normalize_screen(take.keypoints_2d[..., :2], take.width, take.height))
            gt = torch.from_numpy(take.positions_3d_camera - take.positions_3d_camera[:, :1]).float()
            sequences.append((f"{take.subject}/{take.action}", kp, gt))
        return evaluate_sequences(ckpt.model, sequences, dev, flip_tta)
    if len(data) != 1:
        raise ValueError("--data takes one BVH file or folder, or two npz files (3D then 2D)")
    takes = load_takes(data[0], fps=ckpt.fps, subjects=set(subjects) if subjects else None)
    if not takes:
        raise ValueError(f"no takes found in {data[0]} for subjects {subjects}")
    if max_frames > 0:
        takes = [Take(t.name, t.subject, t.positions[:max_frames], t.variant) for t in takes]
    return evaluate_takes(ckpt.model, takes, dev, corruption, cameras, seed, flip_tta)


def run_eval(args: argparse.Namespace) -> int:
    from .evaluate import format_table

    result = evaluate_paths(args.checkpoint, args.data, args.subjects, args.cameras, args.noise_px,
                            args.missing_prob, args.swap_prob, args.flip_tta, args.seed, args.device,
                            args.detector_noise, args.max_frames)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2))
        print(f"wrote {args.json}")
    return 0
