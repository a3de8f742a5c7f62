"""Offline takes: the warm-up poses take the body the stream settled on.

Live, a stream's first second of poses uses its body estimate as it forms (the median of
the valid poses so far), so limb lengths move until the body settles; nothing later is
known yet. Offline (``poselift video``) the whole take is known, and a BVH already has one
skeleton for all of it (``bvh_record.take_lengths``). :func:`settle_warmup` gives the npz
and the rendering the same: every warm-up pose of a stream epoch (the frames between a
reset and the body settling) is conformed again, from the model's own joints, to the
lengths that epoch settled on. Bones keep their directions, so the rotations and the root
do not change; an epoch that never settles is left as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from poselift.model.body import conform


def settle_warmup(arrays: dict[str, Any], epochs: Sequence[int]) -> int:
    """Conform the warm-up poses of each epoch in ``arrays`` (``video_arrays``' motion arrays:
    ``poses3d``, ``joints_raw``, ``bone_lengths``, ``settled``, ``motion_valid``) to the
    epoch's settled body, in place. ``epochs`` (T,): each frame's stream epoch. Returns the
    number of poses changed."""
    epochs = np.asarray(epochs)
    settled = np.asarray(arrays["settled"], dtype=bool)
    usable = np.asarray(arrays["motion_valid"], dtype=bool)
    changed = 0
    for epoch in np.unique(epochs):
        frames = np.flatnonzero(epochs == epoch)
        done = frames[settled[frames] & usable[frames]]
        if not len(done):
            continue
        warmup = frames[(frames < done[0]) & usable[frames]]
        if not len(warmup):
            continue
        lengths = np.asarray(arrays["bone_lengths"][done[0]], dtype=np.float64)
        raw = np.asarray(arrays["joints_raw"][warmup], dtype=np.float64)
        arrays["poses3d"][warmup] = conform(raw, lengths).astype(arrays["poses3d"].dtype)
        arrays["bone_lengths"][warmup] = lengths
        changed += len(warmup)
    return changed
