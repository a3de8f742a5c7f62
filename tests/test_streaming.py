import pytest
import torch

from poselift.model import StreamingLifter, lift_sequence
from tests.helpers import random_model

WIDTHS = [(3, 3, 3), (3, 3, 3, 3, 3), (1, 1, 1), (3, 5, 3)]


def stream_all(lifter: StreamingLifter, x: torch.Tensor) -> torch.Tensor:
    """Feed (B, T, J, 2) one frame at a time; return per-frame outputs aligned to input frames."""
    outs = torch.stack([lifter.step(x[:, t]) for t in range(x.shape[1])], dim=1)
    lat = lifter.latency_frames
    tails = lifter.flush()
    return torch.stack([torch.cat([outs[b, lat:], tails[b]]) for b in range(x.shape[0])])


@pytest.mark.parametrize("widths", WIDTHS)
@pytest.mark.parametrize("causal", [True, False])
def test_streaming_equals_offline(widths, causal):
    model = random_model(widths, causal=causal, channels=48)
    rf = model.receptive_field()
    x = torch.randn(3, rf + 37, 17, 2)
    offline = lift_sequence(model, x)
    lifter = StreamingLifter(model, batch_size=3, device="cpu")
    assert lifter.latency_frames == (0 if causal else (rf - 1) // 2)
    streamed = stream_all(lifter, x)
    assert streamed.shape == offline.shape == (3, rf + 37, 17, 3)
    assert (streamed - offline).abs().max().item() <= 1e-5


def test_offline_padding_convention_matches_unfolded_model():
    """lift_sequence == the plain (unfolded) model on an explicitly replicate-padded input."""
    model = random_model((3, 3, 3), causal=True, channels=32)
    x = torch.randn(2, 40, 17, 2)
    padded = torch.cat([x[:, :1].expand(-1, 26, -1, -1), x], dim=1)
    with torch.no_grad():
        ref = model(padded)
    torch.testing.assert_close(lift_sequence(model, x), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("causal", [True, False])
def test_sequence_shorter_than_receptive_field(causal):
    model = random_model((3, 3, 3), causal=causal, channels=32)
    x = torch.randn(2, 5, 17, 2)  # rf = 27
    offline = lift_sequence(model, x)
    streamed = stream_all(StreamingLifter(model, batch_size=2, device="cpu"), x)
    assert (streamed - offline).abs().max().item() <= 1e-5


def test_single_frame_sequence_symmetric():
    model = random_model((3, 3), causal=False, channels=16)
    x = torch.randn(1, 1, 17, 2)
    streamed = stream_all(StreamingLifter(model, device="cpu"), x)
    assert (streamed - lift_sequence(model, x)).abs().max().item() <= 1e-5


def test_reset_one_stream_leaves_others_untouched():
    model = random_model((3, 3, 3), causal=True, channels=32)
    x = torch.randn(2, 60, 17, 2)
    lifter = StreamingLifter(model, batch_size=2, device="cpu")
    outs = []
    for t in range(60):
        if t == 30:
            before = lifter.state.clone()
            lifter.reset([1])
            assert torch.equal(lifter.state.buffers[0][0], before.buffers[0][0])
        outs.append(lifter.step(x[:, t]))
    outs = torch.stack(outs, dim=1)
    full0 = lift_sequence(model, x[:1])
    restarted1 = lift_sequence(model, x[1:, 30:])
    assert (outs[0] - full0[0]).abs().max() <= 1e-5
    assert (outs[1, 30:] - restarted1[0]).abs().max() <= 1e-5


@pytest.mark.parametrize("causal", [True, False])
def test_streams_starting_at_different_frames(causal):
    model = random_model((3, 3, 3), causal=causal, channels=32)
    lifter = StreamingLifter(model, batch_size=3, device="cpu")
    starts = [0, 7, 19]
    length = 50
    seqs = [torch.randn(length, 17, 2) for _ in starts]
    got: dict[int, list[torch.Tensor]] = {i: [] for i in range(3)}
    for t in range(max(starts) + length):
        active = [i for i, s in enumerate(starts) if s <= t < s + length]
        x = torch.stack([seqs[i][t - starts[i]] for i in active])
        y = lifter.step(x, indices=active)
        for row, i in enumerate(active):
            got[i].append(y[row])
    tails = lifter.flush()
    for i in range(3):
        out = torch.stack(got[i])[lifter.latency_frames:]
        out = torch.cat([out, tails[i]])
        ref = lift_sequence(model, seqs[i][None])[0]
        assert (out - ref).abs().max() <= 1e-5


def test_state_clone_and_restore_reproduces_outputs():
    model = random_model((3, 3), causal=True, channels=16)
    lifter = StreamingLifter(model, device="cpu")
    x = torch.randn(20, 1, 17, 2)
    for t in range(10):
        lifter.step(x[t])
    saved = lifter.state.clone()
    a = [lifter.step(x[t]) for t in range(10, 20)]
    lifter.state = saved
    b = [lifter.step(x[t]) for t in range(10, 20)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_step_validates_shapes_and_indices():
    model = random_model((3,), causal=True, channels=8)
    lifter = StreamingLifter(model, batch_size=2, device="cpu")
    with pytest.raises(ValueError, match="shape"):
        lifter.step(torch.randn(2, 16, 2))
    with pytest.raises(ValueError, match="indices"):
        lifter.step(torch.randn(2, 17, 2), indices=[0, 0])
    with pytest.raises(ValueError, match="indices"):
        lifter.step(torch.randn(1, 17, 2), indices=[5])


def test_no_drift_over_10k_frames():
    model = random_model((3, 3, 3, 3), causal=True, channels=32)
    x = torch.cumsum(torch.randn(1, 10_000, 17, 2) * 0.01, dim=1)  # a slowly wandering signal
    offline = lift_sequence(model, x)
    lifter = StreamingLifter(model, device="cpu")
    worst_early, worst_late = 0.0, 0.0
    for t in range(x.shape[1]):
        d = (lifter.step(x[:, t]) - offline[:, t]).abs().max().item()
        if t < 1000:
            worst_early = max(worst_early, d)
        else:
            worst_late = max(worst_late, d)
    assert worst_early <= 1e-5 and worst_late <= 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.float16, 5e-2)])
def test_cuda_streaming_matches_cpu(dtype, tol):
    model = random_model((3, 3, 3), causal=True, channels=64)
    x = torch.randn(2, 60, 17, 2)
    ref = lift_sequence(model, x)
    lifter = StreamingLifter(model, batch_size=2, device="cuda", dtype=dtype)
    out = torch.stack([lifter.step(x[:, t]) for t in range(60)], dim=1).cpu()
    assert (out - ref).abs().max().item() <= tol


def test_reduced_precision_refused_on_cpu():
    model = random_model((3,), causal=True, channels=8)
    with pytest.raises(ValueError, match="CUDA"):
        StreamingLifter(model, device="cpu", dtype=torch.float16)


@pytest.mark.parametrize("causal", [True, False])
def test_fast_path_and_gather_path_agree(causal):
    """All slots in lockstep (views), one slot at a time (slice of the views) and an
    out-of-order subset (gather) give the same poses as the offline model."""
    model = random_model((3, 3, 5), causal=causal, channels=24)
    x = torch.randn(3, 70, 17, 2)
    ref = lift_sequence(model, x)
    lat = StreamingLifter(model, device="cpu").latency_frames
    together = StreamingLifter(model, batch_size=3, device="cpu")
    one_by_one = StreamingLifter(model, batch_size=3, device="cpu")
    shuffled = StreamingLifter(model, batch_size=3, device="cpu")
    outs = {"together": [], "one_by_one": [], "shuffled": []}
    for t in range(70):
        outs["together"].append(together.step(x[:, t]))
        outs["one_by_one"].append(torch.cat([one_by_one.step(x[i:i + 1, t], [i]) for i in range(3)]))
        y = shuffled.step(x[[2, 0, 1], t], [2, 0, 1])
        outs["shuffled"].append(y[[1, 2, 0]])
    for name, o in outs.items():
        o = torch.stack(o, dim=1)[:, lat:]
        assert (o - ref[:, : 70 - lat]).abs().max().item() <= 1e-5, name


def test_streams_reset_together_mid_sequence():
    model = random_model((3, 3, 3), causal=True, channels=32)
    x = torch.randn(2, 80, 17, 2)
    lifter = StreamingLifter(model, batch_size=2, device="cpu")
    for t in range(33):
        lifter.step(x[:, t])
    lifter.reset()
    out = torch.stack([lifter.step(x[:, t]) for t in range(33, 80)], dim=1)
    assert (out - lift_sequence(model, x[:, 33:])).abs().max().item() <= 1e-5


def test_state_assignment_copies_into_the_live_buffers():
    model = random_model((3, 3), causal=True, channels=16)
    lifter = StreamingLifter(model, device="cpu")
    live = lifter.state.buffers[1]
    snapshot = lifter.state.clone()
    lifter.step(torch.randn(1, 17, 2))
    lifter.state = snapshot
    assert lifter.state.buffers[1] is live and torch.equal(live, snapshot.buffers[1])
    assert lifter.frames_seen().tolist() == [0]
