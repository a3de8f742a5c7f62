"""--lookahead F picks the shipped model with F future frames (serve, webcam, demo, video);
an unknown F is a one-line error listing what exists; ``poselift train --future-frames F``
trains a look-ahead model whose checkpoint records F and streams exactly as it lifts offline."""

from __future__ import annotations

import json

import pytest
import torch

from poselift.cli import main
from poselift.errors import UserError
from poselift.model import ModelConfig, StreamingLifter, TemporalModel, lift_sequence, load_checkpoint, save_checkpoint
from poselift.model import commands as model_commands
from poselift.stream import apps
from tests.helpers import TINY_TRAIN_ARGS, randomize_batch_norm, two_take_dataset
from tests.test_streaming import stream_all


def tiny(future: int, widths=(3, 3, 3), seed: int = 0) -> TemporalModel:
    torch.manual_seed(seed)
    return randomize_batch_norm(TemporalModel(ModelConfig(filter_widths=widths, future_frames=future, channels=16)),
                                seed).eval()


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """A weights folder with causal (0), two look-ahead models and full (13) at RF 27; the
    file names do not give F away (lookahead5.pt holds F = 2): it is read from the config."""
    folder = tmp_path / "weights"
    folder.mkdir()
    for name, future in (("causal", 0), ("lookahead5", 2), ("lookahead7", 7), ("full", 13), ("single_frame", 0)):
        save_checkpoint(folder / f"{name}.pt", tiny(future, (1,) if name == "single_frame" else (3, 3, 3)), fps=30.0)
    monkeypatch.setattr(model_commands, "DEFAULT_WEIGHTS_DIR", folder)
    return folder


def test_lookahead_picks_the_model_with_that_future_frames(weights):
    assert sorted(model_commands.shipped_lookaheads()) == [0, 2, 7, 13]
    for future in (0, 2, 7, 13):
        ckpt = apps.load_lookahead_model(None, "causal", future)
        assert ckpt.model.config.future_frames == future
    assert apps.load_lookahead_model(None, "causal", 13).path.endswith("full.pt")
    assert apps.load_lookahead_model(None, "causal", 2).path.endswith("lookahead5.pt")


def test_unknown_lookahead_is_a_one_line_error_listing_the_choices(weights, capsys):
    with pytest.raises(UserError, match=r"available: 0 \(causal.pt\), 2 \(lookahead5.pt\), 7 .*13 \(full.pt\)"):
        apps.load_lookahead_model(None, "causal", 5)
    for cmd in (["demo", "--no-render"], ["serve"], ["webcam", "--no-window"], ["video", "x.mp4", "--out", "x.npz"]):
        assert main([*cmd, "--lookahead", "4"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "no shipped model with --lookahead 4; available: 0 (causal.pt)" in err
    with pytest.raises(UserError, match="either --lookahead or --checkpoint"):
        apps.load_lookahead_model(str(weights / "full.pt"), "causal", 0)


def test_lookahead_and_smooth_flags_reach_every_command(weights, monkeypatch):
    seen = {}
    for name in ("run_demo", "run_serve", "run_webcam", "run_video"):
        monkeypatch.setattr(apps, name, lambda *a, _n=name, **k: seen.__setitem__(_n, k))
    extra = ["--lookahead", "7", "--smooth", "--smooth-min-cutoff", "2.5", "--smooth-beta", "0.1"]
    for cmd in (["demo"], ["serve"], ["webcam"], ["video", "x.mp4", "--out", "x.npz"]):
        assert main([*cmd, *extra]) == 0
    assert len(seen) == 4
    for k in seen.values():
        assert (k["lookahead"], k["smooth"], k["smooth_min_cutoff"], k["smooth_beta"]) == (7, True, 2.5, 0.1)


def test_serve_loads_the_lookahead_model_and_installs_the_smoothing_stage(weights, monkeypatch):
    got = {}

    class FakeServer:
        def __init__(self, engine, *a, stages=(), **k):
            got.update(engine=engine, stages=list(stages))
            raise OSError("stop here")

    import poselift.stream.service as service

    monkeypatch.setattr(service, "PoseServer", FakeServer)
    with pytest.raises(UserError, match="stop here"):
        apps.run_serve(lookahead=7, smooth=True, smooth_min_cutoff=2.0, device="cpu")
    assert got["engine"].latency_frames == 7
    from poselift.stream.motion_wire import MotionWire
    from poselift.stream.smoothing import SmoothingStage

    kinds = [type(s) for s in got["stages"]]
    (stage,) = [s for s in got["stages"] if isinstance(s, SmoothingStage)]
    assert (stage.min_cutoff, stage.beta, stage.engine) == (2.0, 0.5, got["engine"])
    assert kinds.index(SmoothingStage) < kinds.index(MotionWire)  # the body is fitted to the smoothed joints
    with pytest.raises(UserError, match="stop here"):
        apps.run_serve(device="cpu")
    assert got["engine"].latency_frames == 0
    assert not any(isinstance(s, SmoothingStage) for s in got["stages"])  # off by default


def test_video_refuses_model_and_lookahead_together():
    with pytest.raises(UserError, match="either --model or --lookahead"):
        apps.run_video("missing.mp4", out="x.npz", model="full", lookahead=3)


def test_train_future_frames_records_f_and_streams_exactly(tmp_path, mocap_dir):
    data = two_take_dataset(mocap_dir, tmp_path)
    out = tmp_path / "la.pt"
    assert main(["train", "--data", str(data), *TINY_TRAIN_ARGS, "--batch-size", "32", "--variants", "0",
                 "--future-frames", "3", "--out", str(out)]) == 0
    ckpt = load_checkpoint(out)
    cfg = ckpt.model.config
    assert (cfg.future_frames, cfg.causal, cfg.receptive_field) == (3, False, 9)
    assert ckpt.meta["training"]["config"]["future_frames"] == 3
    model = ckpt.model.eval()
    x = torch.randn(2, 30, 17, 2) * 0.3
    streamed = stream_all(StreamingLifter(model, batch_size=2, device="cpu"), x)
    assert (streamed - lift_sequence(model, x)).abs().max().item() <= 1e-5
    assert StreamingLifter(model, batch_size=1, device="cpu").latency_frames == 3


def test_train_future_frames_fine_tunes_from_a_causal_checkpoint(tmp_path, mocap_dir, capsys):
    data = two_take_dataset(mocap_dir, tmp_path)
    src = tmp_path / "causal.pt"
    save_checkpoint(src, tiny(0, (3, 3)), fps=30.0)
    out = tmp_path / "ft.pt"
    assert main(["train", "--data", str(data), *TINY_TRAIN_ARGS, "--batch-size", "32", "--variants", "0",
                 "--future-frames", "2", "--init", str(src), "--dropout", "0", "--freeze-bn",
                 "--out", str(out)]) == 0
    assert load_checkpoint(out).model.config.future_frames == 2
    info = json.loads(json.dumps(load_checkpoint(out).meta["training"]))
    assert info["config"]["init_from"] == str(src)
    wrong = tmp_path / "wide.pt"
    save_checkpoint(wrong, TemporalModel(ModelConfig(filter_widths=(3, 3), causal=True, channels=32)), fps=30.0)
    capsys.readouterr()
    assert main(["train", "--data", str(data), *TINY_TRAIN_ARGS, "--future-frames", "2", "--init", str(wrong),
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "architecture" in capsys.readouterr().err


def test_info_lists_the_shipped_lookaheads(weights, capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "--lookahead F" in out and "0 (causal.pt), 2 (lookahead5.pt), 7 (lookahead7.pt), 13 (full.pt)" in out
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shipped_lookaheads"] == {
        "0": str(weights / "causal.pt"), "2": str(weights / "lookahead5.pt"), "7": str(weights / "lookahead7.pt"),
        "13": str(weights / "full.pt")}


def test_defaults_causal_live_and_full_context_for_offline_video(monkeypatch, tmp_path):
    seen = []

    def fake(checkpoint, name, lookahead):
        seen.append((checkpoint, name, lookahead))
        raise UserError("stop here")

    monkeypatch.setattr(apps, "load_lookahead_model", fake)
    for kwargs in ({}, {"model": "causal"}, {"checkpoint": "x.pt"}, {"lookahead": 3}):
        with pytest.raises(UserError, match="stop here"):
            apps.run_video("clip.mp4", out=str(tmp_path / "o.npz"), **kwargs)
    assert seen == [(None, "causal", apps.DEFAULT_VIDEO_LOOKAHEAD), (None, "causal", None), ("x.pt", "causal", None),
                    (None, "causal", 3)]
    assert (apps.DEFAULT_VIDEO_LOOKAHEAD, apps.DEFAULT_LIVE_LOOKAHEAD) == (121, 0)  # offline: full context
    seen.clear()
    with pytest.raises(UserError, match="stop here"):
        apps.run_serve(device="cpu")
    assert seen == [(None, "causal", None)]  # live: the causal model (DEFAULT_LIVE_LOOKAHEAD = 0)


def test_the_real_shipped_lookaheads_hold_their_f_and_cover_the_defaults():
    shipped = model_commands.shipped_lookaheads()
    assert {0, 121, apps.DEFAULT_LIVE_LOOKAHEAD, apps.DEFAULT_VIDEO_LOOKAHEAD} <= set(shipped)
    for future, path in shipped.items():
        cfg = load_checkpoint(path).model.config
        assert (cfg.future_frames, cfg.receptive_field, cfg.channels) == (future, 243, 384)
        if path.stem.startswith("lookahead"):
            assert path.stem == f"lookahead{future}"


def test_flip_tta_flags_reach_every_command_and_default_on_for_one_camera(weights, monkeypatch):
    seen = {}
    for name in ("run_demo", "run_serve", "run_webcam", "run_video"):
        monkeypatch.setattr(apps, name, lambda *a, _n=name, **k: seen.__setitem__(_n, k))
    for flag, want in (([], None), (["--flip-tta"], True), (["--no-flip-tta"], False)):
        for cmd in (["demo"], ["serve"], ["webcam"], ["video", "x.mp4", "--out", "x.npz"]):
            assert main([*cmd, *flag]) == 0
        assert len(seen) == 4 and all(k["flip_tta"] is want for k in seen.values()), flag
        seen.clear()
    monkeypatch.undo()
    monkeypatch.setattr(model_commands, "DEFAULT_WEIGHTS_DIR", weights)
    # unset: off for serve and demo, on for video and webcam (one person from a camera or a video)
    assert apps.serve_parts(warn=lambda _: None).engine.flip_tta is False
    assert apps.serve_parts(warn=lambda _: None, flip_tta=True).engine.flip_tta is True
    engines = []

    def capture(ckpt, **kwargs):
        engines.append(kwargs["flip_tta"])
        raise UserError("stop here")

    monkeypatch.setattr(apps, "make_engine", capture)
    assert apps.DEFAULT_VIDEO_FLIP_TTA is True and apps.DEFAULT_WEBCAM_FLIP_TTA is True
    for flip in (None, False):
        with pytest.raises(UserError, match="stop here"):
            apps.run_video("x.mp4", out="x.npz", flip_tta=flip, lookahead=13)
        with pytest.raises(UserError, match="stop here"):
            apps.run_webcam(video="x.mp4", window=False, flip_tta=flip)
        with pytest.raises(UserError, match="stop here"):
            apps.run_demo(flip_tta=flip)
    assert engines == [True, True, False, False, False, False]


def test_root_flag_reaches_every_command_and_fit_runs_no_trajectory_network(weights, monkeypatch):
    seen = {}
    for name in ("run_demo", "run_serve", "run_webcam", "run_video"):
        monkeypatch.setattr(apps, name, lambda *a, _n=name, **k: seen.__setitem__(_n, k))
    for flag, want in (([], "blend"), (["--root", "fit"], "fit")):
        for cmd in (["demo"], ["serve"], ["webcam"], ["video", "x.mp4", "--out", "x.npz"]):
            assert main([*cmd, *flag]) == 0
        assert len(seen) == 4 and all(k["root"] == want for k in seen.values()), flag
        seen.clear()
    monkeypatch.undo()
    traj = randomize_batch_norm(TemporalModel(ModelConfig(filter_widths=(3, 3, 3), causal=True, channels=16,
                                                          num_joints_out=1)), 1).eval()
    path = weights.parent / "with_traj.pt"
    save_checkpoint(path, tiny(0), fps=30.0, trajectory_model=traj)
    ckpt = load_checkpoint(path)
    assert apps.make_engine(ckpt).traj is not None
    assert apps.make_engine(ckpt, root="fit").traj is None
    with pytest.raises(UserError, match="--root must be one of blend, fit"):
        apps.make_engine(ckpt, root="network")
