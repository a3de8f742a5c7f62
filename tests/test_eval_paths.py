"""`poselift eval` on VideoPose3D npz files, and flip test-time augmentation."""

import json

import numpy as np
import pytest
import torch

from poselift.model import lift_sequence, load_checkpoint, save_checkpoint
from poselift.model.normalization import normalize_screen
from poselift.train.h36m_npz import load_videopose3d
from tests.helpers import random_model
from tests.test_h36m_npz import _make_data, _write


def test_eval_cli_on_videopose3d_npz(tmp_path, capsys):
    from poselift.cli import main

    p3, p2 = _write(tmp_path, *_make_data(frames=20))
    save_checkpoint(tmp_path / "m.pt", random_model((3, 3), causal=True, channels=16))
    assert main(["eval", str(tmp_path / "m.pt"), "--data", str(p3), str(p2), "--device", "cpu",
                 "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    figures = json.loads((tmp_path / "e.json").read_text())
    # takes of 20, 21, 22, 23 frames (S1 then S9, two actions each), 4 cameras each, pooled per take
    assert figures["frames"] == 4 * (20 + 21 + 22 + 23)
    assert {k: v["frames"] for k, v in figures["per_take"].items()} == {
        "S1/Walking": 80, "S1/Eating 2": 84, "S9/Walking": 88, "S9/Eating 2": 92}
    # P1 and MPJVE recomputed here from their definitions: the model lifts the file's 2D
    # (normalised by image width), the truth is the camera-frame 3D made root-relative
    model = load_checkpoint(tmp_path / "m.pt").model
    err, vel, n_vel = [], 0.0, 0
    for take in load_videopose3d(p3, p2):
        kp = torch.from_numpy(normalize_screen(take.keypoints_2d, take.width, take.height))
        pred = lift_sequence(model, kp[None].float())[0].double().numpy()
        gt = take.positions_3d_camera - take.positions_3d_camera[:, :1]
        err.append(np.linalg.norm(pred - gt, axis=-1).mean(axis=-1))
        vel += np.linalg.norm(np.diff(pred, axis=0) - np.diff(gt, axis=0), axis=-1).mean(axis=-1).sum()
        n_vel += len(gt) - 1
    assert figures["mpjpe"] == pytest.approx(np.concatenate(err).mean(), rel=1e-5)
    assert figures["mpjve"] == pytest.approx(vel / n_vel, rel=1e-5)
    assert figures["p_mpjpe"] <= figures["mpjpe"]  # Procrustes alignment can only help
    assert f"{figures['mpjpe'] * 1e3:.1f}" in out.split("average")[1]  # the table prints the same figure


def test_flip_tta_averages_with_the_mirrored_prediction():
    from poselift.model import lift_sequence
    from poselift.model.skeleton import flip_permutation
    from poselift.train.evaluate import evaluate_sequences
    from poselift.train.metrics import mpjpe_np

    model = random_model((3,), causal=True, channels=8)
    kp = torch.randn(12, 17, 2) * 0.3
    gt = torch.randn(12, 17, 3) * 0.2
    perm = torch.from_numpy(flip_permutation())
    pred = lift_sequence(model, kp[None])[0]
    mirrored = lift_sequence(model, (kp[:, perm] * torch.tensor([-1.0, 1.0]))[None])[0]
    expected = (pred + mirrored[:, perm] * torch.tensor([-1.0, 1.0, 1.0])) / 2
    tta = evaluate_sequences(model, [("x", kp, gt)], flip_tta=True)
    plain = evaluate_sequences(model, [("x", kp, gt)])
    assert abs(tta.mpjpe - mpjpe_np(expected.double().numpy(), gt.double().numpy())) < 1e-6
    assert abs(plain.mpjpe - mpjpe_np(pred.double().numpy(), gt.double().numpy())) < 1e-6
    assert abs(tta.mpjpe - plain.mpjpe) > 1e-6
