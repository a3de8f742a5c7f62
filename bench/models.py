"""The models the bench runs: 1024-channel causal/symmetric nets at 27, 81 and 243 frames,
and the shipped checkpoints when they exist. Random weights with realistic batch-norm
statistics are as fast as trained ones (the arithmetic does not depend on the values)."""

from __future__ import annotations

from pathlib import Path

import torch

from poselift.model import ModelConfig, TemporalModel

WEIGHTS = Path(__file__).resolve().parents[1] / "model" / "weights"
RF_WIDTHS = {27: (3, 3, 3), 81: (3, 3, 3, 3), 243: (3, 3, 3, 3, 3)}


def randomize_batch_norm(model: TemporalModel, seed: int = 0) -> TemporalModel:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in [model.expand_bn, *model.layers_bn]:
            n = bn.num_features
            bn.running_mean.copy_((torch.rand(n, generator=g) - 0.5) * 0.2)
            bn.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
            bn.bias.copy_((torch.rand(n, generator=g) - 0.5) * 0.4)
    return model


def random_model(rf: int = 243, causal: bool = True, channels: int = 1024, seed: int = 0) -> TemporalModel:
    torch.manual_seed(seed)
    model = TemporalModel(ModelConfig(filter_widths=RF_WIDTHS[rf], causal=causal, channels=channels))
    return randomize_batch_norm(model, seed).eval()


def shipped(name: str = "causal") -> tuple[TemporalModel | None, str]:
    """The shipped checkpoint ``name`` and its path, or (None, reason)."""
    path = WEIGHTS / f"{name}.pt"
    shown = f"model/weights/{name}.pt"
    if not path.exists():
        return None, f"{shown} not found"
    from poselift.model import load_checkpoint

    return load_checkpoint(path).model.eval(), shown


def describe(model: TemporalModel) -> str:
    c = model.config
    kind = "causal" if c.causal else "symmetric"
    return f"{c.receptive_field}f/{c.channels}ch {kind}"
