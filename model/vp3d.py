"""Import VideoPose3D checkpoints (Pavllo et al., CVPR 2019) as poselift checkpoints.

A VideoPose3D training checkpoint is a ``torch.save``d dict::

    {"epoch": int, "lr": float, "random_state": numpy.random.RandomState,
     "optimizer": optimizer.state_dict(),
     "model_pos": TemporalModel state_dict, "model_traj": state_dict or None}

The ``random_state`` entry is a pickled numpy object, so plain ``weights_only=True``
refuses the file. :func:`read_vp3d` allows exactly the numpy globals that a RandomState
and its key array need (:data:`VP3D_SAFE_GLOBALS`, found by writing such a file with
numpy 1.26) and nothing else: any other global, e.g. a pickle whose ``__reduce__`` would
run code, is refused before anything is called.

The reference model's module names (``expand_conv``, ``expand_bn``, ``layers_conv.{i}``,
``layers_bn.{i}``, ``shrink``) are poselift's, and its padding convention (edge
replicate, ``RF - 1`` frames before for the causal model, ``(RF - 1) / 2`` on each side
for the symmetric one; residuals at the newest tap resp. the centre tap) is the one
:class:`model.StreamingLifter` reproduces, so the weights load as they are. Everything the
file does not say is inferred from the weight shapes (:func:`infer_config`), except
causality (``causal``) and the 2D input layout (``layout``), which the user states.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.core.multiarray as _np_multiarray
import numpy.random._pickle as _np_random_pickle
import torch

from poselift.errors import CheckpointError

from .checkpoint import load_weights, read_raw, save_checkpoint
from .config import ModelConfig
from .skeleton import COCO17_JOINT_NAMES, H36M_JOINT_NAMES
from .temporal import TemporalModel

# Exactly what a VideoPose3D checkpoint's ``random_state`` (a numpy RandomState) needs:
# the RandomState and bit generator constructors and the RandomState type (its state is
# set through BUILD), the ndarray reconstruction of its key and the key's dtype. The name
# pickles written by numpy < 1.17 use for the RandomState constructor is allowed too.
VP3D_SAFE_GLOBALS: list[Any] = [
    _np_random_pickle.__randomstate_ctor,
    _np_random_pickle.__bit_generator_ctor,
    (getattr(np.random, "__RandomState_ctor"), "numpy.random.__RandomState_ctor"),
    np.random.RandomState,
    _np_multiarray._reconstruct,
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),  # numpy.dtypes.UInt32DType: the key array's dtype
]

# The frame rate Human3.6M (and so every official VideoPose3D model) was trained at.
VP3D_FPS = 50.0
VP3D_LAYOUTS = {"h36m17": H36M_JOINT_NAMES, "coco17": COCO17_JOINT_NAMES}
VP3D_NORMALIZATION = {
    "kind": "screen",
    "description": "x_n = 2 x / w - 1, y_n = 2 y / w - h / w (pixels, image width w, height h)",
}


def read_vp3d(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict of a VideoPose3D file, loaded without running any code."""
    raw = read_raw(
        path, safe_globals=VP3D_SAFE_GLOBALS,
        refusal="refused to load: the file contains Python objects that a VideoPose3D checkpoint does not hold "
                "(only tensors, plain data and a numpy RandomState are allowed); nothing in it was run",
    )
    if "model_pos" not in raw:
        keys = ", ".join(sorted(map(str, raw))[:6])
        raise CheckpointError(f"{path}: not a VideoPose3D checkpoint: no 'model_pos' entry (it holds {keys})")
    return raw


def _strip_prefix(sd: dict[str, Any]) -> dict[str, Any]:
    """``module.`` prefixes of a DataParallel-wrapped model, removed."""
    if sd and all(isinstance(k, str) and k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _shape(sd: dict[str, Any], key: str, dims: int, path: Any, what: str) -> tuple[int, ...]:
    value = sd.get(key)
    if not isinstance(value, torch.Tensor) or value.dim() != dims:
        found = ("missing" if value is None else f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor)
                 else type(value).__name__)
        raise CheckpointError(
            f"{path}: {what} is not a VideoPose3D temporal model: {key!r} should be a {dims}-d tensor ({found})"
        )
    return tuple(value.shape)


def infer_config(sd: dict[str, Any], *, causal: bool, path: Any = "", what: str = "model_pos") -> ModelConfig:
    """The architecture of a VideoPose3D state dict, from its weight shapes.

    ``expand_conv.weight`` (C, J_in * 2, W_0) gives the channels, input joints and the
    first filter width; each block conv ``layers_conv.{2 i}.weight`` (C, C, K_i) one more
    width; ``shrink.weight`` (J_out * 3, C, 1) the output joints. In the dilated form
    K_i is the filter width; in the dense form (VideoPose3D's ``--dense``) it is
    ``(W_i - 1) d_i + 1`` with d_i the product of the earlier widths, which poselift cannot
    stream (its kernels are not dilated): such files are refused with a clear message.
    """
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f"{path}: {what} is not a state dict")
    channels, joints2, w0 = _shape(sd, "expand_conv.weight", 3, path, what)
    if joints2 % 2:
        raise CheckpointError(f"{path}: {what}: expand_conv takes {joints2} input channels, not 2 per joint")
    n_convs = 0
    while f"layers_conv.{n_convs}.weight" in sd:
        n_convs += 1
    if n_convs % 2:
        raise CheckpointError(f"{path}: {what} is not a VideoPose3D temporal model: odd number of block convolutions")
    widths, dense_widths, d = [w0], [w0], w0
    dense_ok = True
    for i in range(0, n_convs, 2):
        out_c, in_c, k = _shape(sd, f"layers_conv.{i}.weight", 3, path, what)
        one = _shape(sd, f"layers_conv.{i + 1}.weight", 3, path, what)
        if (out_c, in_c) != (channels, channels) or one != (channels, channels, 1):
            raise CheckpointError(f"{path}: {what} is not a VideoPose3D temporal model: block {i // 2} has shapes "
                                  f"{(out_c, in_c, k)} and {one} for {channels} channels")
        widths.append(k)
        if (k - 1) % d == 0 and ((k - 1) // d) % 2 == 0 and k > 1:
            dense_widths.append((k - 1) // d + 1)
            d *= dense_widths[-1]  # the dense reading's dilation of the next block
        else:
            dense_ok = False
    if n_convs and dense_ok:
        raise CheckpointError(
            f"{path}: {what} looks like a dense VideoPose3D model (filter widths {','.join(map(str, dense_widths))}, "
            f"trained with --dense): poselift streams only the dilated form"
        )
    out3, c_in, k = _shape(sd, "shrink.weight", 3, path, what)
    if c_in != channels or k != 1 or out3 % 3:
        raise CheckpointError(f"{path}: {what}: shrink weight {(out3, c_in, k)} does not fit {channels} channels")
    try:
        return ModelConfig(num_joints_in=joints2 // 2, in_features=2, num_joints_out=out3 // 3,
                           filter_widths=tuple(widths), causal=causal, channels=channels)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {what}: invalid architecture: {exc}") from None


def build_vp3d_model(sd: dict[str, Any], *, causal: bool, path: Any = "", what: str = "model_pos") -> TemporalModel:
    """A :class:`TemporalModel` holding a VideoPose3D state dict (eval mode, fp32)."""
    sd = _strip_prefix(dict(sd))
    config = infer_config(sd, causal=causal, path=path, what=what)
    model = TemporalModel(config)
    expected = model.state_dict()
    for key in list(expected):  # written by torch < 0.4.1: batch norms without a counter
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = torch.zeros((), dtype=torch.long)
    return load_weights(model, sd, path, what, "not a VideoPose3D temporal model of the inferred architecture")


def import_vp3d(path: str | os.PathLike, out: str | os.PathLike, *, causal: bool = False,
                layout: str = "h36m17", fps: float = VP3D_FPS) -> dict[str, Any]:
    """Convert a VideoPose3D checkpoint into a poselift checkpoint at ``out``.

    Returns a summary (architecture, trajectory, layout, frame rate) for the command line.
    """
    if layout not in VP3D_LAYOUTS:
        raise ValueError(f"--layout must be one of {', '.join(VP3D_LAYOUTS)}, got {layout!r}")
    raw = read_vp3d(path)
    model = build_vp3d_model(raw["model_pos"], causal=causal, path=path, what="model_pos")
    cfg = model.config
    if cfg.num_joints_in != len(VP3D_LAYOUTS[layout]):
        raise CheckpointError(f"{path}: model_pos takes {cfg.num_joints_in} joints, layout {layout} has "
                              f"{len(VP3D_LAYOUTS[layout])}")
    traj = None
    if raw.get("model_traj") is not None:
        traj = build_vp3d_model(raw["model_traj"], causal=causal, path=path, what="model_traj")
        if traj.config.num_joints_out != 1 or traj.config.receptive_field != cfg.receptive_field:
            raise CheckpointError(f"{path}: model_traj must output 1 joint with model_pos's receptive field")
    epoch = raw.get("epoch")
    save_checkpoint(out, model, fps=fps, normalization=VP3D_NORMALIZATION, trajectory_model=traj, training={
        "source": f"VideoPose3D checkpoint {Path(path).name}",
        "epoch": int(epoch) if isinstance(epoch, (int, np.integer)) else None,
        "licence": "official VideoPose3D weights: CC BY-NC 4.0 (non-commercial use only)",
    }, input_layout=layout)
    return {
        "out": str(out), "filter_widths": list(cfg.filter_widths), "receptive_field": cfg.receptive_field,
        "channels": cfg.channels, "causal": cfg.causal, "joints_in": cfg.num_joints_in,
        "joints_out": cfg.num_joints_out, "trajectory": traj is not None, "layout": layout, "fps": fps,
    }
