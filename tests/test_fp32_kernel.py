"""The fp32 CPU kernel choice (model.kernels.fp32_kernel): oneDNN's prepacked linear or aten's
addmm, measured at batch 1 once per process and layer shape for every lifter, or fixed by
POSELIFT_FP32_KERNEL; both stream exactly."""

import pytest
import torch

from poselift.model import StreamingLifter, lift_sequence
from poselift.model import kernels
from tests.helpers import random_model
from tests.test_streaming import stream_all

BIG = 512  # channels: the width-3 block layers (512 x 1536) are above SMALL_LAYER, so the choice applies


@pytest.fixture
def fresh_choices(monkeypatch):
    monkeypatch.setattr(kernels, "_fp32_choice", {})
    monkeypatch.delenv(kernels.FP32_KERNEL_ENV, raising=False)


def test_environment_fixes_the_kernel_and_a_bad_value_is_refused(monkeypatch, fresh_choices):
    monkeypatch.setattr(kernels, "_time_fp32_kernels", lambda *a: pytest.fail("no timing when the choice is fixed"))
    for name in ("onednn", "aten"):
        monkeypatch.setenv(kernels.FP32_KERNEL_ENV, name)
        assert kernels.fp32_kernel(BIG, 3 * BIG) == name
        expected = "onednn-fp32" if name == "onednn" and kernels._onednn_ok() else "aten-fp32"
        assert kernels.layer_backend(BIG, 3 * BIG, "fp32", "cpu") == expected
        assert kernels.layer_backend(16, 48, "fp32", "cpu") == "aten-fp32"  # small layers: always addmm
    monkeypatch.setenv(kernels.FP32_KERNEL_ENV, "mkl")
    with pytest.raises(ValueError, match="POSELIFT_FP32_KERNEL"):
        kernels.fp32_kernel(BIG, 3 * BIG)


def test_one_measurement_per_shape_holds_for_every_lifter_of_the_process(monkeypatch, fresh_choices):
    if not kernels._onednn_ok():
        pytest.skip("no oneDNN in this torch: nothing to choose")
    calls = []
    monkeypatch.setattr(kernels, "_time_fp32_kernels", lambda *key: calls.append(key) or "aten")
    model = random_model((3, 3, 3), causal=True, channels=BIG)
    lifters = [StreamingLifter(model, batch_size=b, device="cpu") for b in (1, 1, 4, 64)]
    assert calls == [(BIG, 3 * BIG)]  # four lifters, two wide block layers of one shape: one timing
    assert all(lf.backend == "aten-fp32" for lf in lifters)
    monkeypatch.setattr(kernels, "_time_fp32_kernels", lambda *key: "onednn")
    monkeypatch.setattr(kernels, "_fp32_choice", {})
    assert StreamingLifter(model, batch_size=4, device="cpu").backend == "onednn-fp32+aten-fp32"  # 1x1: addmm


def test_the_measurement_answers_a_kernel_name(fresh_choices):
    if not kernels._onednn_ok():
        pytest.skip("no oneDNN in this torch")
    assert kernels._time_fp32_kernels(64, 192, calls=3, rounds=1) in ("onednn", "aten")


@pytest.mark.parametrize("kernel", ["onednn", "aten"])
@pytest.mark.parametrize("causal", [True, False])
def test_each_kernel_streams_exactly(monkeypatch, fresh_choices, kernel, causal):
    monkeypatch.setenv(kernels.FP32_KERNEL_ENV, kernel)
    model = random_model((3, 3, 3), causal=causal, channels=BIG)
    x = torch.randn(3, model.receptive_field() + 20, 17, 2)
    lifter = StreamingLifter(model, batch_size=3, device="cpu")
    if kernel == "onednn" and kernels._onednn_ok():
        assert lifter.backend.startswith("onednn-fp32")
    assert (stream_all(lifter, x) - lift_sequence(model, x)).abs().max().item() <= 1e-5
