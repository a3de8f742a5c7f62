import json

import pytest
import torch

from poselift.model import load_checkpoint
from poselift.train.dataset import load_takes
from poselift.train.trainer import TrainConfig, Trainer, bn_momentum, state_path, train
from tests.helpers import TINY_TRAIN_ARGS, two_take_dataset


@pytest.fixture(scope="module")
def small_takes(mocap_dir):
    train_part = load_takes(mocap_dir / "subject_05", progress=False)
    val_part = load_takes(mocap_dir / "subject_06", progress=False)
    return train_part + val_part


def tiny_config(**kw) -> TrainConfig:
    base = dict(data="unused", filter_widths=(3, 3), channels=16, epochs=3, batch_size=32, max_batches_per_epoch=3,
                validation_subjects=("06",), eval_cameras=1, variants=0, noise_px=2.0, missing_prob=0.05)
    base.update(kw)
    return TrainConfig(**base)


def test_bn_momentum_schedule():
    cfg = tiny_config(epochs=5)
    assert bn_momentum(cfg, 0) == pytest.approx(0.1)
    assert bn_momentum(cfg, 4) == pytest.approx(0.001)
    assert bn_momentum(cfg, 0) > bn_momentum(cfg, 2) > bn_momentum(cfg, 4)


@pytest.mark.parametrize("causal, chunk", [(True, 1), (False, 4)])
def test_training_improves_and_writes_checkpoint(tmp_path, small_takes, causal, chunk):
    cfg = tiny_config(causal=causal, chunk=chunk, epochs=2, max_batches_per_epoch=15, batch_size=64, channels=32)
    result = train(cfg, tmp_path / "m.pt", device="cpu", takes=small_takes, progress=False)
    h = result.history
    assert len(h) == 2 and h[1]["loss_pose"] < h[0]["loss_pose"]
    assert "val_mpjpe" in h[1] and h[1]["lr"] == pytest.approx(0.95e-3)
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt.model.config.causal == causal and ckpt.meta["training"]["epochs_done"] == 2
    assert (tmp_path / "m.pt.curves.png").stat().st_size > 1000


def test_resume_is_bit_for_bit(tmp_path, small_takes):
    cfg = tiny_config()
    full = train(cfg, tmp_path / "a.pt", device="cpu", takes=small_takes, progress=False, plot=False)
    # run 1 epoch, then resume to 3
    train(tiny_config(epochs=1), tmp_path / "b.pt", device="cpu", takes=small_takes, progress=False, plot=False)
    resumed = train(cfg, tmp_path / "b.pt", resume=True, device="cpu", takes=small_takes, progress=False, plot=False)
    assert [h["loss_pose"] for h in resumed.history] == [h["loss_pose"] for h in full.history]
    a = load_checkpoint(tmp_path / "a.pt").model.state_dict()
    b = load_checkpoint(tmp_path / "b.pt").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_settings_and_missing_state(tmp_path, small_takes):
    train(tiny_config(epochs=1), tmp_path / "m.pt", device="cpu", takes=small_takes, progress=False, plot=False)
    from poselift.model import CheckpointError

    with pytest.raises(CheckpointError, match="channels"):
        train(tiny_config(channels=8), tmp_path / "m.pt", resume=True, device="cpu", takes=small_takes, progress=False)
    with pytest.raises(FileNotFoundError, match="state"):
        train(tiny_config(), tmp_path / "other.pt", resume=True, device="cpu", takes=small_takes, progress=False)


def test_ctrl_c_keeps_last_epoch_and_saves_snapshot(tmp_path, small_takes, monkeypatch):
    calls = {"n": 0}
    original = Trainer.train_epoch

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    result = train(tiny_config(), tmp_path / "m.pt", device="cpu", takes=small_takes, progress=False, plot=False)
    assert result.interrupted and len(result.history) == 1
    assert load_checkpoint(tmp_path / "m.pt").meta["training"]["epochs_done"] == 1
    assert load_checkpoint(tmp_path / "m.pt.interrupted.pt").model is not None
    monkeypatch.setattr(Trainer, "train_epoch", original)
    done = train(tiny_config(), tmp_path / "m.pt", resume=True, device="cpu", takes=small_takes, progress=False, plot=False)
    assert len(done.history) == 3


def test_semi_supervised_uses_back_projection_and_bone_terms(tmp_path, small_takes):
    takes = [t for t in small_takes]
    # subject 05 labelled, a copy of it renamed to subject 07 plays the unlabelled data
    from poselift.train.dataset import Take

    unl = [Take(t.name + "_u", "07", t.positions) for t in takes if t.subject == "05"]
    cfg = tiny_config(semi_supervised=True, labeled_subjects=("05",), warmup_epochs=1, epochs=2, chunk=2)
    result = train(cfg, tmp_path / "s.pt", device="cpu", takes=takes + unl, progress=False, plot=False)
    first, second = result.history
    assert "loss_reprojection" not in first  # warm-up: labelled only
    assert {"loss_pose", "loss_trajectory", "loss_reprojection", "loss_bone"} <= set(second)
    ckpt = load_checkpoint(tmp_path / "s.pt")
    assert ckpt.trajectory_model is not None and ckpt.trajectory_model.config.num_joints_out == 1
    with pytest.raises(ValueError, match="labelled and unlabelled"):
        Trainer(tiny_config(semi_supervised=True, labeled_subjects=("99",)), "cpu", takes, progress=False)


def test_train_and_eval_cli(tmp_path, mocap_dir, capsys):
    from poselift.cli import main

    data = two_take_dataset(mocap_dir, tmp_path)
    out = tmp_path / "m.pt"
    assert main(["train", "--data", str(data), *TINY_TRAIN_ARGS, "--batch-size", "32", "--variants", "1",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--data", str(data), "--subjects", "06", "--cameras", "2", "--device", "cpu",
                 "--json", str(tmp_path / "e.json")]) == 0
    table = capsys.readouterr().out
    assert "subject_06/06_01" in table and "average" in table
    figures = json.loads((tmp_path / "e.json").read_text())
    assert {"mpjpe", "p_mpjpe", "n_mpjpe", "mpjve", "per_take"} <= set(figures)
    assert 0 < figures["p_mpjpe"] <= figures["mpjpe"] < 2.0
    assert main(["eval", str(out), "--data", str(tmp_path / "nowhere")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["train", "--arch", "3,4", "--out", str(tmp_path / "x.pt")])
    assert exc.value.code == 2 and "odd" in capsys.readouterr().err
    assert state_path(out).exists()


def test_shipped_models_load_and_beat_trivial_baseline(mocap_dir):
    """The committed weights are real: on a held-out take they beat the mean-pose baseline by far."""
    from poselift.model.commands import default_checkpoint
    from poselift.train.evaluate import evaluate_takes

    takes = load_takes(mocap_dir / "subject_12", progress=False)[:1]
    for name in ("causal", "full", "single_frame"):
        ckpt = load_checkpoint(default_checkpoint(name))
        assert ckpt.fps == 30.0 and ckpt.model.config.causal == (name == "causal")
        result = evaluate_takes(ckpt.model, takes, cameras_per_take=1)
        assert result.mpjpe < 0.08, name  # metres; a mean pose scores ~0.2 m


def test_ema_is_the_average_of_the_steps_weights_and_is_what_is_saved(tmp_path, small_takes):
    decay = 0.9
    trainer = Trainer(tiny_config(ema_decay=decay, epochs=1), "cpu", small_takes, progress=False)
    steps: list[torch.Tensor] = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        out = step(*args, **kwargs)
        steps.append(trainer.model.expand_conv.weight.detach().clone())
        return out

    trainer.optimizer.step = recording_step
    trainer.train_epoch()
    assert len(steps) == 3
    expected = steps[0]
    for w in steps[1:]:
        expected = decay * expected + (1 - decay) * w
    averaged = trainer.result_model.expand_conv.weight
    assert torch.allclose(averaged, expected, atol=1e-7)
    assert not torch.allclose(averaged, trainer.model.expand_conv.weight)  # not the last step's weights
    trainer.epoch = 1
    trainer.save(tmp_path / "m.pt")
    saved = load_checkpoint(tmp_path / "m.pt").model.expand_conv.weight
    assert torch.equal(saved, averaged.detach())


def test_resume_with_ema_is_bit_for_bit(tmp_path, small_takes):
    cfg = tiny_config(ema_decay=0.8)
    train(cfg, tmp_path / "a.pt", device="cpu", takes=small_takes, progress=False, plot=False)
    train(tiny_config(ema_decay=0.8, epochs=1), tmp_path / "b.pt", device="cpu", takes=small_takes, progress=False,
          plot=False)
    train(cfg, tmp_path / "b.pt", resume=True, device="cpu", takes=small_takes, progress=False, plot=False)
    a = load_checkpoint(tmp_path / "a.pt").model.state_dict()
    b = load_checkpoint(tmp_path / "b.pt").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="ema_decay"):
        tiny_config(ema_decay=1.0)
