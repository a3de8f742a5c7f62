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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from .body import BONE_CHILDREN, GIRDLED_BONES, NUM_BONES

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
    """(..., 16) bone lengths -> (..., 19, 3) rest offsets of every rig joint from its parent.
    A NaN length makes its own joint's offset NaN."""
    lengths = np.asarray(lengths, dtype=np.float64)
    padded = np.concatenate([lengths, np.zeros(lengths.shape[:-1] + (1,))], axis=-1)
    return REST_DIRECTIONS * padded[..., RIG_BONE][..., None]


# rest_offsets of finite lengths as one matrix product: lengths (N, 16) @ _OFFSETS -> (N, 19 * 3).
_OFFSETS = rest_offsets(np.eye(NUM_BONES)).reshape(NUM_BONES, -1)


def rest_offsets_finite(lengths: np.ndarray) -> np.ndarray:
    """:func:`rest_offsets` of finite lengths (N, 16), in one numpy call (the motion stage's path)."""
    return (lengths @ _OFFSETS).reshape(len(lengths), NUM_RIG, 3)


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


# --- the solver ------------------------------------------------------------------------------
# At batch 1 the stage's cost is the number of numpy calls, not their size, and not all calls
# cost the same: an elementwise operation on two same-shaped 2-D rows, a ``take`` with a
# precomputed index array or a product with a small constant matrix costs about half a
# microsecond, while reductions over an axis, stacked 3x3 matrix products, broadcasts across
# dimensions and ``where=`` masks cost 2-5 us, and a Python scalar operand about doubles a
# call (numpy 1.x converts it every time: constant rows are used instead). So the solver works
# on flat rows: every array is (N, 3K) for K 3-vectors per pose, or (N, 9K) for K 3x3 matrices
# (row-major), and every step is a gather, an elementwise operation on same-shaped rows, or a
# product with a constant matrix (the sums over x, y, z, each repeated over the vector's three
# entries: _repeated_sums). It computes what the step-by-step version
# (tests/motion_reference.py) computed, to rounding.


def _flat(vectors: np.ndarray | list[int], size: int = 3) -> np.ndarray:
    """Indices, in flat rows (N, size * K), of the entries of the ``size``-vectors ``vectors``."""
    return (size * np.asarray(vectors, dtype=np.intp)[:, None] + np.arange(size)).reshape(-1)


def _repeated_sums(k: int, size: int = 3) -> np.ndarray:
    """(size * k, size * k): a flat row of k ``size``-vectors times this is each vector's sum of
    entries, repeated ``size`` times (a dot product, ready to meet the vectors it scales)."""
    return np.kron(np.eye(k), np.ones((size, size)))


# Every joint difference, as rows of a (23, 17) matrix of +-1: primaries, secondary lines, arm
# bones (for the elbow planes), swing bones.
_LINES = np.array([[0, 7], [1, 4], [1, 4], [14, 11], [7, 8]])  # spine, hip line x2, shoulder line, spine up
_ARM_BONES = np.array([[11, 12], [14, 15], [12, 13], [15, 16]])  # upper arms, then forearms
_PAIRS = np.concatenate([_PRIMARY, _LINES, _ARM_BONES, _SWING_BONE])
_P, _L, _A, _S = 0, len(_PRIMARY), len(_PRIMARY) + len(_LINES), len(_PRIMARY) + len(_LINES) + len(_ARM_BONES)
_DIFFERENCES = np.zeros((len(_PAIRS), 17))
_DIFFERENCES[np.arange(len(_PAIRS)), _PAIRS[:, 1]] += 1.0
_DIFFERENCES[np.arange(len(_PAIRS)), _PAIRS[:, 0]] -= 1.0


# ... and each of them as a bone of body.conform's consistent pose (whose girdles' bones lie on
# one line): the direction of difference r is the direction of bone _PAIR_BONE[r].
def _bone_along(row: np.ndarray) -> int:
    """The bone of GIRDLED_BONES that the joint difference ``row`` (17,) is a positive multiple of."""
    for b, bone in enumerate(GIRDLED_BONES):
        if np.allclose(row * np.abs(bone).max(), bone * np.abs(row).max()):
            return b
    raise ValueError(f"{row} is not along a bone")


_PAIR_BONE = np.array([_bone_along(row) for row in _DIFFERENCES])

# The solver's working row (N, 3 * 39) holds every 3-vector it reads or makes, in blocks: the
# frames' primaries e1, the secondary lines, the elbow normals, the arm bones, the swing bones,
# then the frames' e2 and e3. One gather of the unit bones fills the directions (the other
# blocks gather anything and are written in place), so the raw secondaries (lines, then
# normals) and the three axes of every frame need no concatenation.
_E1, _LINE, _NORMAL, _ARM, _SWUNG, _E2, _E3_BLOCK, _WORK = 0, 7, 12, 14, 18, 25, 32, 39
_WORK_PAIR = np.full(_WORK, -1)  # which of the 23 joint differences each vector is (-1: made here)
_WORK_PAIR[_E1:_LINE], _WORK_PAIR[_LINE:_NORMAL] = np.arange(_P, _L), np.arange(_L, _A)
_WORK_PAIR[_ARM:_SWUNG], _WORK_PAIR[_SWUNG:_E2] = np.arange(_A, _S), np.arange(_S, len(_PAIRS))
_WORK_GATHER = _flat(np.where(_WORK_PAIR >= 0, _PAIR_BONE[_WORK_PAIR], 0))  # unit bones (N, 48) -> the row
_WORK_DIFFERENCES = np.kron(np.where(_WORK_PAIR[:, None] >= 0, _DIFFERENCES[_WORK_PAIR], 0.0).T, np.eye(3))  # (51, 117)
_WORK_REPEAT = np.repeat(np.arange(_WORK), 3)
_EYE = np.eye(3)
_I1, _I2 = np.array([1, 2, 0]), np.array([2, 0, 1])


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.cross for (..., 3) (which costs 20 us on small arrays); ``take`` is four times
    cheaper than fancy indexing."""
    return a.take(_I1, axis=-1) * b.take(_I2, axis=-1) - a.take(_I2, axis=-1) * b.take(_I1, axis=-1)


def _cross_gathers(a: list[int], b: list[int]) -> np.ndarray:
    """Indices into flat rows of 3-vectors (N, K * 3) that gather, as (N, 2, 2, len(a) * 3),
    the factors of the cross products a[i] x b[i] (a, b: vector indices): see :func:`_crosses`."""
    a, b = np.asarray(a)[:, None], np.asarray(b)[:, None]
    return np.stack([[3 * a + _I1, 3 * a + _I2], [3 * b + _I2, 3 * b + _I1]]).reshape(-1)


def _crosses(rows: np.ndarray, gathers: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The cross products that ``gathers`` (:func:`_cross_gathers`) names, of the 3-vectors in
    flat ``rows`` (N, 3K), as flat rows (N, len(gathers) / 4): four numpy calls for all of them."""
    n = rows.shape[0]
    g = rows.take(gathers, axis=1).reshape(n, 2, 2, len(gathers) // 4)  # ... factor, term, entries
    p = g[:, 0] * g[:, 1]
    return np.subtract(p[:, 0], p[:, 1], out=out)


def _basis(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Orthonormal basis (..., 3, 3) with columns (primary, secondary off primary, their cross)."""
    e1 = _unit(primary)
    e2 = _unit(secondary - np.add.reduce(secondary * e1, axis=-1, keepdims=True) * e1)
    return np.stack([e1, e2, _cross(e1, e2)], axis=-1)


def _signed_axis(v: np.ndarray) -> tuple[int, float]:
    (axis,) = np.flatnonzero(v)
    return int(axis), float(v[axis])


# A twist frame is basis (e1 e2 e3) @ rest basis^T, and a rest basis is a signed permutation:
# column l of the frame is sign * e_m. With the axes of all 7 frames in the working row (its
# e1, e2 and e3 blocks), the frames (N, 7 * 9) are one gather of its entries times a sign.
_REST_BASES = _basis(_PRIMARY_REST, _SECONDARY_REST)  # (7, 3, 3)
_FRAME_SOURCE = np.empty((NUM_TWIST, 3, 3), dtype=np.intp)
_FRAME_SIGN = np.empty((NUM_TWIST, 3, 3))
for _k in range(NUM_TWIST):
    for _l in range(3):
        _m, _sign = _signed_axis(_REST_BASES[_k, _l])  # row l of the rest basis = column l of its transpose
        _FRAME_SOURCE[_k, :, _l] = 3 * ((_E1, _E2, _E3_BLOCK)[_m] + _k) + np.arange(3)
        _FRAME_SIGN[_k, :, _l] = _sign
_FRAME_SOURCE, _FRAME_SIGN = _FRAME_SOURCE.reshape(-1), _FRAME_SIGN.reshape(1, -1)
# A swing joint's rest direction seen from its parent's frame is one of the parent's axes
# e_m: the bone direction its parent's frame would give it.
_SWING_FROM = np.empty((NUM_TWIST, 3), dtype=np.intp)
for _i, (_k, _u) in enumerate(zip(_SWING_PARENT, _SWING_REST)):
    _m, _sign = _signed_axis(_REST_BASES[_k].T @ _u)  # the parent frame maps rest u to sign * e_m
    assert _sign == 1.0
    _SWING_FROM[_i] = 3 * ((_E1, _E2, _E3_BLOCK)[_m] + _k) + np.arange(3)
_SWING_FROM = _SWING_FROM.reshape(-1)
_AXES_GATHER = np.concatenate([_FRAME_SOURCE, _SWING_FROM])
_T3 = 3 * NUM_TWIST  # entries of one 3-vector per twist frame (or per swing: as many)
_CARRY_ROW = np.repeat(_CARRY, 3)[None]  # (1, 21)
_SUMS_TWIST = _repeated_sums(NUM_TWIST)
_NORMALS = _cross_gathers([_ARM, _ARM + 1], [_ARM + 2, _ARM + 3])  # upper arm x forearm
_E3 = _cross_gathers(list(range(_E1, _E1 + NUM_TWIST)), list(range(_E2, _E2 + NUM_TWIST)))  # e1 x e2
_SIGNED = np.nonzero(_ALIGN_SIGN)[0]
assert (_SIGNED == np.arange(_SIGNED[0], NUM_TWIST)).all()  # the hinge axes come last
_HINGE = slice(3 * int(_SIGNED[0]), _T3)  # their entries in a flat row of the 7 secondaries
_PERPENDICULAR = np.roll(_SWING_REST, 1, axis=-1)[:, :, None]  # (7, 3, 1): for half turns
# A swing's 3x3 entry [s, r, l] (flat: 9 s + 3 r + l) meets the entry [s, r] (_ROWS) or [s, l]
# (_COLS) of a row of 3-vectors, one per swing; _COLUMN_SUMS sums a flat 3x3 over r.
_SWING_S, _SWING_R, _SWING_L = np.indices((NUM_TWIST, 3, 3)).reshape(3, -1)
_ROWS, _COLS = 3 * _SWING_S + _SWING_R, 3 * _SWING_S + _SWING_L
_COLUMN_SUMS = np.zeros((9 * NUM_TWIST, _T3))
_COLUMN_SUMS[np.arange(9 * NUM_TWIST), _COLS] = 1.0
_SWING_REST_FLAT = _SWING_REST.reshape(1, -1)  # (1, 21)
_TWO_SWING_REST_COLS = 2.0 * _SWING_REST_FLAT[:, _COLS]  # (1, 63)
_SWING_PARENT_GATHER = _flat(_SWING_PARENT, 9)

# The world rotations of all 19 rig joints gathered from one flat row of 15 3x3 matrices
# (N, 135): the 7 twist frames, the 7 swing frames, the identity (the root's "parent").
_FRAME_SLOT = {int(j): i for i, j in enumerate(_FRAME_JOINTS)}
_FRAME_SLOT.update({int(j): NUM_TWIST + i for i, j in enumerate(_SWING_JOINTS)})
_FRAME_SLOT.update({leaf: _FRAME_SLOT[parent] for leaf, parent in _LEAVES.items()})
_IDENTITY_SLOT = 2 * NUM_TWIST
_WORLD_GATHER = np.array([_FRAME_SLOT[j] for j in range(NUM_RIG)])
_PARENT_GATHER = np.array([_IDENTITY_SLOT if p < 0 else _FRAME_SLOT[p] for p in RIG_PARENTS])
_WORLD_FLAT = _flat(_WORLD_GATHER, 9)
# local = parent^T @ world: local[j, a, b] = sum over m of parent[j, m, a] * world[j, m, b]; the
# products are gathered with m innermost, then summed in threes.
_JOINT, _ENTRY, _TERM = np.indices((NUM_RIG, 9, 3)).reshape(3, -1)
_LOCAL_LEFT = 9 * _PARENT_GATHER[_JOINT] + 3 * _TERM + _ENTRY // 3
_LOCAL_RIGHT = 9 * _WORLD_GATHER[_JOINT] + 3 * _TERM + _ENTRY % 3
_ONES = (None, None, None, np.ones(3), np.ones(4))  # _ONES[size]: a column that sums a size-vector
# Constants shaped like the rows they meet at batch 1: numpy 1.x converts a Python scalar
# operand on every call, which costs more than the operation itself on rows this small.
_WEAK_ROW, _OPPOSITE_ROW = np.full((1, _T3), 1e-9), np.full((1, _T3), -1 + 1e-9)
_ONES_ROW = np.ones((1, _T3))
_ALIGNED = {(k, size): (np.ones((1, k)), np.zeros((1, k)), np.repeat(np.arange(k), size))
            for k, size in ((len(_SIGNED), 3), (NUM_RIG, 4))}


def _align(vectors: np.ndarray, previous: np.ndarray, k: int, size: int) -> None:
    """Negate, in place, each of the k ``size``-vectors of the flat rows ``vectors``
    (N, k * size) (a view into wider rows is fine) whose dot product with its counterpart in
    ``previous`` (N, k * size) is negative. Multiplying by a copied sign is exact and, unlike
    ``np.negative(..., where=...)``, takes the ufuncs' fast path; adding zero makes a dot
    product of -0.0 count as not negative."""
    n = vectors.shape[0]
    ones, zeros, repeat = _ALIGNED[k, size]
    dot = ((vectors * previous).reshape(n * k, size) @ _ONES[size]).reshape(n, k)
    vectors *= np.copysign(ones, dot + zeros).take(repeat, axis=1)


def _public_quaternions(matrices: np.ndarray) -> np.ndarray:
    """Quaternions [x, y, z, w] of rotation matrices (M, 3, 3). assume_valid: every matrix the
    solver makes is a product of orthonormal frames (no re-orthogonalisation needed)."""
    return Rotation.from_matrix(matrices, assume_valid=True).as_quat()


def _backend_quaternions() -> Callable[..., np.ndarray] | None:
    """scipy's own compiled matrix -> quaternion routine, which ``Rotation.from_matrix`` calls
    after 10 us of array-API dispatch (most of the solver's scipy time at batch 1), when this
    scipy has it and it gives exactly what the public API gives; else None."""
    try:
        from scipy.spatial.transform import _rotation_cy  # private: checked below, else unused

        probe = Rotation.random(64, random_state=0).as_matrix()
        probe[0], probe[1] = np.eye(3), np.diag([1.0, -1.0, -1.0])
        fast = _rotation_cy.from_matrix
        if np.array_equal(np.asarray(fast(probe, assume_valid=True)), _public_quaternions(probe)):
            return lambda m: np.asarray(fast(m, assume_valid=True))
    except Exception:  # noqa: BLE001 - any failure means: use the public API
        pass
    return None


_quaternions = _backend_quaternions() or _public_quaternions


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
    if prev_twist is None:
        prev_twist = np.zeros((n, NUM_TWIST, 3))
    else:
        prev_twist = np.asarray(prev_twist, dtype=np.float64)
        prev_twist = np.where(np.isfinite(prev_twist).all(axis=-1, keepdims=True), prev_twist, 0.0)
    reference = np.zeros((n, NUM_RIG, 4))
    reference[..., 3] = 1.0
    if prev_local is not None:
        prev_local = np.asarray(prev_local, dtype=np.float64)
        reference = np.where(np.isfinite(prev_local).all(axis=-1, keepdims=True), prev_local, reference)
    return solve_rotations_from(j, prev_twist, reference)


def solve_rotations_from(joints: np.ndarray, prev_twist: np.ndarray, reference: np.ndarray,
                         bones: np.ndarray | None = None) -> RigPose:
    """:func:`solve_rotations` for callers that keep their state finite: ``joints`` (N, 17, 3)
    float64; ``prev_twist`` (N, 7, 3), zero rows where there is no previous frame;
    ``reference`` (N, 19, 4) the previous quaternions, ``[0, 0, 0, 1]`` where none. Nothing
    is checked (the motion stage's per-pose path). ``bones``: the unit bone directions
    (N, 16, 3) of the joints, rig frame, when the caller has them (:func:`body.rebuild`
    does): then every direction the solver needs is one of them (no bone may be of no
    length). All of them may also be given as flat rows ((N, 51), (N, 21), (N, 76), (N, 48))."""
    n = joints.shape[0]
    tiny = None
    if bones is None:
        d = joints.reshape(n, 3 * 17) @ _WORK_DIFFERENCES  # the joint differences, in the working row
        length = np.sqrt((d * d).reshape(n * _WORK, 3) @ _ONES[3]).reshape(n, _WORK)
        short = length < 1e-12
        length[short] = 1.0
        work = d / length.take(_WORK_REPEAT, axis=1)
        if np.count_nonzero(short[:, _SWUNG:_E2]):
            tiny = short[:, _SWUNG:_E2]  # (N, 7) swing bones of no length
    else:
        work = bones.reshape(n, 3 * NUM_BONES).take(_WORK_GATHER, axis=1)
    prev_twist = prev_twist.reshape(n, _T3)
    e1 = work[:, 3 * _E1:3 * _LINE]
    # Raw secondaries: the lines, then the elbow-plane normals (upper arm x forearm, whose size
    # sin(elbow angle) fades as the arm straightens).
    raw = work[:, 3 * _LINE:3 * _ARM]
    hinge = _crosses(work, _NORMALS, out=work[:, 3 * _NORMAL:3 * _ARM])
    # A hinge's axis has no sign: keep the elbow normal on the previous one's side. (The normal
    # is already off its primary, the upper arm, so the sign of its dot product with the
    # previous one is the sign of the two taken off the primary.)
    _align(hinge, prev_twist[:, _HINGE], len(_SIGNED), 3)
    secondary = raw + _CARRY_ROW * prev_twist
    off = secondary - ((secondary * e1) @ _SUMS_TWIST) * e1
    size = np.sqrt((off * off) @ _SUMS_TWIST)
    weak = size < _WEAK_ROW  # no information at all (first frame, straight arm)
    if np.count_nonzero(weak):
        off, size = _fallback_secondaries(e1, off, weak)
    twist = work[:, 3 * _E2:3 * _E3_BLOCK]
    np.divide(off, size, out=twist)
    _crosses(work, _E3, out=work[:, 3 * _E3_BLOCK:])
    gathered = work.take(_AXES_GATHER, axis=1)  # the frames' columns, then the swings' x

    frames = np.empty((n, 9 * (_IDENTITY_SLOT + 1)))  # 7 twist frames, 7 swing frames, identity
    frames[:, 9 * _IDENTITY_SLOT:] = _EYE.reshape(-1)
    np.multiply(gathered[:, :3 * _T3], _FRAME_SIGN, out=frames[:, :3 * _T3])
    _swing(frames, gathered[:, 3 * _T3:], work[:, 3 * _SWUNG:3 * _E2], tiny)

    world = frames.take(_WORLD_FLAT, axis=1)
    terms = frames.take(_LOCAL_LEFT, axis=1) * frames.take(_LOCAL_RIGHT, axis=1)
    local = terms.reshape(n * 9 * NUM_RIG, 3) @ _ONES[3]
    quat = _quaternions(local.reshape(n * NUM_RIG, 3, 3)).reshape(n, 4 * NUM_RIG)
    # Continuity: each quaternion in the hemisphere of the previous one (no sign flips).
    _align(quat, reference.reshape(n, 4 * NUM_RIG), NUM_RIG, 4)
    return RigPose(quat.reshape(n, NUM_RIG, 4), world.reshape(n, NUM_RIG, 3, 3),
                   twist.reshape(n, NUM_TWIST, 3))


def _fallback_secondaries(e1: np.ndarray, off: np.ndarray, weak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a secondary carries no information at all (``weak``), the rest secondary, or the
    world axis most across the bone if the bone lies along it: (off, size), flat (N, 21)."""
    n = e1.shape[0]
    e1, off = e1.reshape(n, NUM_TWIST, 3), off.reshape(n, NUM_TWIST, 3)
    weak = weak.reshape(n, NUM_TWIST, 3)[..., :1]
    along = np.abs(np.add.reduce(e1 * _SECONDARY_REST, axis=-1, keepdims=True)) > 0.9
    fallback = np.where(along, _EYE[np.argmin(np.abs(e1), axis=-1)], _SECONDARY_REST)
    off = np.where(weak, fallback - np.add.reduce(fallback * e1, axis=-1, keepdims=True) * e1, off)
    size = np.sqrt(np.add.reduce(off * off, axis=-1, keepdims=True))
    return off.reshape(n, _T3), np.repeat(size, 3, axis=-1).reshape(n, _T3)


def _swing(frames: np.ndarray, x: np.ndarray, y: np.ndarray, tiny: np.ndarray | None) -> None:
    """Fill the swing frames of ``frames`` (N, 135), whose twist frames are filled: ``x`` (N, 21)
    the bone directions their parents' frames give the swing bones, ``y`` (N, 21) the bones;
    ``tiny`` (N, 7) swing bones of no length (None: none).

    The shortest rotation R turning x = P u (P: the parent's frame, u: the bone's rest
    direction) onto y is R = I + 2 y x^T - s s^T / (1 + c), s = x + y, c = x.y (the product of
    two reflections), and the joint's world frame is R P = P + 2 y u^T - s (u + P^T y)^T / (1 + c),
    as x^T P = u^T."""
    n = frames.shape[0]
    c = (x * y) @ _SUMS_TWIST  # each swing's x.y, thrice
    opposite = c < _OPPOSITE_ROW
    half_turns = np.count_nonzero(opposite)
    if half_turns:
        c = np.where(opposite, 0.0, c)
    parent = frames.take(_SWING_PARENT_GATHER, axis=1)  # (N, 63)
    y_rows = y.take(_ROWS, axis=1)
    parent_y = (parent * y_rows) @ _COLUMN_SUMS  # P^T y, (N, 21)
    swung = frames[:, 9 * NUM_TWIST:9 * _IDENTITY_SLOT]
    np.subtract(parent + y_rows * _TWO_SWING_REST_COLS,
                ((x + y) / (_ONES_ROW + c)).take(_ROWS, axis=1) * (_SWING_REST_FLAT + parent_y).take(_COLS, axis=1),
                out=swung)
    if tiny is None and not half_turns:
        return
    parent, swung = parent.reshape(n, NUM_TWIST, 3, 3), frames.reshape(n, 2 * NUM_TWIST + 1, 3, 3)[:, NUM_TWIST:-1]
    if tiny is not None:  # a bone of no length: no swing (a zero direction has no rotation)
        swung[...] = np.where(tiny[..., None, None], parent, swung)
    if half_turns:  # half turn about an axis perpendicular to the rest direction
        perp = (parent @ _PERPENDICULAR)[..., 0]
        turned = (2 * perp[..., :, None] * perp[..., None, :] - _EYE) @ parent
        swung[...] = np.where(opposite.reshape(n, NUM_TWIST, 3)[..., :1, None], turned, swung)


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
