"""The layer specifications are the one description of the network that every runner reads."""

from __future__ import annotations

import pytest
import torch

from poselift.model import LayerKind, ModelConfig, StreamingLifter, TemporalModel, fold_model, layer_specs
from poselift.model.layers import dilations, future_taps

WIDTHS = [(1,), (3,), (3, 3), (3, 3, 3), (3, 5, 3), (5, 3, 3, 1), (3, 3, 3, 3, 3)]


def _rf(widths) -> int:
    return int(torch.tensor(widths).prod())


@pytest.mark.parametrize("widths", WIDTHS)
def test_future_taps_are_the_mixed_radix_digits_largest_dilation_first(widths):
    rf = _rf(widths)
    seen = set()
    for f in range(rf):
        taps = future_taps(widths, f)
        assert all(0 <= t < w for t, w in zip(taps, widths))
        assert sum(t * d for t, d in zip(taps, dilations(widths))) == f
        seen.add(tuple(taps))
    assert len(seen) == rf  # one split per F: deterministic and exhaustive


def test_future_taps_examples():
    # (3, 3, 3): dilations 1, 3, 9; the largest dilation takes what it can first.
    assert future_taps((3, 3, 3), 0) == [0, 0, 0]
    assert future_taps((3, 3, 3), 13) == [1, 1, 1]  # symmetric: every centre tap
    assert future_taps((3, 3, 3), 9) == [0, 0, 1]
    assert future_taps((3, 3, 3), 4) == [1, 1, 0]
    assert future_taps((3, 5, 3), 10) == [1, 3, 0]  # dilations 1, 3, 15
    assert future_taps((3, 5, 3), 22) == [1, 2, 1]  # symmetric


@pytest.mark.parametrize("widths", WIDTHS)
def test_specs_of_causal_and_symmetric_models(widths):
    for causal in (True, False):
        cfg = ModelConfig(filter_widths=widths, causal=causal, channels=8, num_joints_out=5)
        specs = layer_specs(cfg)
        kinds = [s.kind for s in specs]
        assert kinds == [LayerKind.EXPAND] + [LayerKind.BLOCK_CONV, LayerKind.BLOCK_1X1] * (len(widths) - 1) + [LayerKind.SHRINK]
        wide = [s for s in specs if s.buffered]
        assert [s.width for s in wide] == list(widths)
        assert [s.dilation for s in wide] == dilations(widths)
        # causal: every layer aligned with its newest tap; symmetric: with its centre tap
        assert [s.current_tap for s in wide] == [w - 1 if causal else w // 2 for w in widths]
        assert sum(s.pad_right for s in specs) == cfg.future_frames
        assert sum(s.pad_left for s in specs) == cfg.past_frames
        assert all(s.pad_left + s.pad_right == s.span for s in specs)
        assert specs[0].in_channels == 17 * 2 and specs[-1].out_channels == 15
        assert [s.relu for s in specs] == [True] * (len(specs) - 1) + [False]


def test_spec_names_are_the_state_dict_of_the_model():
    model = TemporalModel(filter_widths=(3, 5, 3), causal=False, channels=12)
    modules = dict(model.named_modules())
    for spec in model.specs:
        conv = modules[spec.conv]
        assert tuple(conv.weight.shape) == (spec.out_channels, spec.in_channels, spec.width)
        assert (conv.bias is None) == (spec.bn is not None)
        if spec.bn is not None:
            assert modules[spec.bn].num_features == spec.out_channels
    named = {s.conv for s in model.specs} | {s.bn for s in model.specs if s.bn}
    params = {k.rsplit(".", 1)[0] for k in model.state_dict()}
    assert params == named


def test_folded_model_and_lifter_read_the_same_specs():
    model = TemporalModel(ModelConfig(filter_widths=(3, 3, 3), future_frames=4, channels=8)).eval()
    folded = fold_model(model)
    assert [layer.spec for layer in folded.layers] == list(model.specs)
    lifter = StreamingLifter(model)
    assert [layer.spec for layer in lifter._layers] == [s for s in model.specs if s.buffered]
    assert lifter._residual_taps == [None] + [s.current_tap for s in model.specs if s.kind is LayerKind.BLOCK_CONV]


def test_one_spec_change_reaches_every_runner(monkeypatch):
    """A changed spec list (here: one block conv aligned one tap earlier) reaches the
    training model, the folded model and the lifter alike: nothing else describes them."""
    import poselift.model.layers as layers

    cfg = ModelConfig(filter_widths=(3, 3), causal=True, channels=8)
    real = layers.layer_specs(cfg)
    moved = list(real)
    moved[1] = type(real[1])(**{**real[1].__dict__, "future_taps": 1})  # block conv one tap later
    fake = tuple(moved)
    monkeypatch.setattr(layers, "layer_specs", lambda config: fake)
    import poselift.model.temporal as temporal

    monkeypatch.setattr(temporal, "layer_specs", lambda config: fake)
    model = TemporalModel(cfg).eval()
    assert model.specs == fake
    assert fold_model(model).layers[1].spec.current_tap == 1
    assert StreamingLifter(model)._residual_taps == [None, 1]
