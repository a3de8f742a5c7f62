"""The motion-capture training set: takes, subjects, the split, and body-proportion variants.

A take becomes (T, 17, 3) H36M joints in world metres (Y up) at the training frame
rate. Every CMU take in the shared data was retargeted to one body, so a model trained
on it alone learns one set of bone lengths; :func:`random_proportions` draws other
bodies (overall height, leg, arm, torso, shoulder and hip widths, head) and the motion
is re-run through forward kinematics on each, which is what lets the model generalise
to people of other proportions.

Split (by subject, documented in the README): validation = CMU subjects 09 (running),
12 (walking, tai chi) and 94 (Indian dance); everything else trains.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .bvh import BVHMotion, find_bvh_files, load_h36m_positions, read_bvh

VALIDATION_SUBJECTS: tuple[str, ...] = ("09", "12", "94")


@dataclass
class Take:
    """One motion at the training rate: ``positions`` (T, 17, 3) world metres, Y up."""

    name: str
    subject: str
    positions: np.ndarray
    variant: int = 0  # 0 = the recorded body, >0 = a drawn body of other proportions

    @property
    def num_frames(self) -> int:
        return self.positions.shape[0]


def subject_of(path: str | os.PathLike) -> str:
    """CMU subject id of a shared-data file: ``subject_07/07_01`` -> 07, salsa take
    NN -> 60 (NN <= 15) or 61 (its partner, NN + 15), ``indian/`` -> 94; otherwise the
    parent folder's name."""
    path = Path(path)
    folder = path.parent.name
    stem = path.name.split(".")[0]
    if folder == "salsa":
        return "60" if int(stem) <= 15 else "61"
    if folder == "indian":
        return "94"
    m = re.match(r"subject_(\d+)$", folder)
    if m:
        return m.group(1)
    m = re.match(r"(\d+)_\d+$", stem)
    return m.group(1) if m else folder


# Groups of CMU joints whose offsets (the bone leading *to* the joint) scale together.
_PROPORTION_GROUPS: dict[str, tuple[str, ...]] = {
    "legs": ("rShin", "lShin", "rFoot", "lFoot"),
    "upper_arms": ("rForeArm", "lForeArm"),
    "forearms": ("rHand", "lHand"),
    "torso": ("abdomen", "chest", "neck"),
    "shoulders": ("rCollar", "lCollar", "rShldr", "lShldr"),
    "hips": ("rButtock", "lButtock", "rThigh", "lThigh"),
    "head": ("head", "leftEye", "rightEye"),
}
_PROPORTION_RANGES: dict[str, tuple[float, float]] = {
    "legs": (0.88, 1.12),
    "upper_arms": (0.88, 1.12),
    "forearms": (0.88, 1.12),
    "torso": (0.88, 1.14),
    "shoulders": (0.82, 1.2),
    "hips": (0.82, 1.25),
    "head": (0.9, 1.1),
}


def random_proportions(bvh: BVHMotion, rng: np.random.Generator,
                       height: tuple[float, float] = (0.84, 1.14)) -> tuple[np.ndarray, float]:
    """Per-joint offset factors for a random body, and the root translation factor.

    Joints not named in a group (fingers, toes, other skeletons' joints) take only the
    overall height factor, so this works for any BVH skeleton.
    """
    overall = rng.uniform(*height)
    scale = np.full(len(bvh.joints), overall)
    names = bvh.joint_names
    legs = 1.0
    for group, joints in _PROPORTION_GROUPS.items():
        factor = rng.uniform(*_PROPORTION_RANGES[group])
        if group == "legs":
            legs = factor
        for name in joints:
            if name in names:
                scale[names.index(name)] *= factor
    return scale, overall * legs


def load_takes(
    root: str | os.PathLike,
    fps: float = 30.0,
    variants: int = 0,
    seed: int = 0,
    subjects: set[str] | None = None,
    exclude_subjects: set[str] | None = None,
    progress: bool = True,
) -> list[Take]:
    """Load every BVH take under ``root`` as H36M joints at ``fps``.

    ``variants`` extra bodies are drawn per take (seeded): each re-runs the motion with
    :func:`random_proportions` and a different sub-frame phase, so it also sees other
    frames of the 120 fps source.
    """
    files = find_bvh_files(root)
    if not files:
        raise FileNotFoundError(f"{root}: no .bvh or .bvh.gz files found")
    takes: list[Take] = []
    rng = np.random.default_rng(seed)
    for path in tqdm(files, desc="loading mocap", unit="take", disable=not progress):
        subject = subject_of(path)
        if subjects is not None and subject not in subjects:
            continue
        if exclude_subjects is not None and subject in exclude_subjects:
            continue
        bvh = read_bvh(path)
        name = path.name.split(".")[0]
        name = f"{path.parent.name}/{name}"
        takes.append(Take(name, subject, load_h36m_positions(bvh, fps).astype(np.float32)))
        ratio = max(1, int(round(bvh.fps / fps)))
        for v in range(1, variants + 1):
            scale, translation = random_proportions(bvh, rng)
            positions = load_h36m_positions(bvh, fps, offset_scale=scale, phase=float(v % ratio),
                                            root_translation_scale=translation)
            takes.append(Take(name, subject, positions.astype(np.float32), variant=v))
    return takes


def split_takes(takes: list[Take], validation_subjects: tuple[str, ...] = VALIDATION_SUBJECTS) -> tuple[list[Take], list[Take]]:
    """(train, validation) by subject; validation keeps only the recorded bodies."""
    train = [t for t in takes if t.subject not in validation_subjects]
    val = [t for t in takes if t.subject in validation_subjects and t.variant == 0]
    return train, val
