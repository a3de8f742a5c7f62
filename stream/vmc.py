"""Live motion over the VMC protocol (OSC over UDP) for Unity, Blender (VMC4B), Unreal
(VMC4UE), VSeeFace, Warudo and other VMC "Marionette" receivers.

Per pose the sender sends **one OSC bundle** with, in this order:

- ``/VMC/Ext/Root/Pos``  ``"root"`` px py pz qx qy qz qw — the avatar root: the stream's
  root position (or the origin when there is no trajectory), no rotation;
- ``/VMC/Ext/Bone/Pos``  name px py pz qx qy qz qw — for each of the 17 bones in
  :data:`VMC_BONES` (Unity ``HumanBodyBones`` names): the bone's **local** position (its
  rest offset from its humanoid parent; for ``Hips`` the hips' position under the root) and
  **local** rotation relative to a T-posed humanoid whose bones all have identity rest
  rotations (as a VRM "normalized" avatar has, which is what receivers retarget from);
- ``/VMC/Ext/OK`` 1 (avatar loaded);
- ``/VMC/Ext/T`` the pose's time in seconds.

**Frames.** VMC uses Unity's frame: left-handed, y up, the avatar facing +z, its left hand
at −x. The rig (:mod:`poselift.model.rig`) is right-handed, y up, facing +z, left hand at
+x. The two differ by the mirror ``M = diag(−1, 1, 1)`` (negate x), so a position becomes
``(−x, y, z)`` and a rotation ``R`` becomes ``M R M``; for the quaternion of a rotation
about axis ``a`` by ``θ`` that is a rotation about ``−M a`` by ``θ`` (an axis is a pseudo-vector:
it picks up det M = −1), i.e. ``[x, y, z, w] → [x, −y, −z, w]``. The test
``test_unity_conversion_is_the_mirror`` checks this against ``M R M`` numerically.

**Mapping** (humanoid bone ← rig joint): every bone is the rig joint of the same name;
``Spine`` composes the rig's zero-length ``LowerBack`` with ``Spine`` (a humanoid has no
branch there). Twist the 17 joints cannot observe (forearms, hands, feet, head yaw) is sent
as the parent's (identity local rotation), see :mod:`poselift.model.rig`.

**Safety.** Only loopback hosts unless ``allow_remote=True``; a host that does not resolve
or a bad port is a :class:`poselift.errors.UserError` at construction, with one line.
"""

from __future__ import annotations

import ipaddress
import socket

import numpy as np
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import UDPClient
from scipy.spatial.transform import Rotation

from poselift.errors import UserError
from poselift.model.rig import NUM_RIG, RIG_NAMES, RIG_ORDER, RIG_PARENTS

DEFAULT_PORT = 39539  # the VMC "Marionette" (receiver) port

VMC_BONES: tuple[str, ...] = (
    "Hips", "Spine", "Chest", "Neck", "Head",
    "LeftUpperLeg", "LeftLowerLeg", "LeftFoot", "RightUpperLeg", "RightLowerLeg", "RightFoot",
    "LeftUpperArm", "LeftLowerArm", "LeftHand", "RightUpperArm", "RightLowerArm", "RightHand",
)
_RIG = {name: i for i, name in enumerate(RIG_NAMES)}
VMC_RIG_JOINTS = np.array([_RIG[name] for name in VMC_BONES])
_LOWER_BACK, _SPINE = _RIG["LowerBack"], _RIG["Spine"]
_MIRROR_Q = np.array([1.0, -1.0, -1.0, 1.0])
_MIRROR_P = np.array([-1.0, 1.0, 1.0])


def rig_to_unity_position(p: np.ndarray) -> np.ndarray:
    """Right-handed rig (x to the person's left) -> Unity (left-handed, x to the person's right)."""
    return np.asarray(p, dtype=np.float64) * _MIRROR_P


def rig_to_unity_quaternion(q: np.ndarray) -> np.ndarray:
    """Rotation ``R`` as [x, y, z, w] -> ``M R M`` with ``M = diag(-1, 1, 1)``: [x, -y, -z, w]."""
    return np.asarray(q, dtype=np.float64) * _MIRROR_Q


def humanoid_local_rotations(local: np.ndarray) -> np.ndarray:
    """Rig local rotations (N, 19, 4) -> the 17 humanoid bones' (N, 17, 4), rig frame."""
    local = np.asarray(local, dtype=np.float64)
    out = local[:, VMC_RIG_JOINTS].copy()
    spine = (Rotation.from_quat(local[:, _LOWER_BACK]) * Rotation.from_quat(local[:, _SPINE])).as_quat()
    out[:, VMC_BONES.index("Spine")] = spine
    return out


def humanoid_rest_positions(offsets: np.ndarray) -> np.ndarray:
    """Rest offsets (19, 3) -> local rest positions (17, 3) of the humanoid bones from their
    humanoid parents, rig frame (Hips: zero)."""
    offsets = np.asarray(offsets, dtype=np.float64)
    rest = np.zeros((NUM_RIG, 3))
    for j in RIG_ORDER[1:]:
        rest[j] = rest[RIG_PARENTS[j]] + offsets[j]
    parent_of = {"Spine": "Hips", "Chest": "Spine", "Neck": "Chest", "Head": "Neck"}
    for side in ("Left", "Right"):
        parent_of.update({f"{side}UpperLeg": "Hips", f"{side}LowerLeg": f"{side}UpperLeg",
                          f"{side}Foot": f"{side}LowerLeg", f"{side}UpperArm": "Chest",
                          f"{side}LowerArm": f"{side}UpperArm", f"{side}Hand": f"{side}LowerArm"})
    out = np.zeros((len(VMC_BONES), 3))
    for k, name in enumerate(VMC_BONES[1:], start=1):
        out[k] = rest[_RIG[name]] - rest[_RIG[parent_of[name]]]
    return out


def build_bundle(local: np.ndarray, hips: np.ndarray, rest_positions: np.ndarray, t: float,
                 root: np.ndarray | None = None) -> OscBundle:
    """One pose as a VMC bundle. ``local`` (17, 4) humanoid local rotations and ``hips`` (3,)
    the hips position under the root, ``rest_positions`` (17, 3), ``root`` (3,): all rig frame;
    converted to Unity's frame here."""
    q = rig_to_unity_quaternion(local)
    p = rig_to_unity_position(rest_positions).copy()
    p[0] = rig_to_unity_position(hips)
    root_p = rig_to_unity_position(np.zeros(3) if root is None else root)
    bundle = OscBundleBuilder(IMMEDIATELY)
    bundle.add_content(_message("/VMC/Ext/Root/Pos", ["root", *root_p, 0.0, 0.0, 0.0, 1.0]))
    for k, name in enumerate(VMC_BONES):
        bundle.add_content(_message("/VMC/Ext/Bone/Pos", [name, *p[k], *q[k]]))
    bundle.add_content(_message("/VMC/Ext/OK", [1]))
    bundle.add_content(_message("/VMC/Ext/T", [float(t)]))
    return bundle.build()


def _message(address: str, args: list) -> object:
    msg = OscMessageBuilder(address=address)
    for a in args:
        if isinstance(a, str):
            msg.add_arg(a, "s")
        elif isinstance(a, (int, np.integer)) and not isinstance(a, bool):
            msg.add_arg(int(a), "i")
        else:
            msg.add_arg(float(a), "f")
    return msg.build()


def resolve_target(host: str, port: int, allow_remote: bool) -> str:
    """The IP address to send to; one-line :class:`UserError` for a bad port, an unknown host
    or a non-loopback host without ``allow_remote``."""
    if isinstance(port, bool) or not isinstance(port, (int, np.integer)) or not 1 <= int(port) <= 65535:
        raise UserError(f"VMC port must be an integer from 1 to 65535, got {port!r}")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise UserError(f"VMC host {host!r} cannot be resolved: {exc}") from None
    address = infos[0][4][0]
    if not allow_remote and not ipaddress.ip_address(address.split("%")[0]).is_loopback:
        raise UserError(f"refusing to send VMC to {host} ({address}): not a loopback address; "
                        "pass allow_remote=True (--allow-remote) to send to another machine")
    return address


class VMCSender:
    """Send poses to a VMC receiver (``host:port``, UDP).

    Args:
        host: receiver host; loopback only unless ``allow_remote``.
        port: receiver port (39539, the VMC default, unless the receiver says otherwise).
        allow_remote: allow a non-loopback host (poses travel unencrypted).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, allow_remote: bool = False) -> None:
        self.address = resolve_target(host, port, allow_remote)
        self.port = int(port)
        self._client = UDPClient(self.address, self.port, family=socket.AF_INET6 if ":" in self.address
                                 else socket.AF_INET)
        self.sent = 0
        self.dropped = 0

    def send(self, local: np.ndarray, offsets: np.ndarray, t: float, hips: np.ndarray | None = None,
             root: np.ndarray | None = None) -> None:
        """Send one pose: rig local rotations (19, 4), rest offsets (19, 3) (the stream's body,
        :func:`poselift.model.rig.rest_offsets`), time ``t`` in seconds, the hips' position
        under the root (rig frame, metres; default: standing height, thigh + shin above the
        root) and the root position (rig frame; default: the origin)."""
        offsets = np.asarray(offsets, dtype=np.float64)
        if hips is None:
            hips = np.array([0.0, -(offsets[_RIG["LeftLowerLeg"], 1] + offsets[_RIG["LeftFoot"], 1]), 0.0])
        rot = humanoid_local_rotations(np.asarray(local, dtype=np.float64)[None])[0]
        try:
            self._client.send(build_bundle(rot, hips, humanoid_rest_positions(offsets), t, root))
        except (BlockingIOError, ConnectionRefusedError):  # UDP: a full buffer or no receiver yet
            self.dropped += 1
            return
        self.sent += 1

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "VMCSender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
