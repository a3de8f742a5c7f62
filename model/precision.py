"""The numeric precisions a lifter can run in, and which devices run them.

This registry is the only place that names the precisions: the lifter, the weight
kernels (:mod:`model.kernels`), the command line's ``--precision`` choices, the stream
engine and the bench all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    """One precision: its name, the dtype of the activations between layers, and the
    device types (``torch.device.type``) that run it."""

    name: str
    activation_dtype: torch.dtype
    device_types: tuple[str, ...]
    description: str

    def runs_on(self, device: torch.device | str) -> bool:
        return _device_type(device) in self.device_types

    def check(self, device: torch.device | str) -> "Precision":
        """``self`` if it runs on ``device``, else a one-line ValueError naming the alternatives."""
        kind = _device_type(device)
        if kind not in self.device_types:
            where = "/".join(_LABELS.get(t, t) for t in self.device_types)
            others = [repr(n) for n in precision_names(kind)]
            use = ", ".join(others[:-1]) + " or " + others[-1] if len(others) > 1 else (others or ["none"])[0]
            on = {"cpu": "the CPU"}.get(kind, _LABELS.get(kind, kind))
            raise ValueError(f"precision {self.name!r} is a {where} mode; on {on} use {use}")
        return self


_LABELS = {"cpu": "CPU", "cuda": "CUDA"}

# Order: the bench measures them in this order (fp32, the reference, first).
PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", torch.float32, ("cpu", "cuda"), "float32 weights and activations (exact)"),
        Precision("fp16", torch.float16, ("cuda",), "float16 weights and activations (CUDA only)"),
        Precision("bf16", torch.bfloat16, ("cpu", "cuda"), "bfloat16 weights and activations, fp32 accumulation"),
        Precision("int8", torch.float32, ("cpu",),
                  "per-output-channel int8 weights, dynamically quantised activations (CPU only)"),
    )
}

_BY_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def _device_type(device: torch.device | str) -> str:
    return device.type if isinstance(device, torch.device) else torch.device(device).type


def precision_names(device: torch.device | str | None = None) -> tuple[str, ...]:
    """All precision names, or those that run on ``device`` (a device or a device type)."""
    return tuple(n for n, p in PRECISIONS.items() if device is None or p.runs_on(device))


def get_precision(precision: str | torch.dtype | Precision | None,
                  device: torch.device | str | None = None) -> Precision:
    """The registered precision for a name (any case), a torch dtype or ``None`` (fp32).

    With ``device``, also checks that it runs there. Raises a one-line ValueError.
    """
    if precision is None:
        precision = "fp32"
    if isinstance(precision, torch.dtype):
        if precision not in _BY_DTYPE:
            raise ValueError(f"unsupported dtype {precision}; choose one of {', '.join(PRECISIONS)}")
        precision = _BY_DTYPE[precision]
    name = precision.name if isinstance(precision, Precision) else str(precision).lower()
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    found = PRECISIONS[name]
    return found if device is None else found.check(device)


def resolve_precision(precision: str | torch.dtype | Precision | None, device: torch.device | str) -> str:
    """The name of :func:`get_precision` (checked for ``device``)."""
    return get_precision(precision, device).name
