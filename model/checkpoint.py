"""Checkpoints that carry their own configuration.

A checkpoint is a ``torch.save``d dict of plain data and tensors only, so it loads with
``torch.load(..., weights_only=True)``: nothing in it can execute code. Layout::

    {
      "format": "poselift-checkpoint", "format_version": 1,
      "config": ModelConfig.to_dict(),            # architecture, future frames
      "state_dict": {...},                        # pose model weights
      "meta": {
        "layout": "h36m17", "joint_names": [...], # output (and input) joint layout
        "fps": 30.0,                              # frame rate the model was trained at
        "normalization": {...},                   # how 2D input is normalised
        "training": {...},                        # data, epochs, metrics, command
      },
      "trajectory": {"config": ..., "state_dict": ...} | None,
    }

Writes are atomic (temporary file, then rename), so a crash never leaves half a file.
A write that was killed leaves its temporary file behind; the next save or load of the
same path removes it (see :mod:`model.atomic`).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from poselift.errors import CheckpointError

from .atomic import atomic_torch_save, remove_stale_temporaries
from .config import ModelConfig
from .skeleton import H36M_JOINT_NAMES
from .temporal import TemporalModel, _TemporalBase

FORMAT_NAME = "poselift-checkpoint"
FORMAT_VERSION = 1

DEFAULT_NORMALIZATION: dict[str, Any] = {
    # x, y in pixels -> x / w * 2 - 1, y / w * 2 - h / w  (the paper's screen normalisation)
    "kind": "screen",
    "description": "x_n = 2 x / w - 1, y_n = 2 y / w - h / w (pixels, image width w, height h)",
}


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns: the rebuilt model(s) and the metadata."""

    model: TemporalModel
    meta: dict[str, Any]
    trajectory_model: TemporalModel | None = None
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return float(self.meta.get("fps", 30.0))

    def fps_warning(self, feed_fps: float | None, tolerance: float = 0.1) -> str | None:
        """:func:`fps_warning` for this checkpoint's training frame rate."""
        return fps_warning(self.fps, feed_fps, tolerance)

    @property
    def input_layout(self) -> str:
        """The 2D joint order the model takes (older checkpoints: H36M-17)."""
        return str(self.meta.get("input_layout", "h36m17"))


def fps_warning(model_fps: float, feed_fps: float | None, tolerance: float = 0.1) -> str | None:
    """One warning line when a feed's frame rate differs from the training frame rate by
    more than ``tolerance`` (relative): the temporal filters then see motion sped up or
    slowed down. None when they agree or the feed's rate is unknown."""
    if not feed_fps or feed_fps <= 0 or abs(feed_fps - model_fps) <= tolerance * model_fps:
        return None
    # What it costs, measured (train/results/frame_rate_sensitivity.md): the shipped 30 fps
    # models lose 0.2-0.9 % P1 at 20-25 fps, 0.5-1.9 % at 60 and 2-5 % at 15 or 120 fps.
    # Interpolating a slower feed up to the model's rate does not help (it only smooths).
    return (f"warning: the model was trained at {model_fps:g} fps, the input runs at {feed_fps:.3g} fps, so its "
            f"temporal filters see the motion {model_fps / feed_fps:.2g}x as fast; 3D poses may be a little less "
            f"accurate (the shipped models lose under 2 % P1 between 20 and 60 fps)")


def checkpoint_dict(
    model: _TemporalBase,
    *,
    fps: float = 30.0,
    normalization: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    trajectory_model: _TemporalBase | None = None,
    half: bool = False,
    input_layout: str = "h36m17",
) -> dict[str, Any]:
    """The dict that :func:`save_checkpoint` writes. ``half`` stores weights as fp16;
    ``input_layout`` is the 2D joint order the model takes (``coco17`` for VideoPose3D's
    Detectron models; the output is always H36M-17)."""

    def weights(m: _TemporalBase) -> dict[str, torch.Tensor]:
        sd = {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
        if half:
            sd = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
        return sd

    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": weights(model),
        "meta": {
            "layout": "h36m17",
            "joint_names": list(H36M_JOINT_NAMES),
            "input_layout": input_layout,
            "fps": float(fps),
            "normalization": dict(normalization or DEFAULT_NORMALIZATION),
            "training": dict(training or {}),
        },
        "trajectory": None
        if trajectory_model is None
        else {"config": trajectory_model.config.to_dict(), "state_dict": weights(trajectory_model)},
    }


def save_checkpoint(path: str | os.PathLike, model: _TemporalBase, **kwargs: Any) -> None:
    """Write ``model`` and its metadata atomically; see :func:`checkpoint_dict` for options."""
    atomic_torch_save(checkpoint_dict(model, **kwargs), path)


def read_raw(path: str | os.PathLike, *, safe_globals: list | tuple = (), refusal: str | None = None) -> dict[str, Any]:
    """Load a torch file safely (``weights_only=True``) and turn failures into CheckpointError.

    ``safe_globals``: extra globals the file may hold (e.g. a VideoPose3D file's numpy
    RandomState, :mod:`model.vp3d`); ``refusal``: the message for any other global."""
    path = Path(path)
    remove_stale_temporaries(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: our error says it
            warnings.simplefilter("ignore", UserWarning)
            with torch.serialization.safe_globals(list(safe_globals)):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # one line of our own: never torch's text, which says how to load unsafely
        text = str(exc)
        if re.search(r"GLOBAL|[Uu]nsupported global|allowed global", text):
            raise CheckpointError(f"{path}: {refusal}" if refusal else
                f"{path}: refused to load: the file contains Python objects other than tensors "
                f"and plain data (it was not written by poselift, or it was tampered with); nothing in it was run"
            ) from None
        if "weights_only" in text or "Weights only" in text:
            found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
            msg = found.group(1).strip() if found else "not a torch checkpoint pickle"
        else:
            msg = text.splitlines()[0] if text else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or truncated file?): {msg[:200]}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a poselift checkpoint (holds a {type(obj).__name__})")
    return obj


def _build(path: Path, config_dict: Any, state_dict: Any, what: str) -> TemporalModel:
    if not isinstance(config_dict, dict) or not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: {what}: 'config' and 'state_dict' must be dicts")
    try:
        config = ModelConfig.from_dict(config_dict)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {what}: invalid architecture: {exc}") from None
    return load_weights(TemporalModel(config), state_dict, path, what, "weights do not match the stored architecture")


def load_weights(model: TemporalModel, state_dict: dict, path: Any, what: str, mismatch: str) -> TemporalModel:
    """Load ``state_dict`` into ``model`` (eval mode) after checking its keys, shapes and
    values; anything off is a one-line CheckpointError (``mismatch`` for wrong keys)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: {what}: {mismatch} "
            f"(missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''})"
        )
    for key, value in expected.items():
        got = state_dict[key]
        if not isinstance(got, torch.Tensor) or got.shape != value.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise CheckpointError(
                f"{path}: {what}: weight {key!r} has shape {shape}, architecture needs {tuple(value.shape)}"
            )
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise CheckpointError(f"{path}: {what}: weight {key!r} contains NaN or inf")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state_dict.items()})
    model.eval()
    return model


def load_checkpoint(path: str | os.PathLike) -> LoadedCheckpoint:
    """Rebuild the model stored in ``path`` (in eval mode, on the CPU).

    Raises :class:`CheckpointError` with a one-line reason for anything unusable:
    missing, empty, truncated or corrupt files, foreign pickles, other formats or
    versions, and weights that do not fit the stored architecture.
    """
    path = Path(path)
    raw = read_raw(path)
    if raw.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a poselift checkpoint (no 'format': '{FORMAT_NAME}' entry)")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported (this poselift reads {FORMAT_VERSION})"
        )
    model = _build(path, raw.get("config"), raw.get("state_dict"), "pose model")
    meta = raw.get("meta") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: 'meta' must be a dict")
    trajectory = None
    if raw.get("trajectory"):
        t = raw["trajectory"]
        if not isinstance(t, dict):
            raise CheckpointError(f"{path}: 'trajectory' must be a dict")
        trajectory = _build(path, t.get("config"), t.get("state_dict"), "trajectory model")
    extra = {k: v for k, v in raw.items() if k not in {"format", "format_version", "config", "state_dict", "meta", "trajectory"}}
    return LoadedCheckpoint(model, meta, trajectory, str(path), extra)


def read_checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """A printable summary of a checkpoint (architecture, size, metadata)."""
    ckpt = load_checkpoint(path)
    cfg = ckpt.model.config
    params = sum(p.numel() for p in ckpt.model.parameters())
    info: dict[str, Any] = {
        "path": str(path),
        "format_version": FORMAT_VERSION,
        "architecture": {
            **cfg.to_dict(),
            "receptive_field": cfg.receptive_field,
            "parameters": params,
        },
        "causal": cfg.causal,
        "future_frames": cfg.future_frames,
        "layout": ckpt.meta.get("layout"),
        "input_layout": ckpt.input_layout,
        "fps": ckpt.meta.get("fps"),
        "normalization": ckpt.meta.get("normalization"),
        "training": ckpt.meta.get("training"),
        "trajectory_model": None if ckpt.trajectory_model is None else ckpt.trajectory_model.config.to_dict(),
        "trajectory_target": (ckpt.meta.get("trajectory") or {}).get("target") if ckpt.trajectory_model else None,
    }
    return info
