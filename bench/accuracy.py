"""The accuracy cost of each precision: P1 (MPJPE, mm) of the streaming lifter against fp32.

Data, in order of preference:

1. the validation split of the shared mocap set (``train.dataset.split_takes``), seen
   through the fixed evaluation cameras (``train.generators.evaluation_views``);
2. the bundled demo clip ``stream/assets/demo_clip.npz`` (keypoints in pixels, poses);
3. nothing: the delta is reported as None with the reason.

fp32 is run offline (``lift_sequence``, equal to the fp32 streaming step to 1e-5, which
tests/test_streaming.py proves); the reduced precisions are streamed frame by frame at
batch 1, exactly as a single live stream runs them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from poselift.model import StreamingLifter, TemporalModel, lift_sequence

ROOT = Path(__file__).resolve().parents[1]


def _mocap_root() -> Path:
    env = os.environ.get("POSELIFT_MOCAP")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "mocap" / "cmu"


def validation_sequences(max_frames: int | None = None, mocap: bool = True) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], str]:
    """[(keypoints (T, 17, 2) normalised, poses (T, 17, 3) metres)], and where they came from.
    ``mocap=False`` skips the mocap set (loading it takes minutes on 2 cores) for the clip."""
    why = [] if mocap else ["mocap set not read (bench --quick)"]
    try:
        if not mocap:
            raise LookupError
        from poselift.train.dataset import VALIDATION_SUBJECTS, load_takes, split_takes
        from poselift.train.generators import evaluation_views

        root = _mocap_root()
        if root.is_dir():
            takes = load_takes(root, subjects=set(VALIDATION_SUBJECTS), progress=False)
            _, val = split_takes(takes)
            seqs, total = [], 0
            for i, take in enumerate(val):
                for kp, gt in evaluation_views(take, seed=i):
                    if max_frames is not None and total >= max_frames:
                        break
                    if max_frames is not None:
                        kp, gt = kp[: max_frames - total], gt[: max_frames - total]
                    seqs.append((kp, gt))
                    total += kp.shape[0]
            if seqs:
                return seqs, (f"validation split of the CMU mocap set (subjects {', '.join(VALIDATION_SUBJECTS)}), "
                              f"4 fixed cameras, {total} frames, {len(seqs)} sequences")
        why.append(f"no mocap data at {root}")
    except LookupError:
        pass
    except Exception as exc:  # the training package may be missing or changing
        why.append(f"validation loader failed: {type(exc).__name__}: {exc}")
    clip = ROOT / "stream" / "assets" / "demo_clip.npz"
    if clip.exists():
        d = np.load(clip)
        w, h = float(d["width"]), float(d["height"])
        px = torch.from_numpy(np.asarray(d["keypoints"], dtype=np.float32))
        kp = torch.stack([px[..., 0] / w * 2 - 1, px[..., 1] / w * 2 - h / w], dim=-1)
        gt = torch.from_numpy(np.asarray(d["poses3d"], dtype=np.float32))
        gt = gt - gt[:, :1]
        if max_frames is not None:
            kp, gt = kp[:max_frames], gt[:max_frames]
        return [(kp, gt)], f"bundled demo clip {clip.name} ({kp.shape[0]} frames); " + "; ".join(why)
    return [], "; ".join(why + [f"{clip} not found"])


def p1_mm(pred: torch.Tensor, gt: torch.Tensor) -> float:
    return float((pred.double() - gt.double()).norm(dim=-1).mean() * 1000)


@torch.inference_mode()
def precision_p1(
    model: TemporalModel,
    sequences: list[tuple[torch.Tensor, torch.Tensor]],
    precisions: tuple[str, ...] = ("bf16", "int8"),
    device: str = "cpu",
) -> dict:
    """P1 of fp32 and of each precision on the same frames, and the deltas, in mm."""
    model = model.eval()
    preds: dict[str, list[torch.Tensor]] = {"fp32": []}
    gts = []
    for kp, gt in sequences:
        preds["fp32"].append(lift_sequence(model, kp[None], device=device)[0].cpu())
        gts.append(gt)
    for p in precisions:
        lifter = StreamingLifter(model, batch_size=1, device=device, precision=p)
        out = []
        for kp, _ in sequences:
            lifter.reset()
            out.append(torch.stack([lifter.step(kp[t: t + 1])[0] for t in range(kp.shape[0])]).cpu())
        preds[p] = out
    gt = torch.cat(gts)
    ref = torch.cat(preds["fp32"])
    result = {"frames": int(gt.shape[0]), "p1_mm": {}, "delta_mm": {}, "deviation_from_fp32_mm": {}}
    for p, out in preds.items():
        y = torch.cat(out)
        result["p1_mm"][p] = p1_mm(y, gt)
        result["delta_mm"][p] = result["p1_mm"][p] - result["p1_mm"]["fp32"]
        d = (y - ref).norm(dim=-1) * 1000
        result["deviation_from_fp32_mm"][p] = {"mean": float(d.mean()), "max": float(d.max())}
    return result
