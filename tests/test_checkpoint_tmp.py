"""A checkpoint write killed mid-way leaves a temporary file; the next save or load removes it,
and never the temporary file of a write that is still going on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from poselift.model import load_checkpoint, save_checkpoint
from poselift.model.atomic import remove_stale_temporaries
from tests.helpers import random_model

fcntl = pytest.importorskip("fcntl")


def _stray(folder: Path, name: str = "m.pt") -> Path:
    tmp = folder / f".{name}.k1ll3d.tmp"
    tmp.write_bytes(b"PK\x03\x04 half a checkpoint")
    return tmp


def test_next_save_removes_a_killed_writes_file(tmp_path):
    stray = _stray(tmp_path)
    other = _stray(tmp_path, "other.pt")
    save_checkpoint(tmp_path / "m.pt", random_model((3,), channels=8))
    assert not stray.exists()
    assert other.exists()  # another target's file is not this save's business
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.k1ll3d.tmp", "m.pt"]


def test_load_removes_a_killed_writes_file(tmp_path):
    save_checkpoint(tmp_path / "m.pt", random_model((3,), channels=8))
    stray = _stray(tmp_path)
    load_checkpoint(tmp_path / "m.pt")
    assert not stray.exists()


def test_load_of_a_missing_file_still_cleans_up(tmp_path):
    from poselift.model import CheckpointError

    stray = _stray(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "m.pt")
    assert not stray.exists()


def test_names_with_glob_characters(tmp_path):
    stray = _stray(tmp_path, "m[1].pt")
    unrelated = _stray(tmp_path, "m1.pt")
    assert remove_stale_temporaries(tmp_path / "m[1].pt") == [stray]
    assert unrelated.exists()


def test_a_live_writers_file_stays_and_goes_once_it_is_killed(tmp_path):
    """A real writer process holds its temporary file; SIGKILL leaves the file behind."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from poselift.model.atomic import _locked_temporary
        fd, tmp = _locked_temporary(Path({str(tmp_path / "m.pt")!r}))
        import os; os.write(fd, b"partial")
        print(tmp, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        tmp = Path(proc.stdout.readline().strip())
        assert tmp.exists() and tmp.name.startswith(".m.pt.")
        assert remove_stale_temporaries(tmp_path / "m.pt") == []  # the writer is alive
        assert tmp.exists()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert tmp.exists()  # what a killed write leaves
        save_checkpoint(tmp_path / "m.pt", random_model((3,), channels=8))
        assert not tmp.exists()
        assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_file_locked_in_this_process_is_left_alone(tmp_path):
    stray = _stray(tmp_path)
    with open(stray, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        save_checkpoint(tmp_path / "m.pt", random_model((3,), channels=8))
        load_checkpoint(tmp_path / "m.pt")
        assert stray.exists()
    assert remove_stale_temporaries(tmp_path / "m.pt") == [stray]
