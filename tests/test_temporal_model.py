import pytest
import torch

from poselift.model import ModelConfig, StridedTemporalModel, TemporalModel
from tests.helpers import random_model


@pytest.mark.parametrize(
    "widths, expected",
    [((3, 3, 3), 8.56e6), ((3, 3, 3, 3), 12.75e6), ((3, 3, 3, 3, 3), 16.95e6)],
)
def test_parameter_counts_match_paper(widths, expected):
    model = TemporalModel(filter_widths=widths, channels=1024)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - expected) / expected < 0.01


@pytest.mark.parametrize("widths", [(3, 3, 3), (3, 5, 3), (1, 1, 1), (3, 3, 3, 3, 3), (5,), (7, 3)])
@pytest.mark.parametrize("causal", [True, False])
def test_output_length_and_receptive_field(widths, causal):
    model = TemporalModel(filter_widths=widths, causal=causal, channels=16).eval()
    rf = model.receptive_field()
    expected_rf = 1
    for w in widths:
        expected_rf *= w
    assert rf == expected_rf
    x = torch.randn(2, rf + 10, 17, 2)
    assert model(x).shape == (2, 11, 17, 3)


def test_rejects_even_widths_and_bad_input():
    with pytest.raises(ValueError, match="odd"):
        TemporalModel(filter_widths=(3, 4), channels=8)
    model = TemporalModel(filter_widths=(3,), channels=8)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(1, 5, 16, 2))


def test_causal_output_depends_only_on_past_frames():
    model = random_model((3, 3, 3), causal=True, channels=32)
    rf = model.receptive_field()
    x = torch.randn(1, rf + 20, 17, 2)
    base = model(x)
    x2 = x.clone()
    x2[:, rf + 10:] += 1.0  # change frames from rf+10 on
    out = model(x2)
    # output i covers input frames i .. i+rf-1: outputs 0..10 end before frame rf+10
    torch.testing.assert_close(out[:, :11], base[:, :11])
    assert (out[:, 11:] - base[:, 11:]).abs().max() > 1e-4


def test_symmetric_output_is_centred():
    model = random_model((3, 3), causal=False, channels=32)
    x = torch.randn(1, 30, 17, 2)
    base = model(x)
    x2 = x.clone()
    x2[:, 20] += 1.0
    changed = ((model(x2) - base).abs().amax(dim=(2, 3)) > 1e-6)[0]
    # output i is centred on frame i+4 and covers i..i+8: frame 20 touches outputs 12..20
    assert changed.nonzero().flatten().tolist() == list(range(12, 21))


@pytest.mark.parametrize("widths", [(3, 3, 3), (3, 5, 3), (1, 1, 1), (3, 3, 3, 3)])
@pytest.mark.parametrize("causal", [True, False])
def test_strided_twin_matches_dilated_outputs_and_gradients(widths, causal):
    torch.manual_seed(0)
    dilated = TemporalModel(filter_widths=widths, causal=causal, channels=32, dropout=0.0)
    strided = StridedTemporalModel(dilated.config)
    assert list(strided.state_dict()) == list(dilated.state_dict())
    strided.load_state_dict(dilated.state_dict())
    dilated.eval(); strided.eval()  # BN uses running stats in both; same function
    rf = dilated.receptive_field()
    x = torch.randn(4, rf, 17, 2)
    out_d = dilated(x)
    out_s = strided(x)
    assert out_d.shape == out_s.shape == (4, 1, 17, 3)
    torch.testing.assert_close(out_s, out_d, rtol=1e-5, atol=1e-6)
    target = torch.randn_like(out_d)
    (out_d - target).pow(2).sum().backward()
    (out_s - target).pow(2).sum().backward()
    for (name, p_d), p_s in zip(dilated.named_parameters(), strided.parameters()):
        torch.testing.assert_close(p_s.grad, p_d.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_strided_twin_shares_weights_in_training_mode():
    torch.manual_seed(0)
    dilated = TemporalModel(filter_widths=(3, 3), causal=True, channels=16, dropout=0.0)
    twin = dilated.strided_twin()
    assert twin.expand_conv.weight is dilated.expand_conv.weight
    twin.train(); dilated.train()
    x = torch.randn(8, 9, 17, 2)
    seen = {}
    twin.expand_bn.register_forward_hook(lambda m, i, o: seen.update(bn_in=i[0].detach().clone(), bn_out=o.detach().clone()))
    out_s = twin(x)
    assert out_s.shape == (8, 1, 17, 3)
    # training mode normalises with the batch's own statistics (over batch and time), per channel
    z = seen["bn_in"]  # (8, 16, 3): the expand conv at stride 3 gives 3 positions per window
    assert z.shape == (8, 16, 3)
    mean, var = z.mean(dim=(0, 2)), z.var(dim=(0, 2), unbiased=False)
    want = (z - mean[None, :, None]) / torch.sqrt(var[None, :, None] + twin.expand_bn.eps)
    torch.testing.assert_close(seen["bn_out"], want, atol=1e-5, rtol=1e-5)
    # ... and updates the running statistics, which the dilated model reads (one shared buffer)
    m = twin.expand_bn.momentum
    torch.testing.assert_close(dilated.expand_bn.running_mean, m * mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(dilated.expand_bn.running_var, (1 - m) + m * z.var(dim=(0, 2), unbiased=True),
                               atol=1e-6, rtol=1e-5)
    # the same weights: a change through the twin is the dilated model's change, and so are gradients
    with torch.no_grad():
        twin.expand_conv.weight.add_(1.0)
    assert torch.equal(dilated.expand_conv.weight, twin.expand_conv.weight)
    twin(x).sum().backward()
    assert dilated.shrink.weight.grad is not None and dilated.shrink.weight.grad.abs().sum() > 0
    # in eval mode both layouts read the running statistics and agree exactly
    dilated.eval()
    twin.eval()
    torch.testing.assert_close(twin(x), dilated(x), atol=1e-5, rtol=1e-5)


def test_strided_rejects_wrong_window():
    model = StridedTemporalModel(ModelConfig(filter_widths=(3, 3), channels=8))
    with pytest.raises(ValueError, match="windows of 9"):
        model(torch.randn(1, 10, 17, 2))


def test_set_bn_momentum():
    model = TemporalModel(filter_widths=(3, 3, 3), channels=8)
    model.set_bn_momentum(0.01)
    assert all(bn.momentum == 0.01 for bn in [model.expand_bn, *model.layers_bn])
