"""The architecture description that travels with every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a :class:`model.TemporalModel`.

    ``filter_widths`` are the convolution widths: the first is the expand conv, each
    further one a residual block whose dilation is the product of the earlier widths.

    An output frame sees ``past_frames`` frames before it and ``future_frames`` after it
    (``past_frames + future_frames = receptive_field - 1``), so a streaming lifter is
    ``future_frames`` behind its input. ``future_frames`` is in ``[0, (RF - 1) / 2]``:
    0 is the causal model, ``(RF - 1) / 2`` the full-context (symmetric) one. Give either
    ``causal`` or ``future_frames`` (or both, consistently); ``causal`` is then set to
    ``future_frames == 0``. With neither, the model is symmetric. Checkpoints written
    before ``future_frames`` existed carry only ``causal``, which still determines it.
    """

    num_joints_in: int = 17
    in_features: int = 2
    num_joints_out: int = 17
    filter_widths: tuple[int, ...] = (3, 3, 3)
    causal: bool | None = None
    dropout: float = 0.25
    channels: int = 1024
    future_frames: int | None = None

    def __post_init__(self) -> None:
        widths = tuple(int(w) for w in self.filter_widths)
        object.__setattr__(self, "filter_widths", widths)
        if not widths:
            raise ValueError("filter_widths must not be empty")
        for w in widths:
            if w < 1 or w % 2 == 0:
                raise ValueError(f"filter widths must be odd and positive, got {widths}")
        half = (self.receptive_field - 1) // 2
        future = self.future_frames
        if future is None:
            future = 0 if self.causal else half
        elif isinstance(future, bool) or int(future) != future or not 0 <= future <= half:
            raise ValueError(f"future_frames must be an integer in [0, {half}] for filter widths {widths}, got {future}")
        future = int(future)
        causal = future == 0
        if self.causal is not None and bool(self.causal) != causal:
            if half:
                raise ValueError(f"causal={self.causal} contradicts future_frames={future} (causal means 0 future frames)")
            causal = bool(self.causal)  # a one-frame receptive field is both causal and symmetric: keep the label
        object.__setattr__(self, "future_frames", future)
        object.__setattr__(self, "causal", causal)
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

    @property
    def past_frames(self) -> int:
        """Frames before an output frame that it sees."""
        return self.receptive_field - 1 - self.future_frames

    @property
    def symmetric(self) -> bool:
        """As many future frames as past ones: the full-context model."""
        return self.future_frames == self.past_frames

    def with_future_frames(self, future_frames: int) -> "ModelConfig":
        """The same architecture with ``future_frames`` of look-ahead.

        Every such variant has the same parameter shapes, so e.g. a causal model's
        ``state_dict`` loads into ``TemporalModel(config.with_future_frames(4))`` as a
        starting point for fine-tuning a low-latency look-ahead model.
        """
        return replace(self, causal=None, future_frames=future_frames)

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
