"""Fine-tuning starts from a checkpoint's weights (--init), and only from a matching one."""

import pytest
import torch

from poselift.model import ModelConfig, TemporalModel, save_checkpoint
from poselift.train.dataset import load_takes
from poselift.train.trainer import TrainConfig, Trainer


def test_init_from_checkpoint(tmp_path, mocap_dir):
    takes = load_takes(mocap_dir / "subject_05", progress=False) + load_takes(mocap_dir / "subject_06", progress=False)
    torch.manual_seed(123)
    source = TemporalModel(ModelConfig(filter_widths=(3, 3), causal=True, channels=16))
    save_checkpoint(tmp_path / "src.pt", source, fps=30.0)
    base = dict(data="unused", filter_widths=(3, 3), causal=True, channels=16, validation_subjects=("06",), variants=0)
    t = Trainer(TrainConfig(init_from=str(tmp_path / "src.pt"), **base), "cpu", takes, progress=False)
    for k, v in source.state_dict().items():
        assert torch.equal(t.model.state_dict()[k], v), k
    fresh = Trainer(TrainConfig(**base), "cpu", takes, progress=False)
    assert not torch.equal(fresh.model.state_dict()["expand_conv.weight"], source.state_dict()["expand_conv.weight"])
    # dropout is not architecture: a fine-tune may change it
    Trainer(TrainConfig(init_from=str(tmp_path / "src.pt"), **(base | dict(dropout=0.0))), "cpu", takes, progress=False)
    with pytest.raises(ValueError, match="architecture"):
        Trainer(TrainConfig(init_from=str(tmp_path / "src.pt"), **(base | dict(channels=32))), "cpu", takes,
                progress=False)


def test_freeze_batch_norm_keeps_running_statistics(tmp_path, mocap_dir):
    takes = load_takes(mocap_dir / "subject_05", progress=False) + load_takes(mocap_dir / "subject_06", progress=False)
    base = dict(data="unused", filter_widths=(3, 3), causal=True, channels=16, validation_subjects=("06",), variants=0,
                chunk=4, batch_size=8, max_batches_per_epoch=2, epochs=1)
    for freeze in (True, False):
        t = Trainer(TrainConfig(freeze_batch_norm=freeze, **base), "cpu", takes, progress=False)
        before = t.model.expand_bn.running_mean.clone()
        weight = t.model.expand_conv.weight.detach().clone()
        t.train_epoch()
        assert torch.equal(t.model.expand_bn.running_mean, before) == freeze
        assert not torch.equal(t.model.expand_conv.weight, weight)  # the rest trains either way


def test_a_single_frame_model_fine_tunes_from_its_own_checkpoint(tmp_path, mocap_dir):
    """At a receptive field of 1, causal and symmetric are one model: a single-frame checkpoint
    (stored as symmetric) starts a single-frame fine-tune, however the flag is set."""
    takes = load_takes(mocap_dir / "subject_05", progress=False) + load_takes(mocap_dir / "subject_06", progress=False)
    source = TemporalModel(ModelConfig(filter_widths=(1, 1), causal=False, channels=16, dropout=0.25))
    save_checkpoint(tmp_path / "single.pt", source, fps=30.0)
    base = dict(data="unused", filter_widths=(1, 1), channels=16, validation_subjects=("06",), variants=0, dropout=0.0)
    for causal in (False, True):
        t = Trainer(TrainConfig(init_from=str(tmp_path / "single.pt"), causal=causal, **base), "cpu", takes,
                    progress=False)
        for k, v in source.state_dict().items():
            assert torch.equal(t.model.state_dict()[k], v), k
    with pytest.raises(ValueError, match="architecture"):  # a temporal model is not a single-frame one
        Trainer(TrainConfig(init_from=str(tmp_path / "single.pt"), **(base | dict(filter_widths=(3, 3)))), "cpu",
                takes, progress=False)
