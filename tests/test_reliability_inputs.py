"""Malformed input files through the real commands: one line on stderr naming the file and
the line (BVH) or key (npz), exit code 2, no traceback.

tests/test_bvh.py and tests/test_h36m_npz.py cover the readers' messages; this file adds
the cases they did not (negative/zero frame counts and NaN offsets in BVH, which crashed in
numpy or only surfaced as a NaN training loss; inf, half-NaN, non-scalar sizes and bad fps
in replay clips, which raised TypeError or passed silently) and checks what a user sees
from ``poselift train``, ``eval`` and ``demo``.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from poselift.model import save_checkpoint
from poselift.cli import main
from tests.helpers import random_model
from tests.reliability_helpers import ROOT


@pytest.fixture(scope="module")
def take_text(mocap_dir) -> str:
    with gzip.open(mocap_dir / "subject_05" / "05_01.bvh.gz", "rt") as f:
        return f.read()


def motion_line(text: str) -> int:
    """1-based line number of the first motion data line."""
    lines = text.splitlines()
    return next(i for i, ln in enumerate(lines) if ln.startswith("Frame Time")) + 2


def _bvh_cases(text: str) -> dict[str, tuple[str, str]]:
    first = motion_line(text)
    lines = text.splitlines()
    short = lines.copy()
    short[first - 1 + 3] = " ".join(short[first - 1 + 3].split()[:-2])  # frame 4 lacks two channels
    nan = lines.copy()
    vals = nan[first - 1 + 7].split()
    vals[5] = "nan"
    nan[first - 1 + 7] = " ".join(vals)
    frames_line = next(i for i, ln in enumerate(lines) if ln.startswith("Frames:")) + 1
    return {
        "truncated": (text[: len(text) // 2], r"header says \d+ frames but only \d+ are present"),
        "truncated_mid_line": ("\n".join(lines[: first + 40]) + "\n" + lines[first + 40][:30] + "\n"
                               + "\n".join(lines[first + 41:]), rf":{first + 41}: expected \d+ channel values"),
        "wrong_channel_count": ("\n".join(short) + "\n", rf":{first + 3}: expected \d+ channel values, got"),
        "nan_motion": ("\n".join(nan) + "\n", rf":{first + 7}: NaN or inf in motion data"),
        "nan_offset": (text.replace("OFFSET 0 0 0", "OFFSET nan 0 0", 1), r":4: NaN or inf in OFFSET"),
        "negative_frames": (re.sub(r"Frames:\s*\d+", "Frames: -5", text), rf":{frames_line}: 'Frames: -5'"),
        "zero_frames": (re.sub(r"Frames:\s*\d+", "Frames: 0", text), rf":{frames_line}: 'Frames: 0'"),
        "channels_mismatch": (text.replace("CHANNELS 3", "CHANNELS 4", 1), r"CHANNELS says 4 channels but lists 3"),
        "binary": ("\x00\x01\x02garbage", r":1: expected 'HIERARCHY'"),
    }


CASES = ["truncated", "truncated_mid_line", "wrong_channel_count", "nan_motion", "nan_offset", "negative_frames",
         "zero_frames", "channels_mismatch", "binary"]


@pytest.mark.parametrize("case", CASES)
def test_bad_bvh_through_train_and_eval(tmp_path, take_text, capsys, case):
    text, pattern = _bvh_cases(take_text)[case]
    bad = tmp_path / "data" / "subject_05" / "05_01.bvh"
    bad.parent.mkdir(parents=True)
    bad.write_text(text)
    code = main(["train", "--data", str(tmp_path / "data"), "--arch", "3", "--channels", "8", "--epochs", "1",
                 "--device", "cpu", "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("poselift train: error: ") and str(bad) in err, err
    assert re.search(pattern, err), err
    save_checkpoint(tmp_path / "c.pt", random_model((3,), causal=True, channels=8))
    code = main(["eval", str(tmp_path / "c.pt"), "--data", str(bad), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("poselift eval: error: ") and str(bad) in err and re.search(pattern, err), err


def test_truncated_gzip_take_through_train(tmp_path, mocap_dir, capsys):
    data = (mocap_dir / "subject_05" / "05_01.bvh.gz").read_bytes()
    bad = tmp_path / "data" / "subject_05" / "05_01.bvh.gz"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(data[: len(data) // 2])
    code = main(["train", "--data", str(tmp_path / "data"), "--arch", "3", "--channels", "8", "--device", "cpu",
                 "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and str(bad) in err and "cannot read" in err, err


def test_bad_videopose3d_npz_through_eval(tmp_path, capsys):
    from tests.test_h36m_npz import _make_data, _write

    save_checkpoint(tmp_path / "c.pt", random_model((3,), causal=True, channels=8))
    pos3d, pos2d = _make_data()
    pos2d["S9"]["Eating 2"][1][4, 7, 1] = np.nan
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    assert main(["eval", str(tmp_path / "c.pt"), "--data", str(p3), str(p2), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(p2) in err and "'S9'" in err and "NaN" in err, err
    data = p3.read_bytes()
    p3.write_bytes(data[: len(data) // 2])  # truncated zip
    assert main(["eval", str(tmp_path / "c.pt"), "--data", str(p3), str(p2), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(p3) in err, err


def _clip(path: Path, **over):
    arrays = dict(keypoints=np.random.default_rng(0).uniform(100, 400, (12, 17, 2)).astype(np.float32),
                  width=np.int64(640), height=np.int64(480), fps=np.float64(30.0))
    arrays.update(over)
    np.savez(path, **arrays)
    return path


def _kp_with(value, joint_value=None):
    kp = np.random.default_rng(0).uniform(100, 400, (12, 17, 2)).astype(np.float32)
    kp[3, 5] = value if joint_value is None else joint_value
    return kp


CLIP_CASES = {
    "inf": (dict(keypoints=_kp_with([np.inf, 1.0])), r"'keypoints' \[frame 3, joint 5\]"),
    "half_nan": (dict(keypoints=_kp_with([np.nan, 1.0])), r"'keypoints' \[frame 3, joint 5\]"),
    "width_array": (dict(width=np.array([640, 480])), r"'width' must be one finite number"),
    "width_text": (dict(width=np.str_("wide")), r"'width' must be one finite number"),
    "fps_nan": (dict(fps=np.float64(np.nan)), r"'fps' must be one finite number"),
    "fps_negative": (dict(fps=np.float64(-30.0)), r"'fps' must be positive"),
    "size_huge": (dict(height=np.int64(10**9)), r"image size must be whole pixels"),
    "poses3d_nan": (dict(poses3d=np.full((12, 17, 3), np.nan, np.float32)), r"'poses3d' contains NaN"),
    "wrong_shape": (dict(keypoints=np.zeros((12, 33, 2), np.float32)), r"'keypoints' must be \(T, 17, 2\)"),
    "missing_key": (dict(width=None), r"missing key\(s\) width"),
}


@pytest.mark.parametrize("case", sorted(CLIP_CASES))
def test_bad_replay_clip_through_demo(tmp_path, capsys, case):
    over, pattern = CLIP_CASES[case]
    if over.get("width", 0) is None:
        arrays = dict(keypoints=np.zeros((12, 17, 2), np.float32), height=np.int64(480))
        path = tmp_path / "clip.npz"
        np.savez(path, **arrays)
    else:
        path = _clip(tmp_path / "clip.npz", **over)
    code = main(["demo", "--clip", str(path), "--no-render", "--publish", "", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(path) in err and re.search(pattern, err), err


def test_missing_joints_in_a_clip_are_fine(tmp_path, capsys):
    """NaN in both coordinates marks a missing joint (as on the wire): accepted and filled."""
    kp = _kp_with([np.nan, np.nan])
    path = _clip(tmp_path / "clip.npz", keypoints=kp)
    assert main(["demo", "--clip", str(path), "--no-render", "--publish", "", "--device", "cpu"]) == 0


def test_bad_input_as_a_real_process_prints_one_line(tmp_path, take_text):
    text, _ = _bvh_cases(take_text)["nan_motion"]
    bad = tmp_path / "data" / "subject_05" / "05_01.bvh"
    bad.parent.mkdir(parents=True)
    bad.write_text(text)
    r = subprocess.run([sys.executable, "-m", "poselift", "train", "--data", str(tmp_path / "data"), "--arch", "3",
                        "--channels", "8", "--device", "cpu", "--out", str(tmp_path / "m.pt")], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"poselift train: error: {bad}:")
