"""Look-ahead models: P frames of past context and F future frames, F in [0, (RF - 1) / 2].

Streaming exactness: the lifter is F frames late and, with flush() at the end, gives the
offline model's poses on the sequence edge-padded with P copies of frame 0 and F copies
of the last frame.
"""

from __future__ import annotations

import pytest
import torch

from poselift.model import (ModelConfig, StreamingLifter, TemporalModel, lift_sequence, load_checkpoint,
                            save_checkpoint)
from poselift.model.checkpoint import checkpoint_dict
from poselift.model.commands import format_info
from poselift.model.inference import edge_pad
from tests.helpers import randomize_batch_norm
from tests.test_streaming import stream_all

CASES = [((3, 3, 3), f) for f in (1, 2, 3, 5, 9, 12)] + [((3, 5, 3), f) for f in (4, 15, 21)] + [
    ((5, 3), 3), ((3, 3, 3, 3), 20), ((3,), 1)]


def lookahead_model(widths, future, channels=32, seed=0) -> TemporalModel:
    torch.manual_seed(seed)
    model = TemporalModel(ModelConfig(filter_widths=widths, future_frames=future, channels=channels))
    return randomize_batch_norm(model, seed).eval()


# ------------------------------------------------------------------------ the config
def test_config_from_causal_flag_and_future_frames():
    assert ModelConfig(filter_widths=(3, 3, 3), causal=True).future_frames == 0
    assert ModelConfig(filter_widths=(3, 3, 3), causal=False).future_frames == 13
    assert ModelConfig(filter_widths=(3, 3, 3)).future_frames == 13  # the old default: symmetric
    cfg = ModelConfig(filter_widths=(3, 3, 3), future_frames=4)
    assert (cfg.causal, cfg.future_frames, cfg.past_frames, cfg.symmetric) == (False, 4, 22, False)
    assert ModelConfig(filter_widths=(3, 3, 3), future_frames=0) == ModelConfig(filter_widths=(3, 3, 3), causal=True)
    assert ModelConfig(filter_widths=(3, 3, 3), future_frames=13).symmetric


@pytest.mark.parametrize("kwargs, match", [
    ({"future_frames": 14}, r"\[0, 13\]"),
    ({"future_frames": -1}, r"\[0, 13\]"),
    ({"future_frames": 2.5}, "integer"),
    ({"future_frames": 3, "causal": True}, "contradicts"),
    ({"future_frames": 0, "causal": False}, "contradicts"),
])
def test_config_refuses_impossible_future_frames(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(filter_widths=(3, 3, 3), **kwargs)


def test_config_round_trips_and_reads_old_dicts():
    cfg = ModelConfig(filter_widths=(3, 5, 3), future_frames=7, channels=16)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in ModelConfig(filter_widths=(3, 3), causal=False).to_dict().items() if k != "future_frames"}
    assert ModelConfig.from_dict(old).future_frames == 4
    assert ModelConfig.from_dict({**old, "causal": True}).future_frames == 0


def test_with_future_frames_keeps_the_architecture():
    cfg = ModelConfig(filter_widths=(3, 3, 3), causal=True, channels=16)
    ahead = cfg.with_future_frames(5)
    assert ahead.future_frames == 5 and not ahead.causal
    assert ahead.with_future_frames(0) == cfg
    assert {k: v for k, v in ahead.to_dict().items() if k not in ("causal", "future_frames")} == \
        {k: v for k, v in cfg.to_dict().items() if k not in ("causal", "future_frames")}


def test_causal_weights_start_a_look_ahead_model():
    causal = lookahead_model((3, 3, 3), 0, channels=16).train()
    ahead = causal.with_future_frames(6)
    assert type(ahead) is TemporalModel and ahead.training and ahead.future_frames == 6
    for (k, a), (k2, b) in zip(causal.state_dict().items(), ahead.state_dict().items()):
        assert k == k2 and torch.equal(a, b) and a.data_ptr() != b.data_ptr()  # a copy, not shared
    TemporalModel(causal.config.with_future_frames(3)).load_state_dict(causal.state_dict())


# ------------------------------------------------------------------ offline models
@pytest.mark.parametrize("widths, future", CASES)
def test_offline_lifting_is_the_plain_model_on_the_padded_sequence(widths, future):
    model = lookahead_model(widths, future)
    rf, past = model.receptive_field(), model.config.past_frames
    assert past + future == rf - 1
    x = torch.randn(2, 30, 17, 2)
    padded = torch.cat([x[:, :1].expand(-1, past, -1, -1), x, x[:, -1:].expand(-1, future, -1, -1)], dim=1)
    assert torch.equal(edge_pad(x, past, future), padded)
    with torch.no_grad():
        ref = model(padded)
    torch.testing.assert_close(lift_sequence(model, x), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("widths, future", CASES)
def test_strided_twin_predicts_window_frame_past_frames(widths, future):
    """The training twin on window [t - P, t + F] equals the dilated model's frame t."""
    model = lookahead_model(widths, future)
    rf = model.receptive_field()
    x = torch.randn(2, rf + 6, 17, 2)
    strided = model.strided_twin().eval()
    with torch.no_grad():
        dilated = model(x)
        windows = torch.cat([strided(x[:, i: i + rf]) for i in range(7)], dim=1)
    torch.testing.assert_close(windows, dilated, atol=1e-5, rtol=1e-4)


def test_future_frames_move_the_prediction():
    """The same weights aligned differently give different poses (the test above is not vacuous)."""
    model = lookahead_model((3, 3, 3), 0)
    x = torch.randn(1, 40, 17, 2)
    assert (lift_sequence(model, x) - lift_sequence(model.with_future_frames(4).eval(), x)).abs().max() > 1e-3


# -------------------------------------------------------------------- streaming
@pytest.mark.parametrize("widths, future", CASES)
def test_streaming_equals_offline_with_look_ahead(widths, future):
    model = lookahead_model(widths, future)
    rf = model.receptive_field()
    x = torch.randn(3, rf + 23, 17, 2)
    offline = lift_sequence(model, x)
    lifter = StreamingLifter(model, batch_size=3, device="cpu")
    assert lifter.latency_frames == future
    streamed = stream_all(lifter, x)
    assert streamed.shape == offline.shape == (3, rf + 23, 17, 3)
    assert (streamed - offline).abs().max().item() <= 1e-5


@pytest.mark.parametrize("length", [1, 4, 11])
def test_streams_shorter_than_the_look_ahead(length):
    model = lookahead_model((3, 3, 3), 9)
    x = torch.randn(2, length, 17, 2)
    streamed = stream_all(StreamingLifter(model, batch_size=2, device="cpu"), x)
    assert (streamed - lift_sequence(model, x)).abs().max().item() <= 1e-5


def test_look_ahead_streams_at_different_frames_and_out_of_order():
    """The gather path (streams at different frame counts, rows out of order) is exact too."""
    model = lookahead_model((3, 5, 3), 10)
    lifter = StreamingLifter(model, batch_size=3, device="cpu")
    starts, length = [0, 7, 19], 60
    seqs = [torch.randn(length, 17, 2) for _ in starts]
    got: dict[int, list[torch.Tensor]] = {i: [] for i in range(3)}
    for t in range(max(starts) + length):
        active = [i for i, s in enumerate(starts) if s <= t < s + length][::-1]
        y = lifter.step(torch.stack([seqs[i][t - starts[i]] for i in active]), indices=active)
        for row, i in enumerate(active):
            got[i].append(y[row])
    tails = lifter.flush()
    for i in range(3):
        out = torch.cat([torch.stack(got[i])[lifter.latency_frames:], tails[i]])
        assert (out - lift_sequence(model, seqs[i][None])[0]).abs().max() <= 1e-5


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_look_ahead_in_reduced_precision_follows_fp32(precision):
    model = lookahead_model((3, 3), 2, channels=64)
    x = torch.randn(2, 30, 17, 2) * 0.3
    ref = lift_sequence(model, x)
    err = (lift_sequence(model, x, precision=precision) - ref).abs()
    assert err.mean() < 0.005 and err.max() < 0.02


# ------------------------------------------------------- checkpoints, info, training
def test_checkpoint_keeps_future_frames(tmp_path):
    model = lookahead_model((3, 3, 3), 5, channels=16)
    save_checkpoint(tmp_path / "m.pt", model)
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["config"]["future_frames"] == 5
    loaded = load_checkpoint(tmp_path / "m.pt").model
    assert loaded.config == model.config
    x = torch.randn(1, 30, 17, 2)
    assert torch.equal(lift_sequence(loaded, x), lift_sequence(model, x))


@pytest.mark.parametrize("causal", [True, False])
def test_checkpoint_without_future_frames_loads(tmp_path, causal):
    """Checkpoints written before future_frames existed carry only the causal flag."""
    model = lookahead_model((3, 3), 0 if causal else 4, channels=8)
    d = checkpoint_dict(model)
    del d["config"]["future_frames"]
    torch.save(d, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").model.config.future_frames == (0 if causal else 4)


@pytest.mark.parametrize("future, variant", [(0, "causal"), (1, "look-ahead (1 future, 25 past frames)"),
                                             (5, "look-ahead (5 future, 21 past frames)"),
                                             (13, "full-context (symmetric)")])
def test_info_shows_future_frames(tmp_path, future, variant):
    from poselift.model import read_checkpoint_info

    save_checkpoint(tmp_path / "m.pt", lookahead_model((3, 3, 3), future, channels=8))
    info = read_checkpoint_info(tmp_path / "m.pt")
    assert info["future_frames"] == info["architecture"]["future_frames"] == future
    text = format_info(info)
    assert f"variant         {variant}\n" in text
    assert f"future frames   {future}  " in text


@pytest.mark.parametrize("future, marks", [(0, [1, 2, 3, 4, 5, 6]), (1, [2, 3, 4, 5, 6, 7]), (2, [3, 4, 5, 6, 7, 8])])
def test_training_windows_have_the_future_frames_after_the_target(future, marks):
    """Receptive field 5, 2 targets from frame 5: the window runs from 5 - (4 - F) to 6 + F."""
    from poselift.train.cameras import project_normalized
    from poselift.train.generators import WindowSampler
    from tests.test_generators import ramp_takes

    s = WindowSampler(ramp_takes(), receptive_field=5, causal=future == 0, chunk=2, flip=False,
                      future_frames=future)
    first = torch.tensor([5])
    window = first[:, None] + torch.arange(6) - s.left_pad
    assert (s.data[window][..., 0, 2] * 1000).round()[0].tolist() == marks
    b = s.make_batch(first, torch.Generator().manual_seed(0))
    assert torch.equal(b.inputs_at_targets, b.inputs[:, 4 - future: 6 - future])
    reproj = project_normalized(b.targets + b.trajectory, b.intrinsics)
    torch.testing.assert_close(reproj, b.inputs_at_targets, atol=1e-4, rtol=1e-4)
