"""The motion stage wired into the loop (issue 13): bodies through the engine (invalid first
poses, resets, ends), the video npz and BVH, VMC, bad --bvh/--vmc arguments."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from poselift.errors import UserError
from poselift.model.body import bone_lengths
from poselift.model.rig import RIG_NAMES, camera_to_rig
from poselift.stream.apps import _video_motion_outputs, load_model, run_demo, run_serve, run_video, video_arrays
from poselift.stream.engine import LiftEngine, PoseOut
from poselift.stream.loop import PoseLoop, collect
from poselift.stream.motion_wire import MotionWire
from poselift.stream.outputs import parse_vmc_target
from poselift.stream.sources import DEMO_CLIP, load_clip


@pytest.fixture(scope="module")
def causal():
    return load_model(None, "causal")


@pytest.fixture(scope="module")
def clip():
    return load_clip(DEMO_CLIP)


def _loop(ckpt, streams: int = 1):
    engine = LiftEngine(ckpt.model, trajectory_model=ckpt.trajectory_model, max_streams=streams)
    poses: list[PoseOut] = []
    wire = MotionWire(engine, warmup=10)
    return PoseLoop(engine, collect(poses), stages=[wire]), poses, wire


def test_a_stream_whose_first_poses_are_invalid_waits_for_valid_ones(causal, clip):
    loop, poses, wire = _loop(causal)
    frames = list(clip.frames("cam0", limit=40))
    for f in frames[:5] + frames[9:15]:  # too few joints: nothing liftable at first, later held frames
        f.kp[3:] = np.nan
    loop.feed(frames)
    motion = [p.extras["motion"] for p in poses]
    valid = np.array([p.valid for p in poses])
    assert not valid[:5].any() and valid[5:9].all() and not valid[9:15].any() and valid[15:].all()
    assert np.abs(poses[12].extras["joints_raw"]).max() > 0.1  # held poses: real joints, but valid false
    assert not any(m.valid or m.settled for m in motion[:5])  # no body from invalid poses
    settled = [i for i, m in enumerate(motion) if m.settled]
    assert settled[0] == 15 + 6 - 1  # the 10th valid pose settles it: no invalid one ever counted
    assert [i for i, m in enumerate(motion) if m.skeleton_changed][0] == settled[0]
    assert motion[settled[0]].skeleton_reason == "settled"
    # published joints are the consistent ones; the raw output is kept
    lengths = bone_lengths(np.stack([p.joints for p in poses[settled[0]:]]))
    assert np.ptp(lengths, axis=0).max() < 1e-5
    assert np.ptp(bone_lengths(np.stack([p.extras["joints_raw"] for p in poses[settled[0]:]])), axis=0).max() > 1e-3


def test_the_body_starts_over_with_the_stream_and_is_freed_at_its_end(causal, clip):
    loop, poses, wire = _loop(causal, streams=2)
    frames = list(clip.frames("cam0", limit=30))
    loop.feed(frames[:15])
    assert poses[-1].extras["motion"].settled
    loop.feed(frames[:3])  # frame numbers go back: a sender restart resets the stream
    assert poses[-3].epoch != poses[-4].epoch
    assert not poses[-1].extras["motion"].settled  # the body is estimated anew
    loop.feed(frames[3:15])
    assert poses[-1].extras["motion"].skeleton_reason is None and poses[-1].extras["motion"].settled
    assert sum(p.extras["motion"].skeleton_reason == "settled" for p in poses) == 2
    loop.feed(list(clip.frames("cam1", limit=3)))
    assert sorted(wire.stage.streams) == ["cam0", "cam1"]
    from poselift.stream.protocol import EndOfStream

    loop.submit(EndOfStream("cam0"))
    loop.step()
    loop.feed(list(clip.frames("cam1", limit=5))[3:])
    assert wire.stage.streams == ["cam1"]  # the ended stream's slot was freed


def test_raw_skips_the_stage(causal, clip):
    frames = list(clip.frames("video", limit=12))
    raw = video_arrays(frames, LiftEngine(causal.model, max_streams=1), raw=True)
    assert "rotations" not in raw and "joints_raw" not in raw
    default = video_arrays(frames, LiftEngine(causal.model, max_streams=1))
    np.testing.assert_array_equal(raw["poses3d"], default["joints_raw"])  # the model's own joints
    assert not np.allclose(raw["poses3d"], default["poses3d"])


@pytest.fixture(scope="module")
def take(causal, clip):
    engine = LiftEngine(causal.model, trajectory_model=causal.trajectory_model, max_streams=1)
    return video_arrays(list(clip.frames("video", limit=90)), engine)


def test_video_npz_has_the_motion_arrays(take):
    t = len(take["poses3d"])
    assert take["rotations"].shape == (t, 19, 4) and take["root"].shape == (t, 3)
    assert take["bone_lengths"].shape == (t, 16) and take["joints_raw"].shape == (t, 17, 3)
    assert not np.allclose(take["joints_raw"], take["poses3d"])
    np.testing.assert_allclose(np.linalg.norm(take["rotations"], axis=-1), 1.0, atol=1e-9)


def test_video_bvh_round_trip_with_bvhio(tmp_path, take):
    bvhio = pytest.importorskip("bvhio")
    path = tmp_path / "take.bvh"
    _video_motion_outputs(take, 30.0, path, None)
    hierarchy = bvhio.readAsHierarchy(str(path))
    layout = [j for j, _, _ in hierarchy.layout()]
    names = [j.Name for j in layout]
    index = [names.index(n) for n in RIG_NAMES[:17]]
    assert bvhio.readAsBvh(str(path)).FrameTime == pytest.approx(1 / 30)
    assert len(bvhio.readAsBvh(str(path)).Root.Keyframes) == len(take["poses3d"])
    absolute = take["poses3d"].astype(np.float64)
    if "trajectory" in take:
        absolute = absolute + take["trajectory"][:, None]
    expected = camera_to_rig(absolute)
    settled = np.flatnonzero(take["settled"] & take["motion_valid"])
    assert len(settled) > 30
    worst = 0.0
    for t in settled:
        hierarchy.loadPose(int(t))
        pos = np.array([list(j.PositionWorld) for j in layout]) / 100.0
        worst = max(worst, np.abs(pos[index] - expected[t]).max())
    assert worst < 1e-3  # 1 mm: the file's skeleton is the body the settled poses use


def test_offline_warmup_poses_take_the_settled_body(take, tmp_path):
    """Offline, the warm-up poses use the body the stream settled on: the limb lengths hold
    from the first frame, each bone keeps the model's direction, the settled poses are the
    live ones, and the BVH (one skeleton) gives the warm-up poses back too."""
    from poselift.model.body import bone_lengths, bone_vectors
    from poselift.stream.settled_take import settle_warmup

    usable = take["motion_valid"]
    first = int(np.flatnonzero(take["settled"] & usable)[0])
    assert first > 5  # the clip has a warm-up to settle
    warm = usable & (np.arange(len(usable)) < first)
    lengths = bone_lengths(take["poses3d"][warm].astype(np.float64))
    np.testing.assert_allclose(lengths, np.broadcast_to(take["bone_lengths"][first], lengths.shape), atol=1e-5)
    raw = bone_vectors(take["joints_raw"][warm].astype(np.float64))
    fit = bone_vectors(take["poses3d"][warm].astype(np.float64))
    cos = (raw * fit).sum(-1) / np.linalg.norm(raw, axis=-1) / np.linalg.norm(fit, axis=-1)
    assert cos[np.isfinite(cos)].min() > 0.99  # directions kept (hip/shoulder lines: a shared one)
    again = {k: np.array(v) for k, v in take.items()}
    live = again["poses3d"].copy()
    assert settle_warmup(again, np.zeros(len(live), int)) == warm.sum()  # idempotent on the stored take...
    np.testing.assert_allclose(again["poses3d"], live, atol=1e-6)
    assert settle_warmup(again, np.arange(len(live))) == 0  # ...and an epoch that never settles is left alone
    bvhio = pytest.importorskip("bvhio")
    path = tmp_path / "take.bvh"
    _video_motion_outputs(take, 30.0, path, None)
    hierarchy = bvhio.readAsHierarchy(str(path))
    layout = [j for j, _, _ in hierarchy.layout()]
    index = [[j.Name for j in layout].index(n) for n in RIG_NAMES[:17]]
    expected = camera_to_rig(take["poses3d"].astype(np.float64) + take["trajectory"][:, None])
    for t in np.flatnonzero(warm):
        hierarchy.loadPose(int(t))
        pos = np.array([list(j.PositionWorld) for j in layout]) / 100.0
        assert np.abs(pos[index] - expected[t]).max() < 1e-3


def test_vmc_sends_every_bone_of_every_pose(free_udp_port):
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer

    bones: list[str] = []
    times: list[float] = []
    dispatcher = Dispatcher()
    dispatcher.map("/VMC/Ext/Bone/Pos", lambda _addr, name, *values: bones.append(name))
    dispatcher.map("/VMC/Ext/T", lambda _addr, t: times.append(t))
    server = ThreadingOSCUDPServer(("127.0.0.1", free_udp_port), dispatcher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run_demo(out=None, publish=None, frames=40, vmc=f"127.0.0.1:{free_udp_port}")
        for _ in range(100):
            if len(times) >= 40:
                break
            threading.Event().wait(0.05)
    finally:
        server.shutdown()
        server.server_close()
    assert result["published"] == 40 and len(times) == 40
    from poselift.stream.vmc import VMC_BONES

    assert len(bones) == 17 * 40 and all(bones.count(b) == 40 for b in VMC_BONES)


@pytest.fixture
def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("target, words", [
    ("no-such-host.invalid:39539", "cannot be resolved"),
    ("127.0.0.1:70000", "port"),
    ("127.0.0.1:abc", "port"),
    ("192.0.2.1:39539", "loopback"),
])
def test_bad_vmc_targets_fail_at_start_with_one_line(target, words):
    with pytest.raises(UserError) as exc:
        run_serve(vmc=target, input="tcp://127.0.0.1:*", publish="tcp://127.0.0.1:*")
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_a_writable_bvh_path_is_checked_without_leaving_a_file(tmp_path):
    from poselift.stream.outputs import check_writable

    check_writable(tmp_path / "new.bvh")
    assert not (tmp_path / "new.bvh").exists()


def test_vmc_target_parsing():
    assert parse_vmc_target("localhost") == ("localhost", 39539)
    assert parse_vmc_target("[::1]:9000") == ("::1", 9000)
    assert parse_vmc_target("127.0.0.1:9000") == ("127.0.0.1", 9000)


def test_unwritable_bvh_fails_at_start(tmp_path):
    with pytest.raises(UserError) as exc:
        run_video(tmp_path / "missing.mp4", out=tmp_path / "o.npz", bvh=tmp_path / "no" / "such" / "dir.bvh")
    assert "--bvh" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(UserError, match="--raw"):
        run_video(tmp_path / "missing.mp4", out=tmp_path / "o.npz", bvh=tmp_path / "x.bvh", raw=True)


def test_the_motion_flags_parse():
    import argparse

    from poselift.stream.commands import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    a = parser.parse_args(["video", "clip.mp4", "--out", "x.npz", "--bvh", "x.bvh", "--vmc", "--fov", "70"])
    assert (a.file, a.bvh, a.vmc, a.fov, a.raw) == ("clip.mp4", "x.bvh", "127.0.0.1:39539", 70.0, False)
    for cmd in (["serve"], ["webcam"], ["demo"]):
        a = parser.parse_args(cmd + ["--raw", "--vmc", "localhost:9000"])
        assert a.raw and a.vmc == "localhost:9000"
    a = parser.parse_args(["listen", "--bvh", "o.bvh", "--stream", "cam0"])
    assert a.bvh == "o.bvh" and a.stream == ["cam0"]


def test_a_late_consumer_gets_the_current_skeleton(causal, clip):
    import time

    from poselift.stream.client import KeypointSender, PoseReceiver
    from poselift.stream.service import PoseServer
    from tests.stream_helpers import ServerThread

    engine = LiftEngine(causal.model, trajectory_model=causal.trajectory_model, max_streams=2,
                        trajectory_meta=causal.meta.get("trajectory"))
    server = PoseServer(engine, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", status_interval_s=0.2,
                        stages=[MotionWire(engine, warmup=5)])
    thread = ServerThread(server)
    tx = KeypointSender(server.input_endpoint)
    rx = None
    try:
        time.sleep(0.5)  # PUB/SUB: let the sender's connection settle
        for f in clip.frames("cam0", limit=20):
            tx.send("cam0", f.frame, f.kp, width=f.width, height=f.height, t=f.t)
        time.sleep(1.0)
        rx = PoseReceiver(server.publish_endpoint, status=True)  # joins after the body settled
        got = None
        t_end = time.monotonic() + 10
        while got is None and time.monotonic() < t_end:
            m = rx.recv(200)
            if m is not None and m.get("event") == "skeleton" and m["stream"] == "cam0":
                got = m
    finally:
        tx.close()
        if rx is not None:
            rx.close()
        thread.stop()
    assert got is not None and got["reason"] == "current" and len(got["skeleton"]["offsets"]) == 19
