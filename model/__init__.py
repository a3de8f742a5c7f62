"""poselift model core: temporal conv lifter, its strided twin, streaming, checkpoints."""

from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint_info, save_checkpoint
from .config import ModelConfig
from .device import resolve_device
from .folding import FoldedModel, fold_model
from .inference import lift_sequence
from .layers import LayerKind, LayerSpec, layer_specs
from .precision import PRECISIONS, Precision, get_precision, precision_names
from .streaming import StreamingLifter, StreamState
from .temporal import StridedTemporalModel, TemporalModel

__all__ = [
    "PRECISIONS",
    "CheckpointError",
    "FoldedModel",
    "LayerKind",
    "LayerSpec",
    "ModelConfig",
    "Precision",
    "StreamState",
    "StreamingLifter",
    "StridedTemporalModel",
    "TemporalModel",
    "fold_model",
    "get_precision",
    "layer_specs",
    "lift_sequence",
    "load_checkpoint",
    "precision_names",
    "read_checkpoint_info",
    "resolve_device",
    "save_checkpoint",
]
