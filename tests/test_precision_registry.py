"""One registry owns the precision names and device rules; everything else reads it.

No GPU here: the device rules are checked with ``torch.device("cuda")`` objects, which the
registry, the kernel choice and the stream-side checks accept without touching CUDA.
"""

from __future__ import annotations

import argparse

import pytest
import torch

from poselift.model import PRECISIONS, Precision, get_precision, precision_names
from poselift.model.kernels import linear_backend

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_registry_names_dtypes_and_devices():
    assert list(PRECISIONS) == ["fp32", "fp16", "bf16", "int8"]
    assert precision_names("cpu") == ("fp32", "bf16", "int8")
    assert precision_names(CUDA) == ("fp32", "fp16", "bf16")
    assert {n: p.activation_dtype for n, p in PRECISIONS.items()} == {
        "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}
    for p in PRECISIONS.values():
        assert isinstance(p, Precision) and p.description and "\n" not in p.description


@pytest.mark.parametrize("given, name", [(None, "fp32"), ("BF16", "bf16"), ("int8", "int8"),
                                         (torch.float16, "fp16"), (torch.bfloat16, "bf16"),
                                         (torch.float32, "fp32"), (PRECISIONS["fp16"], "fp16")])
def test_get_precision_by_name_dtype_or_object(given, name):
    assert get_precision(given) is PRECISIONS[name]


@pytest.mark.parametrize("name, device, ok", [
    ("fp16", CUDA, True), ("fp16", CPU, False), ("int8", CPU, True), ("int8", CUDA, False),
    ("bf16", CPU, True), ("bf16", CUDA, True), ("fp32", "cpu", True), ("fp32", "cuda:1", True),
])
def test_device_rules(name, device, ok):
    if ok:
        assert get_precision(name, device).name == name
        assert PRECISIONS[name].runs_on(device)
    else:
        with pytest.raises(ValueError) as err:
            get_precision(name, device)
        msg = str(err.value)
        assert "\n" not in msg and repr(name) in msg
        assert ("CUDA mode" if name == "fp16" else "CPU mode") in msg
        # it names what does run there
        assert all(repr(n) in msg for n in precision_names(device))


@pytest.mark.parametrize("bad", ["int4", "fp64", "", torch.float64])
def test_unknown_precisions_are_one_line_errors(bad):
    with pytest.raises(ValueError) as err:
        get_precision(bad, CPU)
    assert "\n" not in str(err.value) and "fp32" in str(err.value)


def test_kernel_choice_follows_the_registry():
    assert linear_backend("fp16", CUDA) == "cublas-fp16"
    assert linear_backend("bf16", "cuda") == "cublas-bf16"
    with pytest.raises(ValueError, match="CPU mode"):
        linear_backend("int8", CUDA)
    with pytest.raises(ValueError, match="CUDA mode"):
        linear_backend("fp16", CPU)


def _precision_choices(command: str) -> tuple:
    from poselift.stream import commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    sub = parser._subparsers._group_actions[0].choices[command]
    (action,) = [a for a in sub._actions if a.dest == "precision"]
    return tuple(action.choices)


@pytest.mark.parametrize("command", ["demo", "serve", "webcam"])
def test_cli_precision_choices_are_the_registry(command):
    assert _precision_choices(command) == tuple(PRECISIONS)


def test_engine_passes_fp16_on_cuda_to_the_lifter(monkeypatch):
    """The stream engine leaves the precision rules to the lifter (the registry), so fp16
    reaches the lifter for CUDA (it used to be refused by a list of its own)."""
    import poselift.stream.engine as engine

    made = {}

    class FakeLifter:
        def __init__(self, model, batch_size=1, device=None, precision="fp32"):
            made.update(device=device, precision=precision)

    monkeypatch.setattr(engine, "StreamingLifter", FakeLifter)
    engine.make_lifter(torch.nn.Identity(), 2, "cuda", "fp16")
    assert made == {"device": "cuda", "precision": "fp16"}


@pytest.mark.parametrize("precision, device, match", [("fp16", "cpu", "CUDA mode"), ("int4", "cpu", "unknown")])
def test_engine_refuses_with_the_registry_message(precision, device, match):
    from poselift.stream.engine import LiftEngine
    from tests.helpers import random_model

    with pytest.raises(ValueError, match=match):
        LiftEngine(random_model((3,), channels=8), device=device, precision=precision)


def test_apps_accept_fp16_when_the_device_is_cuda(monkeypatch):
    """serve, demo and webcam build their engine with make_engine: fp16 must pass on CUDA."""
    import poselift.model
    import poselift.stream.apps as apps
    from poselift.errors import UserError

    made = {}

    def fake_engine(model, **kwargs):
        made.update(kwargs)
        return "engine"

    class Ckpt:
        model = trajectory_model = None

    monkeypatch.setattr(apps, "LiftEngine", fake_engine)
    monkeypatch.setattr(poselift.model, "resolve_device", lambda device: torch.device("cuda"))
    assert apps.make_engine(Ckpt(), device="cuda", precision="fp16", threads=None) == "engine"
    assert made["precision"] == "fp16" and made["device"] == "cuda"
    with pytest.raises(UserError, match="CPU mode"):
        apps.make_engine(Ckpt(), device="cuda", precision="int8", threads=None)
    monkeypatch.setattr(poselift.model, "resolve_device", lambda device: torch.device("cpu"))
    with pytest.raises(UserError, match="--precision fp16: .*CUDA mode"):
        apps.make_engine(Ckpt(), device="cpu", precision="fp16", threads=None)


def test_bench_measures_registry_precisions():
    from poselift.bench.step import cpu_precisions, cuda_precisions

    assert cpu_precisions() == list(precision_names("cpu"))
    assert cuda_precisions() == list(precision_names("cuda"))
