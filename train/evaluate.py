"""Whole-sequence evaluation under the fixed camera protocol (see generators.evaluation_views)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from poselift.model import TemporalModel, lift_sequence

from .cameras import Corruption
from .dataset import Take
from .generators import evaluation_views
from .metrics import evaluate_poses

METRIC_KEYS = ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve")


@dataclass
class EvaluationResult:
    """Metrics in metres (MPJVE in metres per frame), averaged over all frames; per take too."""

    mpjpe: float
    p_mpjpe: float
    n_mpjpe: float
    mpjve: float
    frames: int
    per_take: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"mpjpe": self.mpjpe, "p_mpjpe": self.p_mpjpe, "n_mpjpe": self.n_mpjpe, "mpjve": self.mpjve,
                "frames": self.frames, "per_take": self.per_take}


def evaluate_sequences(model: TemporalModel, sequences: list[tuple[str, torch.Tensor, torch.Tensor]],
                       device: str | torch.device = "cpu", flip_tta: bool = False) -> EvaluationResult:
    """Evaluate on named (keypoints (T, 17, 2) normalised, poses (T, 17, 3) metres) pairs.

    Several sequences may share a name (e.g. the views of one take); they are pooled.
    ``flip_tta`` averages the prediction with that of the mirrored input.
    """
    model = model.eval()
    sums: dict[str, dict[str, float]] = {}
    for name, kp, gt in sequences:
        pred = lift_sequence(model, kp[None], device=device, flip_tta=flip_tta)[0].cpu()
        if gt.shape[0] > 1:
            m = evaluate_poses(pred.double().numpy(), gt.double().numpy())
        else:
            from .metrics import mpjpe_np, n_mpjpe_np, p_mpjpe

            p, g = pred.double().numpy(), gt.double().numpy()
            m = {"mpjpe": mpjpe_np(p, g), "p_mpjpe": p_mpjpe(p, g), "n_mpjpe": n_mpjpe_np(p, g), "mpjve": 0.0}
        acc = sums.setdefault(name, {k: 0.0 for k in METRIC_KEYS} | {"frames": 0, "vel_frames": 0})
        n = gt.shape[0]
        for k in ("mpjpe", "p_mpjpe", "n_mpjpe"):
            acc[k] += m[k] * n
        if n > 1:  # MPJVE needs two frames
            acc["mpjve"] += m["mpjve"] * (n - 1)
        acc["frames"] += n
        acc["vel_frames"] += max(n - 1, 0)
    per_take = {}
    for name, acc in sums.items():
        per_take[name] = {k: acc[k] / acc["frames"] for k in ("mpjpe", "p_mpjpe", "n_mpjpe")}
        per_take[name]["mpjve"] = acc["mpjve"] / max(acc["vel_frames"], 1)
        per_take[name]["frames"] = acc["frames"]
    frames = sum(a["frames"] for a in sums.values())
    vel = sum(a["vel_frames"] for a in sums.values())
    total = {k: sum(a[k] for a in sums.values()) / max(frames, 1) for k in ("mpjpe", "p_mpjpe", "n_mpjpe")}
    total["mpjve"] = sum(a["mpjve"] for a in sums.values()) / max(vel, 1)
    return EvaluationResult(frames=frames, per_take=per_take, **total)


def evaluate_takes(model: TemporalModel, takes: list[Take], device: str | torch.device = "cpu",
                   corruption: Corruption = Corruption(), cameras_per_take: int = 4, seed: int = 0,
                   flip_tta: bool = False) -> EvaluationResult:
    """Evaluate on mocap takes seen through the fixed protocol cameras."""
    sequences = []
    for i, take in enumerate(takes):
        for kp, gt in evaluation_views(take, cameras_per_take, corruption=corruption, seed=seed + i):
            sequences.append((take.name, kp, gt))
    return evaluate_sequences(model, sequences, device, flip_tta)


def format_table(result: EvaluationResult) -> str:
    """Per-take and average P1/P2/P3 (mm) and MPJVE (mm/frame) as a text table."""
    header = f"{'take':<24}{'frames':>8}{'P1 mm':>9}{'P2 mm':>9}{'P3 mm':>9}{'MPJVE':>9}"
    lines = [header, "-" * len(header)]
    for name, m in sorted(result.per_take.items()):
        lines.append(f"{name:<24}{int(m['frames']):>8}{m['mpjpe'] * 1e3:>9.1f}{m['p_mpjpe'] * 1e3:>9.1f}"
                     f"{m['n_mpjpe'] * 1e3:>9.1f}{m['mpjve'] * 1e3:>9.2f}")
    lines.append("-" * len(header))
    lines.append(f"{'average (all frames)':<24}{result.frames:>8}{result.mpjpe * 1e3:>9.1f}{result.p_mpjpe * 1e3:>9.1f}"
                 f"{result.n_mpjpe * 1e3:>9.1f}{result.mpjve * 1e3:>9.2f}")
    return "\n".join(lines)
