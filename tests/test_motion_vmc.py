"""VMC sender: every bone of every pose arrives over OSC, in Unity's frame; safe defaults."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer
from scipy.spatial.transform import Rotation

from poselift.errors import UserError
from poselift.model.body import conform
from poselift.model.rig import camera_to_rig, rest_offsets, solve_rotations, solve_sequence
from poselift.stream.vmc import (VMC_BONES, VMCSender, humanoid_local_rotations, rig_to_unity_position,
                                 rig_to_unity_quaternion)
from tests.motion_helpers import demo_lengths, demo_poses


@pytest.fixture
def receiver():
    received: list[tuple[str, tuple]] = []
    lock = threading.Lock()

    def record(address: str, *args: object) -> None:
        with lock:
            received.append((address, args))

    dispatcher = Dispatcher()
    dispatcher.map("/VMC/Ext/*", record)
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], received, lock
    server.shutdown()
    server.server_close()


def test_every_bone_of_every_pose_arrives(receiver):
    port, received, lock = receiver
    lengths = demo_lengths()
    rig = camera_to_rig(conform(demo_poses()[:20], lengths))
    q = solve_sequence(rig)
    with VMCSender("127.0.0.1", port) as sender:
        for t in range(len(q)):
            sender.send(q[t], rest_offsets(lengths), t / 30)
            time.sleep(0.002)  # UDP on loopback: do not overrun the receiver's buffer
    deadline = time.time() + 5
    while time.time() < deadline:
        with lock:
            if sum(a == "/VMC/Ext/T" for a, _ in received) == len(q):
                break
        time.sleep(0.02)
    with lock:
        msgs = list(received)
    bones = [args for addr, args in msgs if addr == "/VMC/Ext/Bone/Pos"]
    assert len(bones) == len(q) * len(VMC_BONES)
    assert [b[0] for b in bones[:len(VMC_BONES)]] == list(VMC_BONES)
    assert sum(a == "/VMC/Ext/Root/Pos" for a, _ in msgs) == len(q)
    assert sum(a == "/VMC/Ext/OK" for a, _ in msgs) == len(q)
    times = [args[0] for addr, args in msgs if addr == "/VMC/Ext/T"]
    np.testing.assert_allclose(times, np.arange(len(q)) / 30, atol=1e-6)
    # the rotations that arrive are the humanoid local rotations, converted to Unity's frame
    expected = rig_to_unity_quaternion(humanoid_local_rotations(q))
    got = np.array([b[4:8] for b in bones]).reshape(len(q), len(VMC_BONES), 4)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    root = [args for addr, args in msgs if addr == "/VMC/Ext/Root/Pos"][0]
    assert root[0] == "root" and len(root) == 8


def test_unity_conversion_is_the_mirror():
    """[x, y, z, w] -> [x, -y, -z, w] is M R M with M = diag(-1, 1, 1), and positions negate x."""
    rotations = Rotation.random(50, random_state=1)
    mirror = np.diag([-1.0, 1.0, 1.0])
    converted = Rotation.from_quat(rig_to_unity_quaternion(rotations.as_quat())).as_matrix()
    np.testing.assert_allclose(converted, mirror @ rotations.as_matrix() @ mirror, atol=1e-12)
    p = np.random.default_rng(0).normal(size=(50, 3))
    np.testing.assert_allclose(rig_to_unity_position(p), p @ mirror)
    # so rotating a mirrored point by the converted rotation mirrors the rotated point
    np.testing.assert_allclose(Rotation.from_quat(rig_to_unity_quaternion(rotations.as_quat())).apply(p @ mirror),
                               rotations.apply(p) @ mirror, atol=1e-12)


def test_spine_composes_the_lower_back():
    rig = camera_to_rig(conform(demo_poses()[:5], demo_lengths()))
    rp = solve_rotations(rig)
    spine = humanoid_local_rotations(rp.local)[:, VMC_BONES.index("Spine")]
    expected = Rotation.from_matrix(np.swapaxes(rp.world[:, 0], -1, -2) @ rp.world[:, 7])
    assert (Rotation.from_quat(spine) * expected.inv()).magnitude().max() < 1e-9


@pytest.mark.parametrize("host, port, allow_remote, words", [
    ("127.0.0.1", 0, False, "port"),
    ("127.0.0.1", 70000, False, "port"),
    ("127.0.0.1", "39539", False, "port"),
    ("no-such-host.invalid", 39539, False, "cannot be resolved"),
    ("10.11.12.13", 39539, False, "not a loopback address"),
])
def test_bad_targets_fail_at_construction_with_one_line(host, port, allow_remote, words):
    with pytest.raises(UserError) as err:
        VMCSender(host, port, allow_remote=allow_remote)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_remote_needs_allow_remote():
    sender = VMCSender("10.11.12.13", 39539, allow_remote=True)
    assert sender.address == "10.11.12.13"
    sender.close()
    VMCSender("localhost").close()
