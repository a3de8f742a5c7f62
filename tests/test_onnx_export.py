"""poselift export: the ONNX streaming step, driven by onnxruntime, against StreamingLifter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poselift.cli import main
from poselift.model import ModelConfig, StreamingLifter, TemporalModel, save_checkpoint
from poselift.model.onnx_export import StreamingStep, export_onnx, write_triton_repository

from .helpers import randomize_batch_norm

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[export]')")


def small_model(future_frames=0, widths=(3, 3, 3), channels=16, seed=0):
    torch.manual_seed(seed)
    model = TemporalModel(ModelConfig(filter_widths=widths, channels=channels, future_frames=future_frames, dropout=0))
    return randomize_batch_norm(model, seed).eval()


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = {}
    for f in (0, 5):  # causal, and a look-ahead model (5 of 13 past/future frames)
        path = tmp_path_factory.mktemp("onnx") / f"step{f}.onnx"
        model = small_model(future_frames=f)
        spec = export_onnx(model, path)
        out[f] = (model, spec, session(path))
    return out


def test_contract(exported):
    _, spec, sess = exported[0]
    ins, outs = sess.get_inputs(), sess.get_outputs()
    assert [i.name for i in ins] == ["keypoints", "start", *spec.names]
    assert [o.name for o in outs] == ["pose3d", *[f"{n}_out" for n in spec.names]]
    assert ins[0].type == "tensor(float)" and ins[0].shape[1:] == [17, 2] and isinstance(ins[0].shape[0], str)
    assert ins[1].type == "tensor(bool)" and len(ins[1].shape) == 1
    assert outs[0].type == "tensor(float)" and outs[0].shape[1:] == [17, 3]
    assert ins[-1].type == "tensor(int64)" and len(ins[-1].shape) == 1  # the frame counter
    for i, o in zip(ins[2:], outs[1:]):
        assert i.type == o.type and i.shape[1:] == o.shape[1:]


@pytest.mark.parametrize("future", [0, 5])
def test_onnx_step_matches_streaming_lifter_over_1000_frames(exported, future):
    """Streams at different frame counts in one batch, streams that start mid-run, a
    restart, and rows run before their stream starts (their state is ignored)."""
    model, spec, sess = exported[future]
    b, n = 4, 1000
    starts = {0: [0], 1: [0, 500], 2: [37], 3: [613]}  # frames where each row (re)starts
    lifter = StreamingLifter(model, batch_size=b)
    state = [s.numpy() for s in spec.zero_state(b)]
    rng = np.random.default_rng(0)
    walk = rng.normal(scale=0.3, size=(b, 17, 2)).astype(np.float32)
    worst, compared = 0.0, 0
    for t in range(n):
        walk += rng.normal(scale=0.02, size=walk.shape).astype(np.float32)
        start = np.array([t in starts[r] for r in range(b)])
        live = [r for r in range(b) if min(starts[r]) <= t]
        lifter.reset([r for r in range(b) if start[r]])
        y = lifter.step(torch.from_numpy(walk[live]), live).numpy() if live else None
        out = sess.run(None, {"keypoints": walk, "start": start, **dict(zip(spec.names, state))})
        state = out[1:]
        if live:
            worst = max(worst, float(np.abs(out[0][live] - y).max()))
            compared += len(live)
    assert compared > 3000 and worst < 1e-5, worst
    assert state[-1].tolist() == [1000, 500, 963, 387]


def test_zero_state_is_a_valid_start_and_batch_is_dynamic(exported):
    model, spec, sess = exported[5]
    x = np.random.default_rng(1).normal(scale=0.3, size=(5, 17, 2)).astype(np.float32)
    zeros = dict(zip(spec.names, [s.numpy() for s in spec.zero_state(5)]))
    a = sess.run(None, {"keypoints": x, "start": np.zeros(5, bool), **zeros})
    # Garbage state with start = true is the same as zero state: a starting row's state is
    # never read (its ring rows are overwritten before they are read), over several frames.
    noise = {k: (v + 7).astype(v.dtype) for k, v in zeros.items()}
    b = sess.run(None, {"keypoints": x, "start": np.ones(5, bool), **noise})
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[-1], b[-1])
    sa, sb = a[1:], b[1:]
    for _ in range(30):
        ya = sess.run(None, {"keypoints": x, "start": np.zeros(5, bool), **dict(zip(spec.names, sa))})
        yb = sess.run(None, {"keypoints": x, "start": np.zeros(5, bool), **dict(zip(spec.names, sb))})
        np.testing.assert_array_equal(ya[0], yb[0])
        sa, sb = ya[1:], yb[1:]
    one = sess.run(None, {"keypoints": x[:1], "start": np.ones(1, bool),
                          **{k: v[:1] for k, v in zeros.items()}})
    np.testing.assert_allclose(one[0], a[0][:1], atol=1e-6)
    np.testing.assert_allclose(a[0], StreamingLifter(model, batch_size=5).step(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_torch_step_module_is_the_exported_one(exported):
    model, spec, sess = exported[0]
    step = StreamingStep(model).eval()
    x = torch.randn(2, 17, 2) * 0.3
    st = spec.zero_state(2)
    ref = step(x, torch.ones(2, dtype=torch.bool), *st)
    got = sess.run(None, {"keypoints": x.numpy(), "start": np.ones(2, bool), **{n: s.numpy() for n, s in zip(spec.names, st)}})
    for r, g in zip(ref, got):
        np.testing.assert_allclose(r.detach().numpy(), g, atol=1e-6)


def test_cli_export_and_triton_repository(tmp_path, capsys):
    model = small_model()
    save_checkpoint(tmp_path / "m.pt", model)
    assert main(["export", str(tmp_path / "m.pt"), "--onnx", str(tmp_path / "m.onnx"),
                 "--triton", str(tmp_path / "repo")]) == 0
    assert "state tensors" in capsys.readouterr().out
    assert (tmp_path / "m.onnx").stat().st_size > 0
    folder = tmp_path / "repo" / "poselift_step"
    sess = session(folder / "1" / "model.onnx")  # the Triton variant: start and counter (B, 1)
    assert sess.get_inputs()[1].shape[1:] == [1] and sess.get_inputs()[-1].shape[1:] == [1]
    text = (folder / "config.pbtxt").read_text()
    mc = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                             reason="tritonclient is not installed (pip install -e '.[triton]')")
    from google.protobuf import text_format

    cfg = text_format.Parse(text, mc.ModelConfig())
    assert cfg.backend == "onnxruntime" and cfg.max_batch_size > 0
    seq = cfg.sequence_batching
    (ctrl,) = seq.control_input
    assert ctrl.name == "start" and ctrl.control[0].kind == mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_START
    names = [i.name for i in sess.get_inputs()][2:]
    assert [(s.input_name, s.output_name) for s in seq.state] == [(n, f"{n}_out") for n in names]
    for s, i in zip(seq.state, sess.get_inputs()[2:]):
        assert list(s.dims) == i.shape[1:] and s.initial_state[0].zero_data


def test_export_needs_an_output(tmp_path, capsys):
    save_checkpoint(tmp_path / "m.pt", small_model())
    assert main(["export", str(tmp_path / "m.pt")]) == 2
    assert "--onnx" in capsys.readouterr().err


def test_bench_compares_both_runners():
    from poselift.bench.onnx_step import bench_onnx_step, format_line

    r = bench_onnx_step(small_model(), batch_sizes=(1, 4), budget_s=0.2)
    assert set(r["batches"]) == {"1", "4"}
    for row in r["batches"].values():
        assert row["torch"]["n"] >= 5 and row["onnxruntime"]["n"] >= 5 and row["ratio_p50"] > 0
    assert "B=1" in format_line(r) and "B=4" in format_line(r)
