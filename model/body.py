"""A body per stream: bone lengths estimated online from each stream's own poses, and poses
made consistent with them.

Why: the lifter predicts every frame independently of any body model, so on real video its
limb lengths vary by about 15 % from frame to frame. Rigs, robots and BVH files need one
skeleton per person. :class:`BodyEstimator` estimates that skeleton online, for many streams
at once (arrays of shape ``(S, 16)``, one row per stream slot), and :func:`conform` rebuilds
each pose from the root outwards with the stream's lengths and the model's bone directions.

The estimator, per stream slot:

1. **Warm-up.** The first ``warmup`` valid poses (default 30, about one second at 30 fps)
   go into a buffer; until it is full the estimate is the per-bone median of what is there,
   and when it is full the stream is *settled* with the median of the buffer. The median
   ignores up to half of the warm-up poses being outliers. So the body settles within the
   first ``warmup`` valid frames and is usable (the running median) from the first one.
2. **Slow robust adaptation.** After settling, each valid pose moves every length by
   ``rate * clip(observed - length, ±clip * length)``: an exponential moving average
   (time constant ``1/rate`` frames: 500 by default, 17 s at 30 fps) whose step per frame is
   bounded, so a single wild pose moves a bone by at most ``rate * clip`` (0.01 % by
   default): a Huber-like update. Slow on purpose: a person's bones do not change, and on
   real video the lifter's lengths wander with depth and pose (a time constant of 100
   frames let the limbs drift 5–9 % over 8 s of dance; 500 keeps them within about 1 %).
3. **Symmetry.** With ``symmetric=True`` (default) left and right bones share one length
   (the mean of the two observations) — people are close enough to symmetric that this
   halves the noise at no cost.
4. **Validity.** A pose enters the estimate only when its stream's ``valid`` flag is set,
   every coordinate is finite, and every bone is between 1 cm and 1.5 m. A stream whose
   first poses are invalid simply waits (its estimate stays empty, ``conform`` leaves its
   poses as they are).
5. **Reporting.** :meth:`BodyEstimator.update` returns, per slot, ``settled_now`` (the first
   settling) and ``changed`` (some bone has moved more than ``change_threshold``, 2 %, since
   the lengths last reported), so a ``skeleton`` status message can be sent only when it
   says something new.

Bones are indexed by their child joint: bone ``b`` joins ``BONE_PARENTS[b]`` to
``BONE_CHILDREN[b]`` (H36M-17 order, ``b = child - 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .skeleton import H36M_JOINT_NAMES, H36M_PARENTS

NUM_JOINTS = 17
BONE_CHILDREN: np.ndarray = np.arange(1, NUM_JOINTS)
BONE_PARENTS: np.ndarray = np.array(H36M_PARENTS[1:])
NUM_BONES = len(BONE_CHILDREN)
BONE_NAMES: tuple[str, ...] = tuple(
    f"{H36M_JOINT_NAMES[p]}-{H36M_JOINT_NAMES[c]}" for p, c in zip(BONE_PARENTS, BONE_CHILDREN)
)

# Left/right bone pairs (bone indices = child joint - 1): hip, thigh, shin, shoulder, upper arm, forearm.
_J = {name: i for i, name in enumerate(H36M_JOINT_NAMES)}
SYMMETRIC_BONES: tuple[tuple[int, int], ...] = tuple(
    (_J[f"left_{j}"] - 1, _J[f"right_{j}"] - 1)
    for j in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")
)
# The limbs whose length variation is measured: thighs, shins, upper arms, forearms.
LIMB_BONES: tuple[int, ...] = tuple(
    _J[f"{side}_{j}"] - 1 for side in ("left", "right") for j in ("knee", "ankle", "elbow", "wrist")
)

# ANC[j, b] = 1 when bone b lies on the path from the root to joint j, so that the joints of a
# pose rebuilt from bone vectors v (N, 16, 3) are root + ANC @ v: one matrix product, no loop.
ANCESTRY = np.zeros((NUM_JOINTS, NUM_BONES))
for _j in range(1, NUM_JOINTS):
    _k = _j
    while _k > 0:
        ANCESTRY[_j, _k - 1] = 1.0
        _k = H36M_PARENTS[_k]

MIN_BONE_M = 0.01
MAX_BONE_M = 1.5
# Bone-shaped rows of constants for the per-pose path (a Python scalar operand costs numpy 1.x
# a conversion on every call; see BodyEstimator).
_MIN_ROW, _MAX_ROW = np.full((1, NUM_BONES), MIN_BONE_M), np.full((1, NUM_BONES), MAX_BONE_M)
_SHORT_ROW, _ONE_ROW = np.full((1, NUM_BONES), 1e-9), np.ones((1, NUM_BONES))

# Bone vectors as one matrix product: _BONE_DIFFERENCES @ joints (..., 17, 3) -> (..., 16, 3).
_BONE_DIFFERENCES = np.zeros((NUM_BONES, NUM_JOINTS))
_BONE_DIFFERENCES[np.arange(NUM_BONES), BONE_CHILDREN] = 1.0
_BONE_DIFFERENCES[np.arange(NUM_BONES), BONE_PARENTS] -= 1.0


def bone_vectors(poses: np.ndarray) -> np.ndarray:
    """(..., 17, 3) joints -> (..., 16, 3) vectors parent -> child."""
    poses = np.asarray(poses, dtype=np.float64)
    return poses[..., BONE_CHILDREN, :] - poses[..., BONE_PARENTS, :]


def bone_lengths(poses: np.ndarray) -> np.ndarray:
    """(..., 17, 3) joints -> (..., 16) bone lengths."""
    v = bone_vectors(poses)
    return np.sqrt(np.add.reduce(v * v, axis=-1))


def symmetrize(lengths: np.ndarray) -> np.ndarray:
    """Left and right bones take the mean of the pair (any leading shape)."""
    out = np.array(lengths, dtype=np.float64, copy=True)
    left, right = np.array(SYMMETRIC_BONES).T
    mean = 0.5 * (out[..., left] + out[..., right])
    out[..., left] = mean
    out[..., right] = mean
    return out


def usable_poses(poses: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(N,) bool: which poses may enter a body estimate (valid flag, finite, sane bones)."""
    poses = np.asarray(poses, dtype=np.float64)
    finite = np.isfinite(poses).all(axis=(-1, -2))
    if valid is not None:
        finite &= np.asarray(valid, dtype=bool)
    return usable_lengths(bone_lengths(np.where(finite[..., None, None], poses, 0.0)), finite)  # inf - inf would warn


def _running_median(buffer: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per-row median of the first ``count`` entries of ``buffer`` (K, W, B); the rest are NaN,
    which sorts last (np.nanmedian does the same, ten times slower)."""
    ordered = np.sort(buffer, axis=1)
    lo = ((count - 1) // 2)[:, None, None]
    hi = (count // 2)[:, None, None]
    b = np.broadcast_to(lo, (len(count), 1, buffer.shape[2]))
    return 0.5 * (np.take_along_axis(ordered, b, axis=1)[:, 0]
                  + np.take_along_axis(ordered, np.broadcast_to(hi, b.shape), axis=1)[:, 0])


@dataclass
class BodyUpdate:
    """What one :meth:`BodyEstimator.update` call changed, per stream slot (all arrays (S,))."""

    lengths: np.ndarray  # (S, 16) current estimate, NaN where a stream has no valid pose yet
    settled: np.ndarray  # the slot has finished its warm-up
    settled_now: np.ndarray  # ... and did so in this update
    changed: np.ndarray  # some bone moved more than change_threshold since last reported (incl. settled_now)
    used: np.ndarray  # the slot's pose entered the estimate in this update
    reported: np.ndarray | None = None  # (S, 16) the lengths last reported (after this update), NaN: none yet


class BodyEstimator:
    """Online bone lengths for ``num_streams`` stream slots at once (see the module docstring).

    Args:
        num_streams: slots; :meth:`grow` adds more.
        warmup: valid poses whose median settles the body (30 ≈ 1 s at 30 fps).
        rate: adaptation rate after settling (fraction of the clipped error per pose).
        clip: largest relative error one pose can push with (0.05 = 5 % of the length).
        symmetric: left and right bones share a length.
        change_threshold: relative change of any bone that counts as a notable change.
    """

    def __init__(self, num_streams: int = 1, *, warmup: int = 30, rate: float = 0.002, clip: float = 0.05,
                 symmetric: bool = True, change_threshold: float = 0.02) -> None:
        if warmup < 1:
            raise ValueError("warmup must be at least 1 pose")
        if not 0 <= rate <= 1 or clip <= 0:
            raise ValueError("rate must be in [0, 1] and clip positive")
        self.warmup = int(warmup)
        self.rate = float(rate)
        self.clip = float(clip)
        self.symmetric = bool(symmetric)
        self.change_threshold = float(change_threshold)
        # The same as arrays shaped like one stream's row: numpy 1.x converts a Python scalar
        # operand on every call, which costs more than the operation on a row this small.
        self._warmup_row = np.array([self.warmup])
        self._rate_row, self._clip_row, self._threshold_row = (np.full((1, NUM_BONES), x) for x in (rate, clip, change_threshold))
        self.num_streams = 0
        self.lengths = np.empty((0, NUM_BONES))
        self.reported = np.empty((0, NUM_BONES))
        self.count = np.empty(0, dtype=np.int64)
        self.buffer = np.empty((0, self.warmup, NUM_BONES))
        # Symmetry as one matrix product: each bone of a left/right pair takes their mean.
        self._symmetrize = symmetrize(np.eye(NUM_BONES))
        self.grow(num_streams)

    @property
    def settled(self) -> np.ndarray:
        return self.count >= self.warmup

    def grow(self, num_streams: int) -> None:
        """Make room for ``num_streams`` slots (new slots start empty)."""
        extra = num_streams - self.num_streams
        if extra <= 0:
            return
        self.lengths = np.concatenate([self.lengths, np.full((extra, NUM_BONES), np.nan)])
        self.reported = np.concatenate([self.reported, np.full((extra, NUM_BONES), np.nan)])
        self.count = np.concatenate([self.count, np.zeros(extra, dtype=np.int64)])
        self.buffer = np.concatenate([self.buffer, np.full((extra, self.warmup, NUM_BONES), np.nan)])
        self.num_streams = num_streams

    def reset(self, slots: int | np.ndarray | slice) -> None:
        """Forget the body of the given slots (a new person, or a restarted stream)."""
        self.lengths[slots] = np.nan
        self.reported[slots] = np.nan
        self.count[slots] = 0
        self.buffer[slots] = np.nan

    def update(self, poses: np.ndarray, valid: np.ndarray | None = None,
               slots: np.ndarray | None = None) -> BodyUpdate:
        """Feed one pose per listed slot: ``poses`` (N, 17, 3), ``valid`` (N,), ``slots`` (N,)
        distinct slot indices (default ``0..N-1``). Returns the state of those N slots."""
        poses = np.asarray(poses, dtype=np.float64)
        n = poses.shape[0]
        slots = np.arange(n) if slots is None else np.asarray(slots, dtype=np.int64)
        use = usable_poses(poses, valid)
        return self.update_lengths(bone_lengths(np.where(use[:, None, None], poses, 0.0)), use, slots)

    def update_lengths(self, observed: np.ndarray, use: np.ndarray, slots: np.ndarray) -> BodyUpdate:
        """:meth:`update` from the poses' bone lengths ``observed`` (N, 16) and which of them
        may enter the estimate, ``use`` (N,) (see :func:`usable_poses`; the rows that may not
        are ignored, whatever they hold). ``slots``: (N,) distinct slot indices."""
        obs = observed @ self._symmetrize if self.symmetric else observed
        before = self.count.take(slots)
        settled_before = before >= self._warmup_row
        adapting = use & settled_before
        if np.count_nonzero(adapting) == len(slots):
            # Every slot settled and every pose usable: the steady state, and the fast path.
            new = self._adapted(self.lengths.take(slots, axis=0), obs)
            self.lengths[slots] = new
            reported = self.reported.take(slots, axis=0)
            moved = self._moved(new, reported)
            if not np.count_nonzero(moved):  # nothing to report: the usual case
                no = np.zeros(len(slots), bool)
                return BodyUpdate(new, settled_before, no, no.copy(), use, reported)
            settled_after = settled_before
            changed = moved.any(axis=1)
        else:
            warming = use & ~settled_before
            if np.count_nonzero(warming):
                w_slots = slots[warming]
                self.buffer[w_slots, before[warming]] = obs[warming]
                self.count[w_slots] += 1
                self.lengths[w_slots] = _running_median(self.buffer[w_slots], self.count[w_slots])
            if np.count_nonzero(adapting):
                a_slots = slots[adapting]
                self.lengths[a_slots] = self._adapted(self.lengths[a_slots], obs[adapting])
            new = self.lengths.take(slots, axis=0)
            settled_after = self.count.take(slots) >= self._warmup_row
            # NaN (nothing reported yet) compares false; lengths are never 0 (bones >= 1 cm).
            changed = (settled_after & ~settled_before) | (
                settled_after & self._moved(new, self.reported.take(slots, axis=0)).any(axis=1))
        if np.count_nonzero(changed):
            self.reported[slots[changed]] = new[changed]
        return BodyUpdate(new, settled_after, settled_after & ~settled_before, changed, use,
                          self.reported.take(slots, axis=0))

    def _adapted(self, lengths: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """Settled ``lengths`` (K, 16) one step towards ``observed``: ``rate`` times the error,
        clipped to ``clip`` times the length."""
        limit = self._clip_row * lengths
        return lengths + self._rate_row * np.minimum(np.maximum(observed - lengths, -limit), limit)

    def _moved(self, lengths: np.ndarray, reported: np.ndarray) -> np.ndarray:
        """(K, 16) bool: the bones that moved more than ``change_threshold`` from ``reported``."""
        return np.abs(lengths / reported - _ONE_ROW) > self._threshold_row


# (left bone, right bone) pairs that leave the same joint: the pelvis is the midpoint of the
# hips and the thorax the midpoint of the shoulders in H36M-17 (and in our training data).
GIRDLES: tuple[tuple[int, int], ...] = ((_J["left_hip"] - 1, _J["right_hip"] - 1),
                                        (_J["left_shoulder"] - 1, _J["right_shoulder"] - 1))
# The bone vectors conform uses, as one matrix product with the joints: both bones of a girdle
# take half the line between their children (left: +, right: -), the other bones are as they are.
_GIRDLED = _BONE_DIFFERENCES.copy()
for _left, _right in GIRDLES:
    _line = 0.5 * (_BONE_DIFFERENCES[_left] - _BONE_DIFFERENCES[_right])
    _GIRDLED[_left], _GIRDLED[_right] = _line, -_line
GIRDLED_BONES = _GIRDLED  # (16, 17): the bones of a consistent pose as differences of its joints
# Rows 0-15: the bones as predicted (for the estimate); rows 16-31: the girdled ones (for conform).
_MEASURE = np.concatenate([_BONE_DIFFERENCES, _GIRDLED])


# measure and rebuild work on flat rows (N, 3K) of K 3-vectors, for few and cheap numpy calls at
# batch 1 (see stream/motion.py): the bone vectors are one product with a constant matrix.
_MEASURE_FLAT = np.kron(_MEASURE.T, np.eye(3))  # (51, 96): joints (N, 51) -> the 32 bone vectors (N, 96)
_ANCESTRY_FLAT = np.kron(ANCESTRY.T, np.eye(3))  # (48, 51): bone vectors (N, 48) -> joints (N, 51) from 0
_ROOT_EVERYWHERE = np.tile(np.arange(3), NUM_JOINTS)  # joints (N, 51) -> the root at every joint
_REPEAT3 = np.repeat(np.arange(NUM_BONES), 3)  # lengths (N, 16) -> (N, 48), each over its vector
_ONES3 = np.ones(3)


def measure(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the body estimate and :func:`rebuild` need of finite poses (N, 17, 3) or flat rows
    (N, 51): (the bone lengths as predicted (N, 16), the bone vectors that conform keeps the
    directions of (the girdles' bones on their shared line), flat (N, 48), and their lengths
    (N, 16))."""
    n = len(poses)
    v = poses.reshape(n, 3 * NUM_JOINTS) @ _MEASURE_FLAT
    length = np.sqrt((v * v).reshape(2 * NUM_BONES * n, 3) @ _ONES3).reshape(n, 2 * NUM_BONES)
    return length[:, :NUM_BONES], v[:, 3 * NUM_BONES:], length[:, NUM_BONES:]


def usable_lengths(lengths: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(N,) bool: which of the poses whose bone lengths are ``lengths`` (N, 16) may enter a body
    estimate, of the ``candidates`` (N,) (valid and finite; see :func:`usable_poses`)."""
    sane = (lengths >= _MIN_ROW) & (lengths <= _MAX_ROW)
    if np.count_nonzero(sane) == sane.size:
        return candidates
    return candidates & sane.all(axis=-1)


def rebuild(poses: np.ndarray, vectors: np.ndarray, norms: np.ndarray,
            lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`conform` of finite poses, flat rows (N, 51), with a body, from :func:`measure`'s
    ``vectors`` (N, 48) and ``norms`` (N, 16): the joints (N, 51) from the poses' roots
    outwards, every bone along its vector with its length in ``lengths`` (N, 16) (finite);
    bones of no length (no direction) stay as they are. Also returns the unit bone directions
    (N, 48), None when some bone has no length."""
    root = poses.take(_ROOT_EVERYWHERE, axis=1)
    short = norms < _SHORT_ROW
    if np.count_nonzero(short):
        scale = np.where(short, 1.0, lengths / np.where(short, 1.0, norms))
        return root + (vectors * scale.take(_REPEAT3, axis=1)) @ _ANCESTRY_FLAT, None
    unit = vectors / norms.take(_REPEAT3, axis=1)
    return root + (unit * lengths.take(_REPEAT3, axis=1)) @ _ANCESTRY_FLAT, unit


def conform(poses: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Poses consistent with a body: (N, 17, 3) joints, (N, 16) or (16,) lengths -> (N, 17, 3).

    Every bone keeps the direction the model predicted and takes the body's length, from the
    root outwards (the root joint stays where it is). One exception: the two hip bones (and the
    two shoulder bones) share one line, ``left - right``, because H36M defines the pelvis
    (thorax) as the midpoint of the hips (shoulders); the model predicts them collinear to
    within a few degrees, and a rig needs a rigid pelvis and shoulder girdle. Rows whose lengths
    are NaN (no body yet) and bones of zero length (no direction) are left as predicted.
    """
    poses = np.asarray(poses, dtype=np.float64)
    lengths = np.broadcast_to(np.asarray(lengths, dtype=np.float64), poses.shape[:-2] + (NUM_BONES,))
    vec = bone_vectors(poses)
    has_body = np.isfinite(lengths).all(axis=-1)[..., None]
    for left, right in GIRDLES:
        half = 0.5 * (vec[..., left, :] - vec[..., right, :])
        vec[..., left, :] = np.where(has_body, half, vec[..., left, :])
        vec[..., right, :] = np.where(has_body, -half, vec[..., right, :])
    norm = np.sqrt(np.add.reduce(vec * vec, axis=-1))
    keep = ~np.isfinite(lengths) | (norm < 1e-9)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(keep, 1.0, lengths / np.where(norm < 1e-9, 1.0, norm))
    rebuilt = np.matmul(ANCESTRY, vec * scale[..., None])
    # rows without a body are returned as they came: summing their bones back up along the
    # chains would round them differently, by a few 1e-17 m, on some CPUs
    return np.where(has_body[..., None], poses[..., :1, :] + rebuilt, poses)


# ---------------------------------------------------------------------------------------------
# Quality measures (for any pose sequence: raw lifter output, consistent poses, ground truth).

def limb_length_cv(poses: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean coefficient of variation (std / mean over frames) of the limb lengths: both
    thighs, shins, upper arms and forearms. ``poses``: (T, 17, 3); frames that are not
    ``valid`` (T,) or not finite are skipped."""
    lengths = bone_lengths(poses)[..., list(LIMB_BONES)]
    keep = np.isfinite(lengths).all(axis=-1)
    if valid is not None:
        keep &= np.asarray(valid, dtype=bool)
    lengths = lengths[keep]
    return float(np.mean(lengths.std(axis=0) / lengths.mean(axis=0)))


def joint_jitter(poses: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean norm of the second difference of every joint over time (m per frame²), divided by
    the mean limb length, so a value means the same for a child and an adult. ``poses``:
    (T, 17, 3); only triples of consecutive ``valid`` (T,) frames count. Real motion counts
    too: fast moves and low frame rates raise it without any noise."""
    poses = np.asarray(poses, dtype=np.float64)
    accel = np.linalg.norm(poses[2:] - 2 * poses[1:-1] + poses[:-2], axis=-1)
    limbs = bone_lengths(poses)[..., list(LIMB_BONES)]
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        accel = accel[valid[2:] & valid[1:-1] & valid[:-2]]
        limbs = limbs[valid]
    return float(np.nanmean(accel) / np.nanmean(limbs))
