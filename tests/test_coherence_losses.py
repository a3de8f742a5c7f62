"""Coherence losses (velocity / acceleration error over chunks of consecutive output
frames), their wiring into the trainer and the CLI, and MPJVE in the logs."""

import json

import pytest
import torch

from poselift.model import ModelConfig, TemporalModel
from poselift.train.dataset import load_takes
from poselift.train.generators import WindowSampler
from poselift.train.metrics import temporal_difference_loss
from poselift.train.trainer import TrainConfig, Trainer, train
from tests.helpers import TINY_TRAIN_ARGS, two_take_dataset


@pytest.fixture(scope="module")
def small_takes(mocap_dir):
    return load_takes(mocap_dir / "subject_05", progress=False) + load_takes(mocap_dir / "subject_06", progress=False)


def tiny_config(**kw) -> TrainConfig:
    base = dict(data="unused", filter_widths=(3, 3), channels=16, epochs=1, batch_size=16, max_batches_per_epoch=2,
                validation_subjects=("06",), eval_cameras=1, variants=0, chunk=4)
    base.update(kw)
    return TrainConfig(**base)


def test_velocity_loss_ignores_a_constant_offset_and_charges_jitter():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(8, 6, 17, 3, generator=g)
    shifted = target + torch.randn(8, 1, 17, 3, generator=g)  # constant over the chunk
    assert float(temporal_difference_loss(shifted, target, 1)) < 1e-6
    jittered = target + 0.01 * torch.randn(8, 6, 17, 3, generator=g)
    assert float(temporal_difference_loss(jittered, target, 1)) > 5e-3
    # acceleration: a drift linear in time costs nothing, jitter does
    ramp = target + torch.arange(6.0).reshape(1, 6, 1, 1) * 0.1
    assert float(temporal_difference_loss(ramp, target, 2)) < 1e-6
    assert float(temporal_difference_loss(ramp, target, 1)) == pytest.approx(0.1 * 3 ** 0.5, rel=1e-4)
    assert float(temporal_difference_loss(jittered, target, 2)) > 1e-2


def test_velocity_loss_gradient_flows_and_needs_enough_frames():
    pred = torch.zeros(2, 3, 17, 3, requires_grad=True)
    target = torch.randn(2, 3, 17, 3)
    temporal_difference_loss(pred, target, 1).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="chunk"):
        temporal_difference_loss(torch.zeros(2, 1, 17, 3), torch.zeros(2, 1, 17, 3), 1)
    with pytest.raises(ValueError, match="chunk"):
        temporal_difference_loss(torch.zeros(2, 2, 17, 3), torch.zeros(2, 2, 17, 3), 2)


def test_chunk_training_yields_consecutive_output_frames(small_takes):
    model = TemporalModel(ModelConfig(filter_widths=(3, 3), causal=True, channels=16)).eval()
    rf, chunk = model.receptive_field(), 5
    sampler = WindowSampler(small_takes[:1], rf, causal=True, chunk=chunk, flip=False)
    first = torch.tensor([40, 100])
    batch = sampler.make_batch(first, torch.Generator().manual_seed(0))
    assert batch.inputs.shape[1] == rf + chunk - 1 and batch.targets.shape[1] == chunk
    with torch.no_grad():
        out = model(batch.inputs)
        assert out.shape[1] == chunk
        for k in range(chunk):  # output k is the model on the window ending k frames later
            assert torch.allclose(out[:, k], model(batch.inputs[:, k:k + rf])[:, 0], atol=1e-5)
    # targets are frames first .. first + chunk - 1 (distances to the root survive any camera)
    data = sampler.data
    for k in range(chunk):
        world = data[first + k] - data[first + k][:, :1]
        assert torch.allclose(batch.targets[:, k].norm(dim=-1), world.norm(dim=-1), atol=1e-4)


def test_trainer_adds_weighted_coherence_terms_and_logs_mpjve(small_takes, tmp_path):
    with pytest.raises(ValueError, match="--chunk"):
        Trainer(tiny_config(chunk=1, velocity_loss_weight=1.0), "cpu", small_takes, progress=False)
    with pytest.raises(ValueError, match="--chunk"):
        Trainer(tiny_config(chunk=2, acceleration_loss_weight=1.0), "cpu", small_takes, progress=False)
    cfg = tiny_config(velocity_loss_weight=2.0, acceleration_loss_weight=1.0, detector_noise=1.0,
                      val_detector_noise=1.0)
    t = Trainer(cfg, "cpu", small_takes, progress=False)
    batch = t.sampler.sample(8, torch.Generator().manual_seed(0))
    target = batch.targets[batch.valid]
    t.model.eval()  # no dropout: two forward passes agree
    losses = t._losses(batch, None)
    assert set(losses) == {"pose", "velocity", "acceleration"}
    with torch.no_grad():
        pose = t.model(batch.inputs[batch.valid])
    assert float(losses["velocity"].detach()) == pytest.approx(2.0 * float(temporal_difference_loss(pose, target, 1)), rel=1e-5)
    result = train(cfg, tmp_path / "m.pt", device="cpu", takes=small_takes, progress=False, plot=False)
    record = result.history[-1]
    for key in ("loss_velocity", "loss_acceleration", "train_mpjve", "val_mpjve", "val_noisy_mpjpe", "val_noisy_mpjve"):
        assert key in record and record[key] > 0, key


def test_detector_noise_reaches_training_batches(small_takes):
    clean = Trainer(tiny_config(), "cpu", small_takes, progress=False)
    noisy = Trainer(tiny_config(detector_noise=2.0), "cpu", small_takes, progress=False)
    assert noisy.sampler.corruption.detector is not None and noisy.sampler.corruption.detector.random_strength
    a = clean.sampler.sample(32, torch.Generator().manual_seed(1))
    b = noisy.sampler.sample(32, torch.Generator().manual_seed(1))
    assert clean.sampler.corruption.detector is None
    assert not torch.allclose(a.inputs, b.inputs)


def test_cli_flags_reach_the_config(tmp_path, mocap_dir, capsys):
    from poselift.cli import main

    data = two_take_dataset(mocap_dir, tmp_path)
    out = tmp_path / "m.pt"
    assert main(["train", "--data", str(data), *TINY_TRAIN_ARGS, "--batch-size", "16", "--variants", "0",
                 "--chunk", "4", "--velocity-weight", "0.5", "--acceleration-weight", "0.25",
                 "--detector-noise", "1.5", "--val-detector-noise", "1", "--out", str(out)]) == 0
    log = capsys.readouterr()
    assert "MPJVE" in log.out + log.err and "detector-noisy" in log.out + log.err
    from poselift.model import load_checkpoint

    cfg = load_checkpoint(out).meta["training"]["config"]
    assert (cfg["velocity_loss_weight"], cfg["acceleration_loss_weight"], cfg["detector_noise"]) == (0.5, 0.25, 1.5)
    assert main(["eval", str(out), "--data", str(data), "--subjects", "06", "--cameras", "1", "--device", "cpu",
                 "--detector-noise", "1", "--max-frames", "60", "--json", str(tmp_path / "e.json")]) == 0
    figures = json.loads((tmp_path / "e.json").read_text())
    assert figures["mpjve"] > 0 and figures["frames"] == 60
