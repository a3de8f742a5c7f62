"""Training: mocap data, virtual cameras, metrics, supervised and semi-supervised training."""

from .dataset import Take, load_takes, split_takes
from .evaluate import EvaluationResult, evaluate_sequences, evaluate_takes
from .trainer import TrainConfig, Trainer, train

__all__ = ["EvaluationResult", "Take", "TrainConfig", "Trainer", "evaluate_sequences", "evaluate_takes",
           "load_takes", "split_takes", "train"]
