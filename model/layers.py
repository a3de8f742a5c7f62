"""The one description of the network: a list of layer specifications.

:func:`layer_specs` turns a :class:`ModelConfig` into the ordered layers

    expand, (block_conv, block_1x1) per residual block, shrink

and everything that runs the network reads it: the dilated :class:`model.TemporalModel`
and its strided twin, batch-norm folding, the folded offline forward and the
:class:`model.StreamingLifter`. A new architecture variant is a change here.

Look-ahead. A layer of width ``W`` and dilation ``d`` spans ``(W - 1) d`` frames; its
output is aligned with its ``current_tap`` (0 = oldest), so it sees
``future_taps = W - 1 - current_tap`` taps, ``future_taps * d`` frames, past that frame.
The residual of a block is its input at the block conv's current tap. The model's
``future_frames`` F are shared out over the layers as the digits of F in the mixed radix
of the filter widths, largest dilation first: the last layer takes
``F // d_last`` taps (at most ``W_last - 1``), the layer before it takes as many of the
remaining frames as its dilation allows, and so on down to the expand conv (dilation 1),
which takes the rest. Every F in ``[0, RF - 1]`` has exactly one such split, so the
split is deterministic; F = 0 gives every layer its newest tap (causal), and
F = (RF - 1) / 2 gives every layer its centre tap (symmetric).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from .config import ModelConfig


class LayerKind(str, Enum):
    EXPAND = "expand"
    BLOCK_CONV = "block_conv"
    BLOCK_1X1 = "block_1x1"
    SHRINK = "shrink"


@dataclass(frozen=True)
class LayerSpec:
    """One convolution of the network.

    ``conv`` and ``bn`` name its modules in the training model (``bn`` None for the
    shrink conv, which has a bias instead); the names are the checkpoint's
    ``state_dict`` keys. ``block`` is the residual block index (None outside blocks).
    """

    kind: LayerKind
    conv: str
    bn: str | None
    in_channels: int
    out_channels: int
    width: int
    dilation: int
    future_taps: int
    relu: bool
    block: int | None = None

    @property
    def current_tap(self) -> int:
        """The tap (0 = oldest) of the frame this layer's output is aligned with."""
        return self.width - 1 - self.future_taps

    @property
    def pad_left(self) -> int:
        """Frames before the aligned frame that this layer reads."""
        return self.current_tap * self.dilation

    @property
    def pad_right(self) -> int:
        """Frames after the aligned frame that this layer reads."""
        return self.future_taps * self.dilation

    @property
    def span(self) -> int:
        """Frames this layer consumes: a valid convolution is this much shorter than its input."""
        return (self.width - 1) * self.dilation

    @property
    def buffered(self) -> bool:
        """Whether it reads several frames (expand and block convs): a streaming ring buffer."""
        return self.kind in (LayerKind.EXPAND, LayerKind.BLOCK_CONV)


def dilations(filter_widths: tuple[int, ...]) -> list[int]:
    """Dilation of each wide layer: the product of the earlier widths."""
    out, d = [], 1
    for w in filter_widths:
        out.append(d)
        d *= w
    return out


def future_taps(filter_widths: tuple[int, ...], future_frames: int) -> list[int]:
    """Future taps of each wide layer: the mixed-radix digits of ``future_frames``."""
    rest, taps = future_frames, []
    for w, d in reversed(list(zip(filter_widths, dilations(filter_widths)))):
        digit = min(w - 1, rest // d)
        taps.append(digit)
        rest -= digit * d
    if rest:
        raise ValueError(f"{future_frames} future frames do not fit filter widths {filter_widths}")
    return taps[::-1]


@lru_cache(maxsize=128)
def layer_specs(config: ModelConfig) -> tuple[LayerSpec, ...]:
    """The ordered layers of ``config``'s network (see the module docstring)."""
    widths = config.filter_widths
    c = config.channels
    taps = future_taps(widths, config.future_frames)
    dil = dilations(widths)
    specs = [LayerSpec(LayerKind.EXPAND, "expand_conv", "expand_bn", config.num_joints_in * config.in_features, c,
                       widths[0], 1, taps[0], relu=True)]
    for i, (w, d, f) in enumerate(zip(widths[1:], dil[1:], taps[1:])):
        specs.append(LayerSpec(LayerKind.BLOCK_CONV, f"layers_conv.{2 * i}", f"layers_bn.{2 * i}", c, c, w, d, f,
                               relu=True, block=i))
        specs.append(LayerSpec(LayerKind.BLOCK_1X1, f"layers_conv.{2 * i + 1}", f"layers_bn.{2 * i + 1}", c, c, 1, 1, 0,
                               relu=True, block=i))
    specs.append(LayerSpec(LayerKind.SHRINK, "shrink", None, c, config.num_joints_out * 3, 1, 1, 0, relu=False))
    return tuple(specs)
