"""`poselift eval` on VideoPose3D npz files, and flip test-time augmentation."""

import json

import torch

from poselift.model import save_checkpoint
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
    assert figures["frames"] > 0 and all(k in figures for k in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"))
    assert len(figures["per_take"]) == 4 and "average" in out  # 2 subjects x 2 actions, cameras pooled


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
