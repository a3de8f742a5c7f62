"""import-vp3d: VideoPose3D checkpoints written here in the reference layout (key names and
shapes from the VideoPose3D README/code), loaded safely, streamed with parity against an
independent offline reference of the original model and its edge padding."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from poselift.cli import main
from poselift.errors import CheckpointError
from poselift.model import StreamingLifter, load_checkpoint
from poselift.model.vp3d import VP3D_FPS, import_vp3d, read_vp3d


def vp3d_state_dict(widths=(3, 3, 3), channels=32, joints_in=17, joints_out=17, seed=0, dense=False):
    """A VideoPose3D TemporalModel state dict with random weights and batch-norm statistics."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, lo=-1.0, hi=1.0):
        return torch.rand(*shape, generator=g) * (hi - lo) + lo

    def bn(prefix):
        return {f"{prefix}.weight": rnd(channels, lo=0.5, hi=1.5), f"{prefix}.bias": rnd(channels, lo=-0.2, hi=0.2),
                f"{prefix}.running_mean": rnd(channels, lo=-0.5, hi=0.5),
                f"{prefix}.running_var": rnd(channels, lo=0.5, hi=2.0),
                f"{prefix}.num_batches_tracked": torch.tensor(1000)}

    sd = {"expand_conv.weight": rnd(channels, joints_in * 2, widths[0]) / (joints_in * widths[0]) ** 0.5,
          **bn("expand_bn")}
    d = widths[0]
    for i, w in enumerate(widths[1:]):
        k = (w - 1) * d + 1 if dense else w
        sd[f"layers_conv.{2 * i}.weight"] = rnd(channels, channels, k) / (channels * k) ** 0.5
        sd[f"layers_conv.{2 * i + 1}.weight"] = rnd(channels, channels, 1) / channels ** 0.5
        sd.update(bn(f"layers_bn.{2 * i}"))
        sd.update(bn(f"layers_bn.{2 * i + 1}"))
        d *= w
    sd["shrink.weight"] = rnd(joints_out * 3, channels, 1) / channels ** 0.5
    sd["shrink.bias"] = rnd(joints_out * 3, lo=-0.1, hi=0.1)
    return sd


def write_vp3d(path, model_pos, model_traj=None, **extra):
    """A file in VideoPose3D's checkpoint layout (run.py's torch.save dict)."""
    params = [torch.zeros(3, requires_grad=True)]
    opt = torch.optim.Adam(params, lr=0.001, amsgrad=True)
    params[0].grad = torch.ones(3)
    opt.step()
    torch.save({"epoch": 80, "lr": 0.001 * 0.95 ** 80, "random_state": np.random.RandomState(1234),
                "optimizer": opt.state_dict(), "model_pos": model_pos, "model_traj": model_traj, **extra}, path)
    return path


def vp3d_offline(sd, x, widths, causal):
    """The original model offline, written from the paper/README description: valid dilated
    convolutions over the sequence edge-padded with (RF - 1) / 2 frames on each side
    (causal: RF - 1 before), each residual taken at its block's centre tap (causal: newest)."""
    rf = int(np.prod(widths))
    pad = (rf - 1) // 2
    shift = pad if causal else 0
    x = np.pad(x, ((pad + shift, pad - shift), (0, 0), (0, 0)), mode="edge")
    h = torch.as_tensor(x, dtype=torch.float64).reshape(1, x.shape[0], -1).permute(0, 2, 1)
    sd = {k: v.double() for k, v in sd.items()}

    def bn(h, p):
        return F.batch_norm(h, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                            False, 0.1, 1e-5)

    h = F.relu(bn(F.conv1d(h, sd["expand_conv.weight"]), "expand_bn"))
    d = widths[0]
    for i, w in enumerate(widths[1:]):
        p = (w - 1) * d // 2
        s = p if causal else 0
        res = h[:, :, p + s: h.shape[2] - p + s]
        h = F.relu(bn(F.conv1d(h, sd[f"layers_conv.{2 * i}.weight"], dilation=d), f"layers_bn.{2 * i}"))
        h = res + F.relu(bn(F.conv1d(h, sd[f"layers_conv.{2 * i + 1}.weight"]), f"layers_bn.{2 * i + 1}"))
        d *= w
    y = F.conv1d(h, sd["shrink.weight"], sd["shrink.bias"])
    return y.permute(0, 2, 1).reshape(y.shape[2], -1, 3).numpy()


def stream(model, x):
    lifter = StreamingLifter(model, batch_size=1)
    outs = [lifter.step(torch.as_tensor(f, dtype=torch.float32)[None])[0] for f in x]
    outs = outs[lifter.latency_frames:] + list(lifter.flush()[0])
    return torch.stack(outs).numpy()


@pytest.mark.parametrize("causal", [True, False])
def test_imported_model_streams_like_the_original_offline(tmp_path, causal):
    widths = (3, 3, 3)
    pos, traj = vp3d_state_dict(widths, seed=1), vp3d_state_dict(widths, joints_out=1, seed=2)
    src = write_vp3d(tmp_path / "vp3d.bin", pos, traj)
    summary = import_vp3d(src, tmp_path / "out.pt", causal=causal)
    assert summary["filter_widths"] == [3, 3, 3] and summary["channels"] == 32 and summary["trajectory"]
    ckpt = load_checkpoint(tmp_path / "out.pt")
    assert ckpt.model.config.causal is causal and ckpt.fps == VP3D_FPS == 50.0
    assert ckpt.input_layout == "h36m17"
    x = np.random.default_rng(0).normal(scale=0.3, size=(60, 17, 2)).astype(np.float32)
    np.testing.assert_allclose(stream(ckpt.model, x), vp3d_offline(pos, x, widths, causal), atol=1e-5)
    # The trajectory model fills root: it streams like the original trajectory model.
    np.testing.assert_allclose(stream(ckpt.trajectory_model, x), vp3d_offline(traj, x, widths, causal), atol=1e-5)


def test_architecture_is_inferred_from_shapes(tmp_path):
    src = write_vp3d(tmp_path / "a.bin", vp3d_state_dict((5, 3), channels=16, joints_in=17, joints_out=16))
    s = import_vp3d(src, tmp_path / "a.pt", layout="coco17")
    assert (s["filter_widths"], s["channels"], s["joints_out"], s["trajectory"]) == ([5, 3], 16, 16, False)
    ckpt = load_checkpoint(tmp_path / "a.pt")
    assert ckpt.input_layout == "coco17" and ckpt.trajectory_model is None


def test_random_state_is_restored_through_the_allow_list(tmp_path):
    raw = read_vp3d(write_vp3d(tmp_path / "r.bin", vp3d_state_dict()))
    assert raw["random_state"].randint(1 << 30) == np.random.RandomState(1234).randint(1 << 30)
    assert raw["epoch"] == 80 and "state" in raw["optimizer"]


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_foreign_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    src = write_vp3d(tmp_path / "evil.bin", vp3d_state_dict(), payload=_Evil(str(marker)))
    with pytest.raises(CheckpointError, match="refused to load") as err:
        import_vp3d(src, tmp_path / "out.pt")
    assert not marker.exists() and not (tmp_path / "out.pt").exists()
    assert "\n" not in str(err.value)


def test_truncated_file(tmp_path):
    src = write_vp3d(tmp_path / "t.bin", vp3d_state_dict())
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as err:
        import_vp3d(src, tmp_path / "out.pt")
    assert "\n" not in str(err.value)


def test_no_model_pos(tmp_path):
    src = tmp_path / "n.bin"
    torch.save({"epoch": 1, "random_state": np.random.RandomState(0), "model": vp3d_state_dict()}, src)
    with pytest.raises(CheckpointError, match="no 'model_pos'"):
        import_vp3d(src, tmp_path / "out.pt")


def test_other_architecture(tmp_path):
    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64), "fc.weight": torch.zeros(10, 64)}
    with pytest.raises(CheckpointError, match="not a VideoPose3D temporal model"):
        import_vp3d(write_vp3d(tmp_path / "o.bin", resnet), tmp_path / "out.pt")
    extra = vp3d_state_dict()
    extra["attention.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="unexpected \\['attention.weight'\\]"):
        import_vp3d(write_vp3d(tmp_path / "x.bin", extra), tmp_path / "out.pt")
    with pytest.raises(CheckpointError, match="dense VideoPose3D model"):
        import_vp3d(write_vp3d(tmp_path / "d.bin", vp3d_state_dict(dense=True)), tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_cli_import_and_one_line_errors(tmp_path, capsys):
    src = write_vp3d(tmp_path / "c.bin", vp3d_state_dict())
    assert main(["import-vp3d", str(src), "--out", str(tmp_path / "c.pt"), "--causal"]) == 0
    out = capsys.readouterr().out
    assert "receptive field 27, causal" in out and "50 fps" in out
    assert main(["info", str(tmp_path / "c.pt")]) == 0
    assert "causal" in capsys.readouterr().out
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x80\x04not a pickle")
    assert main(["import-vp3d", str(bad), "--out", str(tmp_path / "b.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("poselift import-vp3d: error:")
    assert not os.path.exists(tmp_path / "b.pt")


def test_coco_model_is_fed_coco_order_from_the_h36m_intake(tmp_path):
    from poselift.model.skeleton import COCO17_JOINT_NAMES, H36M_JOINT_NAMES, H36M_TO_COCO17_INDEX
    from poselift.stream.engine import LiftEngine
    from poselift.stream.protocol import Frame2D

    src = write_vp3d(tmp_path / "coco.bin", vp3d_state_dict())
    import_vp3d(src, tmp_path / "coco.pt", causal=True, layout="coco17")
    ckpt = load_checkpoint(tmp_path / "coco.pt")
    names = [H36M_JOINT_NAMES[i] for i in H36M_TO_COCO17_INDEX]
    assert names[5:] == list(COCO17_JOINT_NAMES[5:]) and names[0] == "neck_nose"
    engine = LiftEngine(ckpt.model, max_streams=1, input_layout=ckpt.input_layout)
    lifter = StreamingLifter(ckpt.model)
    rng = np.random.default_rng(0)
    for i in range(5):
        kp = rng.uniform(100, 500, size=(17, 2))
        engine.submit(Frame2D("s", i, i / 50, "h36m17", 640, 480, kp))
        (pose,) = engine.run()
        x = torch.as_tensor(((kp * 2 / 640) - [1, 480 / 640]), dtype=torch.float32)
        expected = lifter.step(x[list(H36M_TO_COCO17_INDEX)][None])[0].numpy()
        np.testing.assert_allclose(pose.joints, expected, atol=1e-5)


def test_frame_rate_warning(tmp_path):
    import_vp3d(write_vp3d(tmp_path / "f.bin", vp3d_state_dict()), tmp_path / "f.pt")
    ckpt = load_checkpoint(tmp_path / "f.pt")
    assert ckpt.fps_warning(50.0) is None and ckpt.fps_warning(None) is None
    line = ckpt.fps_warning(30.0)
    assert "trained at 50 fps" in line and "30 fps" in line and "\n" not in line


def test_serve_says_once_when_the_feed_rate_differs():
    from poselift.stream.engine import PoseOut
    from poselift.stream.fps_check import FrameRateCheck

    def poses(stream, fps, n):
        return [PoseOut(stream, i, 100 + i / fps, 0.0, np.zeros((17, 3)), True, False, []) for i in range(n)]

    lines = []
    check = FrameRateCheck(50.0, frames=20, warn=lines.append)
    batch = poses("a", 50.0, 30)
    assert check(batch) is batch and lines == []
    check(poses("b", 25.0, 30))
    check(poses("c", 25.0, 30))
    assert len(lines) == 1 and "'b'" in lines[0] and "trained at 50 fps" in lines[0] and "25 fps" in lines[0]


def test_serve_parts_sends_the_rate_line_where_told(capsys):
    """serve's stages say it on stderr; a caller that is not a camera (the load bench) can
    take the line instead, through the same stages that serve runs."""
    from poselift.stream.apps import serve_parts
    from poselift.stream.engine import PoseOut
    from poselift.stream.fps_check import FrameRateCheck

    def check_of(parts):
        return next(s for s in parts.stages if isinstance(s, FrameRateCheck))

    fast = [PoseOut("a", i, 100 + i / 90.0, 0.0, np.zeros((17, 3)), True, False, []) for i in range(60)]
    lines = []
    check_of(serve_parts(max_streams=1, warn=lines.append))(fast)
    assert len(lines) == 1 and "90 fps" in lines[0] and capsys.readouterr().err == ""
    check_of(serve_parts(max_streams=1))(list(fast))
    assert "90 fps" in capsys.readouterr().err


class _OldNumpyRandomState:
    """Pickles like a RandomState did under numpy < 1.17 (the official files are from 2018-19):
    ``numpy.random.__RandomState_ctor()`` with the legacy state tuple set through BUILD."""

    def __init__(self, seed):
        self.state = np.random.RandomState(seed).get_state()

    def __reduce__(self):
        return (getattr(np.random, "__RandomState_ctor"), (), self.state)


def test_old_torch_and_numpy_pickles_load(tmp_path):
    """Legacy (pre-zip) torch serialization, as torch < 1.6 wrote it, and numpy < 1.17's
    RandomState constructor."""
    src = tmp_path / "old.bin"
    pos = vp3d_state_dict(seed=3)
    torch.save({"epoch": 60, "lr": 1e-4, "random_state": _OldNumpyRandomState(7), "optimizer": {},
                "model_pos": pos, "model_traj": None}, src, _use_new_zipfile_serialization=False)
    raw = read_vp3d(src)
    assert isinstance(raw["random_state"], np.random.RandomState)
    assert raw["random_state"].randint(1 << 30) == np.random.RandomState(7).randint(1 << 30)
    import_vp3d(src, tmp_path / "old.pt", causal=True)
    x = np.random.default_rng(2).normal(scale=0.3, size=(40, 17, 2)).astype(np.float32)
    np.testing.assert_allclose(stream(load_checkpoint(tmp_path / "old.pt").model, x),
                               vp3d_offline(pos, x, (3, 3, 3), True), atol=1e-5)
