"""The motion stage as it was before it was rewritten for batch 1 (main at 50bca66): the
estimator's update, conform, the rotation solver and MotionStage.process, copied from
model/body.py, model/rig.py and stream/motion.py with their docstrings cut. The tables they
read (bone and rig definitions) are unchanged and imported. tests/test_motion_equivalence.py
checks that the fast path gives what this gave."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from poselift.model.body import (ANCESTRY, GIRDLES, MAX_BONE_M, MIN_BONE_M, NUM_BONES, BodyUpdate, _running_median,
                                 bone_lengths, bone_vectors, symmetrize)
from poselift.model.rig import (_ALIGN_SIGN, _ARM_BONES, _CARRY, _FRAME_JOINTS, _LEAVES, _LINES, _PRIMARY,
                                _PRIMARY_REST, _SECONDARY_REST, _SWING_BONE, _SWING_JOINTS, _SWING_PARENT, _SWING_REST,
                                NUM_RIG, NUM_TWIST, RIG_PARENTS, RigPose, camera_to_rig, rest_offsets)
from poselift.stream.motion import MotionBatch

def usable_poses(poses: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    poses = np.asarray(poses, dtype=np.float64)
    finite = np.isfinite(poses).all(axis=(-1, -2))
    lengths = bone_lengths(np.where(finite[..., None, None], poses, 0.0))  # inf - inf would warn
    ok = finite & ((lengths >= MIN_BONE_M) & (lengths <= MAX_BONE_M)).all(axis=-1)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    return ok


class ReferenceBodyEstimator:

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
        self.num_streams = 0
        self.lengths = np.empty((0, NUM_BONES))
        self.reported = np.empty((0, NUM_BONES))
        self.count = np.empty(0, dtype=np.int64)
        self.buffer = np.empty((0, self.warmup, NUM_BONES))
        self.grow(num_streams)

    @property
    def settled(self) -> np.ndarray:
        return self.count >= self.warmup

    def grow(self, num_streams: int) -> None:
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
        poses = np.asarray(poses, dtype=np.float64)
        n = poses.shape[0]
        slots = np.arange(n) if slots is None else np.asarray(slots, dtype=np.int64)
        use = usable_poses(poses, valid)
        obs = bone_lengths(np.where(use[:, None, None], poses, 0.0))
        if self.symmetric:
            obs = symmetrize(obs)
        before = self.count[slots].copy()
        warming = use & (before < self.warmup)
        adapting = use & (before >= self.warmup)

        if warming.any():
            w_slots = slots[warming]
            self.buffer[w_slots, before[warming]] = obs[warming]
            self.count[w_slots] += 1
            self.lengths[w_slots] = _running_median(self.buffer[w_slots], self.count[w_slots])
        if adapting.any():
            a_slots = slots[adapting]
            cur = self.lengths[a_slots]
            limit = self.clip * cur
            self.lengths[a_slots] = cur + self.rate * np.minimum(np.maximum(obs[adapting] - cur, -limit), limit)

        settled_after = self.count[slots] >= self.warmup
        settled_now = settled_after & (before < self.warmup)
        # NaN (nothing reported yet) divides quietly; lengths are never 0 (bones >= 1 cm). No
        # errstate or nanmax here: at batch 1 their overhead was a tenth of this method.
        rel = np.abs(self.lengths[slots] / self.reported[slots] - 1.0)
        changed = settled_now | (settled_after & (np.where(np.isnan(rel), 0.0, rel).max(axis=1)
                                                  > self.change_threshold))
        if changed.any():
            self.reported[slots[changed]] = self.lengths[slots[changed]]
        return BodyUpdate(self.lengths[slots].copy(), settled_after, settled_now, changed, use)


def conform(poses: np.ndarray, lengths: np.ndarray) -> np.ndarray:
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
    return poses[..., :1, :] + rebuilt


def _norm(v: np.ndarray) -> np.ndarray:
    return np.sqrt(np.add.reduce(v * v, axis=-1))


def _unit(v: np.ndarray) -> np.ndarray:
    n = _norm(v)[..., None]
    return v / np.where(n < 1e-12, 1.0, n)


_I1, _I2 = [1, 2, 0], [2, 0, 1]


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.cross for (..., 3), without its axis juggling (a third of the time on small arrays)."""
    return a[..., _I1] * b[..., _I2] - a[..., _I2] * b[..., _I1]


def _basis(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Orthonormal basis (..., 3, 3) with columns (primary, secondary off primary, their cross)."""
    e1 = _unit(primary)
    e2 = _unit(secondary - np.add.reduce(secondary * e1, axis=-1, keepdims=True) * e1)
    return np.stack([e1, e2, _cross(e1, e2)], axis=-1)


_REST_BASES = _basis(_PRIMARY_REST, _SECONDARY_REST)  # (7, 3, 3)


_PAIRS = np.concatenate([_PRIMARY, _LINES, _ARM_BONES, _SWING_BONE])
_P, _L, _A, _S = 0, len(_PRIMARY), len(_PRIMARY) + len(_LINES), len(_PRIMARY) + len(_LINES) + len(_ARM_BONES)


def _differences(j: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = j[:, _PAIRS[:, 1]] - j[:, _PAIRS[:, 0]]
    length = _norm(d)
    length = np.where(length < 1e-12, 1.0, length)
    unit = d / length[..., None]
    normals = _cross(unit[:, _A:_A + 2], unit[:, _A + 2:_S])
    return d[:, _P:_L], np.concatenate([unit[:, _L:_A], normals], axis=1), d[:, _S:]


def _swing(parent: np.ndarray, rest: np.ndarray, direction: np.ndarray) -> np.ndarray:
    v = _unit(np.einsum("nkji,nkj->nki", parent, direction))
    u = np.broadcast_to(rest, v.shape)
    axis = _cross(u, v)
    c = np.add.reduce(u * v, axis=-1)
    k = np.zeros(v.shape + (3,))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
    k[..., 1, 0], k[..., 2, 0], k[..., 2, 1] = axis[..., 2], -axis[..., 1], axis[..., 0]
    opposite = c < -1 + 1e-9
    scale = 1.0 / np.where(opposite, 1.0, 1.0 + c)
    r = np.eye(3) + k + (k @ k) * scale[..., None, None]
    if opposite.any():  # half turn about an axis perpendicular to the rest direction
        perp = np.roll(np.broadcast_to(rest, v.shape), 1, axis=-1)
        r = np.where(opposite[..., None, None], 2 * perp[..., :, None] * perp[..., None, :] - np.eye(3), r)
    return r


def solve_rotations(joints: np.ndarray, prev_twist: np.ndarray | None = None,
                    prev_local: np.ndarray | None = None) -> RigPose:
    j = np.asarray(joints, dtype=np.float64)
    n = j.shape[0]
    primary, raw, bone = _differences(j)
    e1 = _unit(primary)
    raw = raw - np.add.reduce(raw * e1, axis=-1, keepdims=True) * e1
    if prev_twist is not None:
        prev = np.asarray(prev_twist, dtype=np.float64)
        have = np.isfinite(prev).all(axis=-1)
        prev = np.where(have[..., None], prev, 0.0)
        prev = prev - np.add.reduce(prev * e1, axis=-1, keepdims=True) * e1
        flip = _ALIGN_SIGN & (np.add.reduce(raw * prev, axis=-1) < 0)
        raw = np.where(flip[..., None], -raw, raw)
        secondary = raw + _CARRY[:, None] * prev
    else:
        secondary = raw
    weak = _norm(secondary) < 1e-9  # no information at all (first frame, straight arm): the rest
    if weak.any():                  # secondary, or the world axis most across the bone if it is not
        along = np.abs(np.add.reduce(e1 * _SECONDARY_REST, axis=-1)) > 0.9
        fallback = np.where(along[..., None], np.eye(3)[np.argmin(np.abs(e1), axis=-1)], _SECONDARY_REST)
        fallback = fallback - np.add.reduce(fallback * e1, axis=-1, keepdims=True) * e1
        secondary = np.where(weak[..., None], fallback, secondary)
    frames = _basis(primary, secondary) @ np.swapaxes(_REST_BASES, -1, -2)  # (N, 7, 3, 3)

    world = np.empty((n, NUM_RIG, 3, 3))
    world[:, _FRAME_JOINTS] = frames
    world[:, _SWING_JOINTS] = frames[:, _SWING_PARENT] @ _swing(frames[:, _SWING_PARENT], _SWING_REST, bone)
    for leaf, parent in _LEAVES.items():
        world[:, leaf] = world[:, parent]

    parents = np.array(RIG_PARENTS)
    local = np.empty_like(world)
    local[:, 0] = world[:, 0]
    local[:, 1:] = np.swapaxes(world[:, parents[1:]], -1, -2) @ world[:, 1:]
    # assume_valid: every matrix is a product of orthonormal frames (no re-orthogonalisation
    # needed), and skipping scipy's checks is a fifth of the stage's time at batch 1.
    quat = Rotation.from_matrix(local.reshape(-1, 3, 3), assume_valid=True).as_quat().reshape(n, NUM_RIG, 4)
    quat = continuous_quaternions(quat, prev_local)
    twist = _unit(secondary)
    return RigPose(quat, world, twist)


def continuous_quaternions(quat: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
    reference = np.zeros_like(quat)
    reference[..., 3] = 1.0
    if prev is not None:
        prev = np.asarray(prev, dtype=np.float64)
        reference = np.where(np.isfinite(prev).all(axis=-1, keepdims=True), prev, reference)
    return np.where((np.add.reduce(quat * reference, axis=-1) < 0)[..., None], -quat, quat)


def solve_sequence(joints: np.ndarray) -> np.ndarray:
    out = np.empty((len(joints), NUM_RIG, 4))
    twist = local = None
    for t, pose in enumerate(np.asarray(joints, dtype=np.float64)):
        rp = solve_rotations(pose[None], twist, local)
        twist, local = rp.twist, rp.local
        out[t] = local[0]
    return out


class ReferenceMotionStage:

    def __init__(self, **body_options: object) -> None:
        self.body = ReferenceBodyEstimator(0, **body_options)  # type: ignore[arg-type]
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._twist = np.empty((0, NUM_TWIST, 3))
        self._local = np.empty((0, NUM_RIG, 4))

    @property
    def streams(self) -> list[str]:
        return list(self._slots)

    def _slot(self, stream: str) -> int:
        slot = self._slots.get(stream)
        if slot is not None:
            return slot
        if self._free:
            slot = self._free.pop()
        else:
            slot = self.body.num_streams
            self.body.grow(slot + 1)
            self._twist = np.concatenate([self._twist, np.full((1, NUM_TWIST, 3), np.nan)])
            self._local = np.concatenate([self._local, np.full((1, NUM_RIG, 4), np.nan)])
        self._slots[stream] = slot
        return slot

    def reset(self, stream: str) -> None:
        slot = self._slots.pop(stream, None)
        if slot is None:
            return
        self.body.reset(slot)
        self._twist[slot] = np.nan
        self._local[slot] = np.nan
        self._free.append(slot)

    def process(self, streams: list[str], joints: np.ndarray, valid: np.ndarray | None = None,
                root: np.ndarray | None = None) -> MotionBatch:
        joints = np.asarray(joints, dtype=np.float64)
        n = len(streams)
        if joints.shape != (n, 17, 3):
            raise ValueError(f"expected joints of shape ({n}, 17, 3), got {joints.shape}")
        if len(set(streams)) != n:
            raise ValueError("a batch holds at most one pose per stream")
        valid = np.ones(n, bool) if valid is None else np.asarray(valid, dtype=bool)
        slots = np.fromiter((self._slot(s) for s in streams), dtype=np.int64, count=n)

        update = self.body.update(joints, valid, slots)
        # Once settled, poses take the lengths last reported (skeleton_changed), not the live
        # estimate: then the skeleton a consumer was told, the rotations and the joints agree
        # exactly (forward kinematics gives the joints back), until the next notable change.
        lengths = np.where(update.settled[:, None], self.body.reported[slots], update.lengths)
        # Conform every valid, finite pose of a stream that has a body, also one that was kept
        # out of the estimate (a bone out of range): its other bones are still worth keeping.
        has_body = valid & np.isfinite(joints).all(axis=(1, 2)) & np.isfinite(lengths).all(axis=1)
        consistent = np.where(has_body[:, None, None], conform(joints, lengths), joints)
        rig = camera_to_rig(consistent)
        # The Hips' position: the pose's own pelvis (the lifter's is near, not at, the origin)
        # plus the trajectory's root, so forward kinematics from it gives rig + root back.
        rig_root = rig[:, 0] + (0.0 if root is None else camera_to_rig(root))

        rotations = self._local[slots].copy()
        never = ~np.isfinite(rotations).all(axis=(1, 2))
        rotations[never] = np.array([0.0, 0.0, 0.0, 1.0])
        if has_body.any():
            use = slots[has_body]
            solved = solve_rotations(rig[has_body], self._twist[use], self._local[use])
            rotations[has_body] = solved.local
            self._twist[use] = solved.twist
            self._local[use] = solved.local
        offsets = rest_offsets(np.where(np.isfinite(lengths), lengths, 0.0))
        return MotionBatch(list(streams), consistent, rig, rig_root, rotations, lengths, offsets,
                           has_body, update.settled, update.changed)
