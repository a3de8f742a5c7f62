import pickle
import subprocess
import sys
import zipfile

import pytest
import torch

from poselift.model import CheckpointError, TemporalModel, load_checkpoint, save_checkpoint
from poselift.model.checkpoint import checkpoint_dict
from tests.helpers import random_model


def test_round_trip_rebuilds_model(tmp_path):
    model = random_model((3, 5, 3), causal=True, channels=24)
    traj = random_model((3, 5, 3), causal=True, channels=12, seed=1)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, fps=30.0, training={"epochs": 3}, trajectory_model=traj)
    loaded = load_checkpoint(path)
    assert loaded.model.config == model.config
    assert loaded.fps == 30.0
    assert loaded.meta["training"] == {"epochs": 3}
    assert loaded.meta["joint_names"][0] == "pelvis"
    x = torch.randn(1, 60, 17, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))
        torch.testing.assert_close(loaded.trajectory_model(x), traj(x))
    assert not loaded.model.training


def test_half_precision_storage(tmp_path):
    model = random_model((3, 3), causal=False, channels=16)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, half=True)
    loaded = load_checkpoint(path)
    x = torch.randn(1, 20, 17, 2)
    with torch.no_grad():
        assert (loaded.model(x) - model(x)).abs().max() < 1e-2


def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path)


def test_truncated_and_garbage(tmp_path):
    model = random_model((3, 3), channels=16)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model)
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="trunc.pt|junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


class Evil:
    def __reduce__(self):
        return (subprocess.call, (["touch", "/tmp/poselift_pwned"],))


def test_foreign_pickle_is_refused_and_not_executed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "poselift-checkpoint", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    import os
    assert not os.path.exists("/tmp/poselift_pwned")


def test_mismatched_architecture_and_version(tmp_path):
    model = random_model((3, 3), channels=16)
    ckpt = checkpoint_dict(model)
    ckpt["config"]["channels"] = 32
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path / "mismatch.pt")
    ckpt = checkpoint_dict(model)
    ckpt["format_version"] = 99
    torch.save(ckpt, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "v99.pt")
    torch.save({"state_dict": model.state_dict()}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a poselift checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    ckpt = checkpoint_dict(model)
    del ckpt["state_dict"]["shrink.bias"]
    torch.save(ckpt, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "missing.pt")
    ckpt = checkpoint_dict(model)
    ckpt["state_dict"]["shrink.bias"][0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(tmp_path / "nan.pt")
    ckpt = checkpoint_dict(model)
    ckpt["config"]["filter_widths"] = [2]
    torch.save(ckpt, tmp_path / "badcfg.pt")
    with pytest.raises(CheckpointError, match="invalid architecture"):
        load_checkpoint(tmp_path / "badcfg.pt")


def test_atomic_save_leaves_no_temp_files(tmp_path):
    save_checkpoint(tmp_path / "a.pt", TemporalModel(filter_widths=(3,), channels=8))
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]
    assert zipfile.is_zipfile(tmp_path / "a.pt")


def test_info_cli(tmp_path, capsys):
    from poselift.cli import main

    model = random_model((3, 3), causal=True, channels=16)
    save_checkpoint(tmp_path / "m.pt", model, fps=25.0, training={"data": "test"})
    assert main(["info", str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert "causal" in out and "receptive field 9" in out and "25.0 fps" in out
    (tmp_path / "bad.pt").write_bytes(b"nope")
    assert main(["info", str(tmp_path / "bad.pt")]) == 2
    assert "bad.pt" in capsys.readouterr().err


def test_info_cli_subprocess_no_traceback(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"nope")
    proc = subprocess.run([sys.executable, "-m", "poselift", "info", str(tmp_path / "bad.pt")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "bad.pt" in proc.stderr
