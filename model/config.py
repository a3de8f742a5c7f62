"""The architecture description that travels with every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a :class:`model.TemporalModel`.

    ``filter_widths`` are the convolution widths: the first is the expand conv, each
    further one a residual block whose dilation is the product of the earlier widths.
    """

    num_joints_in: int = 17
    in_features: int = 2
    num_joints_out: int = 17
    filter_widths: tuple[int, ...] = (3, 3, 3)
    causal: bool = False
    dropout: float = 0.25
    channels: int = 1024

    def __post_init__(self) -> None:
        widths = tuple(int(w) for w in self.filter_widths)
        object.__setattr__(self, "filter_widths", widths)
        if not widths:
            raise ValueError("filter_widths must not be empty")
        for w in widths:
            if w < 1 or w % 2 == 0:
                raise ValueError(f"filter widths must be odd and positive, got {widths}")
        if self.channels < 1 or self.num_joints_in < 1 or self.num_joints_out < 1:
            raise ValueError("channels and joint counts must be positive")
        if self.in_features < 1:
            raise ValueError("in_features must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def receptive_field(self) -> int:
        rf = 1
        for w in self.filter_widths:
            rf *= w
        return rf

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["filter_widths"] = list(self.filter_widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        kwargs = dict(d)
        if "filter_widths" in kwargs:
            kwargs["filter_widths"] = tuple(kwargs["filter_widths"])
        return cls(**kwargs)
