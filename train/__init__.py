"""Training: mocap data, virtual cameras, metrics, supervised and semi-supervised training.

The public names are imported lazily, so ``poselift --help`` does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Take": "dataset", "load_takes": "dataset", "split_takes": "dataset",
    "EvaluationResult": "evaluate", "evaluate_sequences": "evaluate", "evaluate_takes": "evaluate",
    "TrainConfig": "trainer", "Trainer": "trainer", "train": "trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'train' has no attribute {name!r}")
