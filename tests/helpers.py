"""Shared test utilities (imported by tests, not collected)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from poselift.model import TemporalModel


def randomize_batch_norm(model: TemporalModel, seed: int = 0) -> TemporalModel:
    """Give every BN non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in [model.expand_bn, *model.layers_bn]:
            n = bn.num_features
            bn.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            bn.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
            bn.bias.copy_((torch.rand(n, generator=g) - 0.5) * 0.4)
    return model


def random_model(filter_widths=(3, 3, 3), causal=True, channels=64, seed=0) -> TemporalModel:
    torch.manual_seed(seed)
    model = TemporalModel(filter_widths=filter_widths, causal=causal, channels=channels)
    return randomize_batch_norm(model, seed).eval()


def two_take_dataset(mocap_dir: Path, root: Path) -> Path:
    """A tiny BVH folder under ``root``: take 05_01 (training) and 06_01 (validation subject 06)."""
    data = root / "data"
    for sub, take in (("subject_05", "05_01"), ("subject_06", "06_01")):
        (data / sub).mkdir(parents=True)
        shutil.copy(mocap_dir / sub / f"{take}.bvh.gz", data / sub)
    return data


# A causal 16-channel, RF 9 model for one short epoch on CPU, validating on subject 06.
TINY_TRAIN_ARGS: tuple[str, ...] = ("--arch", "3,3", "--causal", "--channels", "16", "--epochs", "1",
                                    "--max-batches", "2", "--validation-subjects", "06", "--device", "cpu")
