"""One stream's intake: a :class:`stream.protocol.Frame2D` becomes the model steps it needs.

Layout mapping (COCO-17 / MediaPipe-33 -> H36M-17, :mod:`model.skeleton`), confidence
threshold, normalisation to screen coordinates and gap filling (:mod:`stream.gapfill`)
happen here and only here, for whole batches of frames. :class:`stream.engine.LiftEngine`
keeps one :class:`Intake` for all its stream slots, and everything that lifts frames goes through the engine: ``serve``, ``webcam``,
``demo`` and the offline ``video`` command, so a 2D sequence gives the same poses and
validity flags whichever way it comes in.

:meth:`Intake.process` returns, per frame, a list of small queue items, in the order the
engine must handle them: :class:`Reset` (reset the stream's model state first), :class:`Step` (one
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

from .gapfill import NUM_JOINTS, RESET_REASONS, GapBank, GapPolicy
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
    """The state before the model of every stream slot of an engine: image sizes and the
    gap-fill state (:class:`stream.gapfill.GapBank`), in arrays. The engine hands it the
    frames received since its last run, a layer at a time (at most one frame per slot:
    the first frame of every stream, then the second, ...), and gets each frame's queue
    items back."""

    def __init__(self, slots: int, policy: GapPolicy | None = None) -> None:
        self.policy = policy or GapPolicy()
        self.gaps = GapBank(slots, self.policy)
        self.sizes: list[tuple[int, int] | None] = [None] * slots

    def start(self, slot: int) -> None:
        """A new stream takes ``slot``: nothing of the previous one is kept."""
        self.sizes[slot] = None
        self.gaps.clear([slot], forget_frame=True)

    def model_inputs(self, frames: Sequence[Frame2D]) -> list[np.ndarray | None]:
        """:func:`frames_to_model_input` of ``frames`` together; if that fails, frame by
        frame, and None for a frame that fails alone (it cannot be lifted)."""
        try:
            return list(frames_to_model_input(frames, self.policy.min_confidence))
        except Exception:  # noqa: BLE001 (a Frame2D no validation made: find the culprit)
            out: list[np.ndarray | None] = []
            for f in frames:
                try:
                    out.append(frame_to_model_input(f, self.policy.min_confidence))
                except Exception:  # noqa: BLE001
                    out.append(None)
            return out

    def process(self, slots: Sequence[int], frames: Sequence[Frame2D], xs: Sequence[np.ndarray]) -> list[list[Item]]:
        """The queue items of one layer: frame ``frames[i]`` (model input ``xs[i]``) of the
        stream in slot ``slots[i]``, slots distinct, each stream's frames in arrival order."""
        sized: list[list[Item]] = []
        for slot, f in zip(slots, frames):
            size = (f.width, f.height)
            if self.sizes[slot] is not None and size != self.sizes[slot]:
                sized.append([Reset("size_change")])
                self.gaps.clear([slot])
            else:
                sized.append([])
            self.sizes[slot] = size
        fill = self.gaps.process(np.asarray(slots, np.int64), np.stack(xs),
                                 np.array([f.frame for f in frames], np.uint64))
        # The rows' fields as Python values in one pass each (not a FillResult per row: at
        # hundreds of streams per layer the per-row numpy calls cost more than the filling).
        has_x, valid, gaps, resets = fill.has_x.tolist(), fill.valid.tolist(), fill.gap.tolist(), fill.reset.tolist()
        any_filled = fill.filled.any(axis=1).tolist()
        x_all = fill.x.copy()  # the batch's filled inputs; each Meta and Step holds a row of it
        out = []
        for i, (f, items) in enumerate(zip(frames, sized)):
            if resets[i]:
                items.append(Reset(RESET_REASONS[resets[i]]))
            x = x_all[i] if has_x[i] else None
            meta = Meta(f.stream, f.frame, f.t, f.t_recv or time.perf_counter(), valid[i],
                        np.flatnonzero(fill.filled[i]).tolist() if any_filled[i] else [], gaps[i], x,
                        f.width, f.height, f.focal_px)
            silent = fill.silent.get(i)
            if silent is not None:
                items.extend(Step(frame, None) for frame in silent)
            items.append(Empty(meta) if x is None else Step(x, meta))
            out.append(items)
        return out
