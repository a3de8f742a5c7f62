"""One stream's intake: a :class:`stream.protocol.Frame2D` becomes the model steps it needs.

Layout mapping (COCO-17 / MediaPipe-33 -> H36M-17, :mod:`model.skeleton`), confidence
threshold, normalisation to screen coordinates and gap filling (:mod:`stream.gapfill`)
happen here and only here. :class:`stream.engine.LiftEngine` keeps one :class:`Intake` per
stream, and everything that lifts frames goes through the engine: ``serve``, ``webcam``,
``demo`` and the offline ``video`` command, so a 2D sequence gives the same poses and
validity flags whichever way it comes in.

:meth:`Intake.process` returns a list of small queue items, in the order the engine must
handle them: :class:`Reset` (reset the stream's model state first), :class:`Step` (one
model step; ``meta`` None for a silent, interpolated dropped frame) and :class:`Empty`
(nothing liftable: published at once, invalid).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from poselift.model.normalization import normalize_screen
from poselift.model.skeleton import get_layout

from .gapfill import NUM_JOINTS, GapFiller, GapPolicy
from .protocol import Frame2D


def frame_to_model_input(frame: Frame2D, min_confidence: float) -> np.ndarray:
    """Frame2D (own layout, pixels) -> (17, 2) H36M normalised screen coords, NaN = missing.

    Joints whose confidence is below ``min_confidence`` count as missing; NaN in a source
    joint only affects the H36M joints built from it.
    """
    return frames_to_model_input([frame], min_confidence)[0]


def frames_to_model_input(frames: Sequence[Frame2D], min_confidence: float) -> np.ndarray:
    """:func:`frame_to_model_input` for many frames at once: (M, 17, 2) float32. Frames of
    one layout and image size are mapped and normalised in one numpy call (the server's
    drains are mostly that: many streams, a few camera kinds)."""
    out = np.empty((len(frames), NUM_JOINTS, 2), np.float32)
    groups: dict[tuple[str, int, int], list[int]] = {}
    for i, f in enumerate(frames):
        groups.setdefault((f.layout, f.width, f.height), []).append(i)
    for (layout, width, height), idx in groups.items():
        kp = np.array([frames[i].kp for i in idx], dtype=np.float64)
        for row, i in enumerate(idx):
            conf = frames[i].conf
            if conf is not None:
                kp[row, np.asarray(conf) < min_confidence] = np.nan
        out[idx] = normalize_screen(get_layout(layout).to_h36m(kp), width, height)
    return out


@dataclass
class Meta:
    """What a published pose carries about its input frame."""

    stream: str
    frame: int
    t: float
    t_recv: float
    valid: bool
    filled: list[int]
    gap: int
    x: np.ndarray | None  # (17, 2) the filled model input (None when nothing was liftable)
    width: int = 0  # image size and stated focal length (pixels; None: not stated), for the root
    height: int = 0
    focal_px: float | None = None


@dataclass
class Reset:
    """Reset the stream's model state (after flushing its pending poses) before what follows."""

    reason: str  # "restart", "gap", "size_change"


@dataclass
class Step:
    """One model step. ``meta`` None: a silent (interpolated, dropped) frame, not published."""

    x: np.ndarray
    meta: Meta | None


@dataclass
class Empty:
    """A frame with nothing liftable (no history, too few joints): published at once, invalid."""

    meta: Meta


Item = Reset | Step | Empty


class Intake:
    """The per-stream state before the model: image size and gap filler."""

    def __init__(self, policy: GapPolicy | None = None) -> None:
        self.policy = policy or GapPolicy()
        self.filler = GapFiller(self.policy)
        self.size: tuple[int, int] | None = None

    def process(self, f: Frame2D) -> list[Item]:
        """The queue items for one received frame (frames of a stream in arrival order);
        its ``model_input`` is used when a batch computed it already."""
        items: list[Item] = []
        if self.size is not None and (f.width, f.height) != self.size:
            items.append(Reset("size_change"))
            self.filler.clear()
        self.size = (f.width, f.height)
        x = f.model_input if f.model_input is not None else frame_to_model_input(f, self.policy.min_confidence)
        r = self.filler.process(x, f.frame)
        if r.reset is not None:
            items.append(Reset(r.reset))
        meta = Meta(f.stream, f.frame, f.t, f.t_recv or time.perf_counter(), r.valid, r.filled, r.gap,
                    None if r.x is None else r.x.copy(), f.width, f.height, f.focal_px)
        items.extend(Step(silent, None) for silent in r.silent)
        items.append(Empty(meta) if r.x is None else Step(r.x, meta))
        return items
