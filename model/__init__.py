"""poselift model core: temporal conv lifter, its strided twin, streaming, checkpoints."""

from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint_info, save_checkpoint
from .config import ModelConfig
from .folding import FoldedModel, fold_model
from .streaming import StreamingLifter, StreamState, lift_sequence, resolve_device
from .temporal import StridedTemporalModel, TemporalModel

__all__ = [
    "CheckpointError",
    "FoldedModel",
    "ModelConfig",
    "StreamState",
    "StreamingLifter",
    "StridedTemporalModel",
    "TemporalModel",
    "fold_model",
    "lift_sequence",
    "load_checkpoint",
    "read_checkpoint_info",
    "resolve_device",
    "save_checkpoint",
]
