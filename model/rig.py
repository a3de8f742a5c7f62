"""A rig for the 17 H36M joints and the joint rotations that drive it.

**Frames.** The lifter's camera frame is x right, y down, z forward (right-handed). The rig
frame is the camera frame turned 180° about x: x right (the person's left when they face
the camera), **y up**, z towards the camera; still right-handed. :func:`camera_to_rig` is
the one place that converts. The rig's "up" is the camera's up: without a floor estimate a
tilted camera gives a tilted rig.

**Rig joints** (rig order; the first 17 are the H36M joints in H36M order, named after Unity's
``HumanBodyBones`` where one applies; two zero-length branch joints follow):

=====  =================  ===============  ========  ===================================
rig    name               H36M joint       parent    rest offset direction (T-pose)
=====  =================  ===============  ========  ===================================
0      Hips               pelvis           –         (root)
1      RightUpperLeg      right_hip        Hips      −x
2      RightLowerLeg      right_knee       1         −y
3      RightFoot          right_ankle      2         −y
4      LeftUpperLeg       left_hip         Hips      +x
5      LeftLowerLeg       left_knee        4         −y
6      LeftFoot           left_ankle       5         −y
7      Spine              spine            LowerBack +y
8      Chest              thorax           7         +y
9      Head               neck_nose        Neck      +y
10     HeadEnd            head (mid-eyes)  9         +y
11     LeftUpperArm       left_shoulder    Chest     +x
12     LeftLowerArm       left_elbow       11        +x
13     LeftHand           left_wrist       12        +x
14     RightUpperArm      right_shoulder   Chest     −x
15     RightLowerArm      right_elbow      14        −x
16     RightHand          right_wrist      15        −x
17     LowerBack          (at the pelvis)  Hips      zero offset
18     Neck               (at the thorax)  Chest     zero offset
=====  =================  ===============  ========  ===================================

Rest pose: a T-pose facing +z (towards the camera), arms along ±x, palms down, legs and
spine along ±y, metres; each offset is its direction times the stream's bone length
(:func:`rest_offsets`). In the rest pose every joint's frame is the identity, so a joint's
global rotation maps rest directions to the current ones and its local rotation is
``G_parent⁻¹ G_joint``.

Why the two branch joints: the pelvis has three children (two hips and the spine) and the
thorax three (two shoulders and the nose); one rotation per joint can only place all three
when their arrangement never changes, and a spine bends relative to the hips and a head
nods relative to the shoulders. The branches carry the spine and the neck with their own
rotation, exactly like CMU's ``LowerBack``/``LowerNeck`` joints, so forward kinematics gives
back every joint of a consistent pose (:func:`body.conform`) to rounding error.

**Rotations** (global frames, then local = parent⁻¹ · joint). Frames with a secondary
direction (a direction determines a rotation only up to a twist about it):

* Hips: hip line (left − right hip) is +x; the spine direction fixes the tilt.
* Upper legs: the thigh is −y; the hip line fixes the twist.
* Spine: spine → thorax is +y; the shoulder line fixes the twist.
* Chest: the shoulder line is +x; spine → thorax fixes the tilt.
* Upper arms: the upper arm is ±x; the elbow plane (upper arm × forearm, the hinge axis) is
  ∓y, so elbow flexion is a rotation about the lower-arm's own y axis.

All other joints take the shortest rotation (swing, no twist) from their parent's frame
that points their bone the right way: lower legs, lower arms, LowerBack, Neck and Head.
Twist that 17 joints cannot observe is **not invented**: forearm twist (no hand
orientation), head yaw about the nose → head axis, foot and hand orientation. Feet, hands
and HeadEnd carry their parent's rotation (identity local rotation).

**Continuity.** A secondary direction is undefined when it is parallel to the primary one:
a straight arm has no elbow plane, a leg raised sideways lies on the hip line. The
secondary used is ``raw + k · previous`` (projected off the primary): where the raw one is
strong it wins, where it fades the previous frame's twist carries over smoothly. The elbow
normal's sign is also aligned with the previous one (a hinge's axis has no sign), so a
straightening and re-bending arm never jumps 180°. Quaternions ``[x, y, z, w]`` are kept in
the hemisphere of the previous frame's (no sign flips); the first is taken with w ≥ 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from .body import BONE_CHILDREN, NUM_BONES

RIG_NAMES: tuple[str, ...] = (
    "Hips", "RightUpperLeg", "RightLowerLeg", "RightFoot", "LeftUpperLeg", "LeftLowerLeg", "LeftFoot",
    "Spine", "Chest", "Head", "HeadEnd", "LeftUpperArm", "LeftLowerArm", "LeftHand",
    "RightUpperArm", "RightLowerArm", "RightHand", "LowerBack", "Neck",
)
RIG_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 17, 7, 18, 9, 8, 11, 12, 8, 14, 15, 0, 8)
NUM_RIG = len(RIG_NAMES)
# Parents before children, for forward kinematics.
RIG_ORDER: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 17, 7, 8, 18, 9, 10, 11, 12, 13, 14, 15, 16)
BRANCH_JOINTS: tuple[int, ...] = (17, 18)

_X, _Y = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
REST_DIRECTIONS = np.array([
    [0, 0, 0], -_X, -_Y, -_Y, _X, -_Y, -_Y, _Y, _Y, _Y, _Y, _X, _X, _X, -_X, -_X, -_X, [0, 0, 0], [0, 0, 0],
], dtype=np.float64)
# Which body bone (index into the 16 bones of model.body) scales each rig joint's offset; -1: none.
_BONE_OF_JOINT = {int(c): b for b, c in enumerate(BONE_CHILDREN)}
RIG_BONE = np.array([_BONE_OF_JOINT.get(j, -1) if j < 17 else -1 for j in range(NUM_RIG)])

CAMERA_TO_RIG = np.diag([1.0, -1.0, -1.0])  # a proper rotation (180° about x): handedness kept
_CAMERA_TO_RIG_DIAGONAL = np.diag(CAMERA_TO_RIG).copy()


def camera_to_rig(points: np.ndarray) -> np.ndarray:
    """Camera frame (x right, y down, z forward) -> rig frame (x right, y up, z to camera)."""
    return np.asarray(points, dtype=np.float64) * _CAMERA_TO_RIG_DIAGONAL


def rest_offsets(lengths: np.ndarray) -> np.ndarray:
    """(..., 16) bone lengths -> (..., 19, 3) rest offsets of every rig joint from its parent."""
    lengths = np.asarray(lengths, dtype=np.float64)
    padded = np.concatenate([lengths, np.zeros(lengths.shape[:-1] + (1,))], axis=-1)
    return REST_DIRECTIONS * padded[..., RIG_BONE][..., None]


# --- frames with a secondary direction -------------------------------------------------------
# (rig joint, primary (a, b) meaning joints[b] - joints[a], primary rest direction,
#  secondary rest direction, twist-carry weight k). Secondary vectors are built in _differences.
_FRAME_JOINTS = np.array([0, 1, 4, 7, 8, 11, 14])
_PRIMARY = np.array([[1, 4], [1, 2], [4, 5], [7, 8], [14, 11], [11, 12], [14, 15]])  # (from, to); hip line = 4 - 1
_PRIMARY_REST = np.array([_X, -_Y, -_Y, _Y, _X, _X, -_X])
_SECONDARY_REST = np.array([_Y, _X, _X, _X, _Y, -_Y, _Y])
_CARRY = np.array([0.01, 0.05, 0.05, 0.01, 0.01, 0.15, 0.15])
_ALIGN_SIGN = np.array([False, False, False, False, False, True, True])  # hinge axes have no sign
NUM_TWIST = len(_FRAME_JOINTS)

# --- swings: (rig joint, frame it swings from (index into _FRAME_JOINTS), bone (from, to), rest dir)
_SWING_JOINTS = np.array([2, 5, 12, 15, 17, 18, 9])
_SWING_PARENT = np.array([1, 2, 5, 6, 0, 4, 4])
_SWING_BONE = np.array([[2, 3], [5, 6], [12, 13], [15, 16], [0, 7], [8, 9], [9, 10]])
_SWING_REST = np.array([-_Y, -_Y, _X, -_X, _Y, _Y, _Y])
# Leaves take their parent's frame.
_LEAVES = {3: 2, 6: 5, 13: 12, 16: 15, 10: 9}


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


# Every joint difference the solver needs, taken in one indexing operation (at batch 1 the
# cost is the number of numpy calls, not their size): primaries, secondary lines, arm bones
# (for the elbow planes), swing bones.
_LINES = np.array([[0, 7], [1, 4], [1, 4], [14, 11], [7, 8]])  # spine, hip line x2, shoulder line, spine up
_ARM_BONES = np.array([[11, 12], [14, 15], [12, 13], [15, 16]])  # upper arms, then forearms
_PAIRS = np.concatenate([_PRIMARY, _LINES, _ARM_BONES, _SWING_BONE])
_P, _L, _A, _S = 0, len(_PRIMARY), len(_PRIMARY) + len(_LINES), len(_PRIMARY) + len(_LINES) + len(_ARM_BONES)


def _differences(j: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(primaries (N, 7, 3), raw secondaries (N, 7, 3), swing bones (N, 7, 3)) of rig-frame
    joints (N, 17, 3). Lines are unit vectors; an elbow-plane normal (upper arm × forearm over
    both lengths) has the size sin(elbow angle), so it fades as the arm straightens."""
    d = j[:, _PAIRS[:, 1]] - j[:, _PAIRS[:, 0]]
    length = _norm(d)
    length = np.where(length < 1e-12, 1.0, length)
    unit = d / length[..., None]
    normals = _cross(unit[:, _A:_A + 2], unit[:, _A + 2:_S])
    return d[:, _P:_L], np.concatenate([unit[:, _L:_A], normals], axis=1), d[:, _S:]


def _swing(parent: np.ndarray, rest: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Shortest rotation (matrices, in the parent's frame) turning ``rest`` onto ``direction``
    expressed in the parent frame. parent: (N, K, 3, 3), rest: (K, 3), direction: (N, K, 3)."""
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


@dataclass
class RigPose:
    """Rotations of a batch of consistent poses, all in the rig frame."""

    local: np.ndarray  # (N, 19, 4) local rotations, quaternions [x, y, z, w], rig order
    world: np.ndarray  # (N, 19, 3, 3) global rotation matrices
    twist: np.ndarray  # (N, 7, 3) secondary directions used: the state for the next frame


def solve_rotations(joints: np.ndarray, prev_twist: np.ndarray | None = None,
                    prev_local: np.ndarray | None = None) -> RigPose:
    """Joint rotations of consistent rig-frame poses (N, 17, 3) (see the module docstring).

    ``prev_twist`` (N, 7, 3) and ``prev_local`` (N, 19, 4) are the previous frame's
    :attr:`RigPose.twist` and :attr:`RigPose.local` of the same streams (NaN rows: none).
    """
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
    """Flip each quaternion (N, J, 4) into the hemisphere of ``prev`` (same shape, NaN: none;
    then w ≥ 0)."""
    reference = np.zeros_like(quat)
    reference[..., 3] = 1.0
    if prev is not None:
        prev = np.asarray(prev, dtype=np.float64)
        reference = np.where(np.isfinite(prev).all(axis=-1, keepdims=True), prev, reference)
    return np.where((np.add.reduce(quat * reference, axis=-1) < 0)[..., None], -quat, quat)


def solve_sequence(joints: np.ndarray) -> np.ndarray:
    """Rotations (T, 19, 4) of one stream's consistent rig-frame poses (T, 17, 3), frame by frame."""
    out = np.empty((len(joints), NUM_RIG, 4))
    twist = local = None
    for t, pose in enumerate(np.asarray(joints, dtype=np.float64)):
        rp = solve_rotations(pose[None], twist, local)
        twist, local = rp.twist, rp.local
        out[t] = local[0]
    return out


def forward_kinematics(rotations: np.ndarray, root: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Joint positions (N, 19, 3) from local rotations (N, 19, 4) [x, y, z, w], root
    positions (N, 3) and rest offsets (19, 3) or (N, 19, 3) (see :func:`rest_offsets`).
    The first 17 rows are the H36M joints; the branch joints sit on their parents."""
    q = np.asarray(rotations, dtype=np.float64)
    n = q.shape[0]
    local = Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(n, NUM_RIG, 3, 3)
    offsets = np.broadcast_to(np.asarray(offsets, dtype=np.float64), (n, NUM_RIG, 3))
    world = np.empty_like(local)
    pos = np.empty((n, NUM_RIG, 3))
    for jnt in RIG_ORDER:
        p = RIG_PARENTS[jnt]
        if p < 0:
            world[:, jnt] = local[:, jnt]
            pos[:, jnt] = np.asarray(root, dtype=np.float64)
        else:
            world[:, jnt] = world[:, p] @ local[:, jnt]
            pos[:, jnt] = pos[:, p] + np.einsum("nij,nj->ni", world[:, p], offsets[:, jnt])
    return pos


assert NUM_BONES == 16 and len(RIG_PARENTS) == NUM_RIG == REST_DIRECTIONS.shape[0]
