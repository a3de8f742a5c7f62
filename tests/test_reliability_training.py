"""Training robustness: ``kill -9`` mid-epoch, then ``--resume``; unsafe or damaged
checkpoint files are refused with a clear message and never execute code.

(tests/test_checkpoint.py covers missing/empty/truncated files, a foreign pickle with a
``__reduce__`` payload, architecture and version mismatches; this file adds a real killed
``poselift train`` process, tampered zip members, a legacy pickle with a code payload,
the training-state file and resume on damaged state.)
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from poselift.model import CheckpointError, load_checkpoint
from poselift.model.checkpoint import read_raw
from tests.reliability_helpers import ROOT

PWNED = Path("/tmp/poselift_reliability_pwned")


def train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "poselift", "train", "--data", str(data), "--validation-subjects", "06",
            "--arch", "3,3", "--channels", "16", "--batch-size", "8", "--max-batches", "50", "--variants", "2",
            "--device", "cpu", "--epochs", "4", "--causal", "--out", str(out), *extra]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data(mocap_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("mocap")
    for sub in ("subject_05", "subject_06"):
        shutil.copytree(mocap_dir / sub, d / sub)
    return d


def test_kill_9_mid_epoch_then_resume(tmp_path, data):
    """SIGKILL while epoch 2 is running (epoch 1's checkpoint and state are on disk), then
    ``--resume``: it continues after epoch 1 and ends bit-for-bit where an uninterrupted run
    ends; the files left by the killed run were never half-written."""
    out = tmp_path / "killed.pt"
    proc = subprocess.Popen(train_cmd(data, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    seen = bytearray()
    mid_epoch = threading.Event()

    def watch():  # tqdm progress on stderr: kill once a batch of epoch 2 has been reported
        while True:
            chunk = proc.stderr.read1(4096)
            if not chunk:
                return
            seen.extend(chunk)
            text = seen.decode(errors="replace")
            i = text.find("epoch 2/4")
            if i >= 0 and "pose_mm" in text[i:]:
                mid_epoch.set()

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    try:
        assert mid_epoch.wait(120), seen.decode(errors="replace")[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    # what the killed run left behind is complete: the checkpoint and the training state of epoch 1
    ckpt = load_checkpoint(out)
    done = ckpt.meta["training"]["epochs_done"]
    assert 1 <= done < 4  # epoch 1 (epoch 2 was running; a very fast machine might have finished it)
    state = read_raw(out.with_name(out.name + ".state.pt"))
    assert state["epoch"] == done and len(state["history"]) == done

    resumed = subprocess.run(train_cmd(data, out, "--resume"), capture_output=True, text=True, env=env(),
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming after epoch {done} of 4" in resumed.stdout + resumed.stderr
    ref_out = tmp_path / "uninterrupted.pt"
    ref = subprocess.run(train_cmd(data, ref_out), capture_output=True, text=True, env=env(), timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]
    a, b = load_checkpoint(out), load_checkpoint(ref_out)
    assert a.meta["training"]["epochs_done"] == b.meta["training"]["epochs_done"] == 4
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ha = read_raw(out.with_name(out.name + ".state.pt"))["history"]
    hb = read_raw(ref_out.with_name(ref_out.name + ".state.pt"))["history"]
    assert [h["loss_pose"] for h in ha] == [h["loss_pose"] for h in hb]


def test_resume_from_damaged_state_is_a_clear_error(tmp_path, data):
    out = tmp_path / "m.pt"
    first = subprocess.run(train_cmd(data, out, "--epochs", "1"), capture_output=True, text=True, env=env(),
                           timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    state = out.with_name(out.name + ".state.pt")
    good = state.read_bytes()
    for name, damaged in (("truncated", good[: len(good) // 3]), ("garbage", b"\x00" * 100),
                          ("foreign pickle", pickle.dumps(Evil()))):
        state.write_bytes(damaged)
        r = subprocess.run(train_cmd(data, out, "--resume"), capture_output=True, text=True, env=env(), timeout=300)
        assert r.returncode == 2, (name, r.stderr[-2000:])
        last = r.stderr.strip().splitlines()[-1]
        assert "Traceback" not in r.stderr and str(state) in last and last.startswith("poselift train: error:"), name
        assert "weights_only" not in r.stderr, name  # torch's text explains how to load it unsafely
    assert not PWNED.exists()


# -------------------------------------------------------------- checkpoint loading
class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {PWNED}",))


@pytest.fixture(autouse=True)
def _no_pwned():
    PWNED.unlink(missing_ok=True)
    yield
    assert not PWNED.exists(), "a checkpoint executed code"


def _rewrite_member(src: Path, dst: Path, suffix: str, data: bytes) -> None:
    """Copy a torch zip, replacing the member whose name ends with ``suffix``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            zout.writestr(item, data if item.filename.endswith(suffix) else zin.read(item.filename))


def _saved(tmp_path) -> Path:
    from poselift.model import save_checkpoint
    from tests.helpers import random_model

    path = tmp_path / "good.pt"
    save_checkpoint(path, random_model((3, 3), causal=True, channels=16))
    return path


def test_code_payload_inside_a_real_checkpoint_zip_is_refused(tmp_path):
    """A real checkpoint whose data.pkl was replaced by a pickle that runs a command."""
    bad = tmp_path / "tampered.pt"
    _rewrite_member(_saved(tmp_path), bad, "data.pkl", pickle.dumps({"format": "poselift-checkpoint", "x": Evil()},
                                                                    protocol=2))
    with pytest.raises(CheckpointError, match="refused to load") as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value)
    # one line of ours, not torch's advice on re-running with weights_only=False
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)


def test_legacy_non_zip_pickle_with_code_is_refused(tmp_path):
    """torch.load also reads old-style (non-zip) pickles: with weights_only they are refused too."""
    bad = tmp_path / "legacy.pt"
    buf = io.BytesIO()
    torch.save({"format": "poselift-checkpoint", "x": Evil()}, buf, _use_new_zipfile_serialization=False)
    bad.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(bad)


@pytest.mark.parametrize("where", ["data.pkl", "/data/0", "version"])
def test_tampered_bytes_are_refused(tmp_path, where):
    """Flipped bytes in the pickle, in a tensor's storage, or in the version record: refused
    with a message naming the file (a storage of the wrong size, a CRC mismatch), never a crash."""
    good = _saved(tmp_path)
    with zipfile.ZipFile(good) as z:
        name = next(n for n in z.namelist() if n.endswith(where))
        blob = bytearray(z.read(name))
    if where == "/data/0":
        blob = blob[: len(blob) // 2]  # a storage shorter than its tensor
    else:
        for i in range(0, len(blob), max(1, len(blob) // 8)):
            blob[i] ^= 0xFF
    bad = tmp_path / "tampered.pt"
    _rewrite_member(good, bad, where, bytes(blob))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value)


def test_flipped_byte_on_disk_is_refused(tmp_path):
    """Bit rot in the zip itself (not re-packed): every single flipped byte either fails the
    zip/CRC checks or still yields a valid checkpoint; none crashes or runs code."""
    good = _saved(tmp_path)
    data = good.read_bytes()
    bad = tmp_path / "rot.pt"
    refused = 0
    for pos in range(0, len(data), max(1, len(data) // 60)):
        blob = bytearray(data)
        blob[pos] ^= 0x5A
        bad.write_bytes(bytes(blob))
        try:
            load_checkpoint(bad)
        except CheckpointError as exc:
            assert str(bad) in str(exc)
            refused += 1
    assert refused > 0


def test_non_checkpoint_pickles_are_refused(tmp_path):
    cases = {
        "list.pt": [1, 2, 3],
        "tensor.pt": torch.zeros(3),
        "dict.pt": {"weights": torch.zeros(3)},
        "state_only.pt": {"format": "poselift-training-state", "model": {}},
    }
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointError, match="not a poselift checkpoint") as info:
            load_checkpoint(tmp_path / name)
        assert name in str(info.value)
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"format": "poselift-checkpoint"}))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "plain.pkl")


def test_cli_refuses_tampered_checkpoint_in_one_line(tmp_path):
    bad = tmp_path / "tampered.pt"
    _rewrite_member(_saved(tmp_path), bad, "data.pkl", pickle.dumps({"x": Evil()}, protocol=2))
    for cmd in (["info", str(bad)], ["serve", "--checkpoint", str(bad), "--input", "tcp://127.0.0.1:*",
                                     "--publish", "tcp://127.0.0.1:*", "--duration", "1", "--device", "cpu"]):
        r = subprocess.run([sys.executable, "-m", "poselift", *cmd], capture_output=True, text=True, env=env(),
                           timeout=120)
        assert r.returncode == 2, (cmd, r.stderr)
        assert "Traceback" not in r.stderr and "refused to load" in r.stderr and str(bad) in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
