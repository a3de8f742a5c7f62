"""BVH output: an independent reader (bvhio) and the repo's own reader give the joints back."""

from __future__ import annotations

import numpy as np
import pytest

from poselift.model.body import conform
from poselift.model.rig import NUM_RIG, RIG_NAMES, camera_to_rig, solve_sequence
from poselift.stream.bvh_out import BVHWriter, unwrap_degrees, write_bvh
from poselift.train.bvh import forward_kinematics as repo_fk
from poselift.train.bvh import read_bvh
from tests.motion_helpers import demo_lengths, demo_poses


@pytest.fixture(scope="module")
def take():
    lengths = demo_lengths() * 1.07
    rig = camera_to_rig(conform(demo_poses()[:90], lengths))
    root = np.cumsum(np.full((len(rig), 3), [0.01, 0.0, -0.02]), axis=0) + [0.0, 0.95, 0.0]  # walking away
    return rig + root[:, None], solve_sequence(rig), root, lengths


def test_bvhio_reads_back_the_joints(tmp_path, take):
    bvhio = pytest.importorskip("bvhio")
    joints, q, root, lengths = take
    path = write_bvh(tmp_path / "take.bvh", q, root, lengths, 1 / 25)
    hierarchy = bvhio.readAsHierarchy(str(path))
    layout = [j for j, _, _ in hierarchy.layout()]
    names = [j.Name for j in layout]
    index = [names.index(n) for n in RIG_NAMES[:17]]
    worst = 0.0
    for t in range(len(joints)):
        hierarchy.loadPose(t)
        pos = np.array([list(j.PositionWorld) for j in layout]) / 100.0  # centimetres
        worst = max(worst, np.abs(pos[index] - joints[t]).max())
    assert worst < 1e-3  # goal 1 mm (measured: well under a micrometre)
    assert bvhio.readAsBvh(str(path)).FrameTime == pytest.approx(1 / 25)


def test_repo_reader_reads_it(tmp_path, take):
    joints, q, root, lengths = take
    path = write_bvh(tmp_path / "take.bvh", q, root, lengths, 1 / 30)
    bvh = read_bvh(path)
    assert bvh.joint_names[0] == "Hips" and len(bvh.joints) == NUM_RIG
    assert bvh.motion.shape == (len(joints), 3 + 3 * NUM_RIG)
    assert bvh.fps == pytest.approx(30.0, rel=1e-6)
    pts, names = repo_fk(bvh)
    np.testing.assert_allclose(pts[:, [names.index(n) for n in RIG_NAMES[:17]]], joints, atol=1e-6)
    # the stream's own bone lengths are the offsets (centimetres)
    knee = bvh.joints[bvh.index("LeftLowerLeg")]
    assert np.linalg.norm(knee.offset) == pytest.approx(lengths[4] * 100, rel=1e-6)


def test_incremental_writing_fixes_the_frame_count_at_close(tmp_path, take):
    joints, q, root, lengths = take
    path = tmp_path / "live.bvh"
    with BVHWriter(path, lengths, 1 / 30, flush=True) as w:
        for t in range(10):
            w.write(q[t], root[t])
        assert "Frames: 0 " in path.read_text()  # live: the count comes at close
    bvh = read_bvh(path)
    assert bvh.motion.shape[0] == 10
    pts, names = repo_fk(bvh)
    np.testing.assert_allclose(pts[:, [names.index(n) for n in RIG_NAMES[:17]]], joints[:10], atol=1e-6)


def test_angles_are_unwrapped():
    prev = np.array([179.0, -179.0, 10.0])
    np.testing.assert_allclose(unwrap_degrees(np.array([-179.0, 179.0, 10.0]), prev), [181.0, -181.0, 10.0])


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        BVHWriter(tmp_path / "x.bvh", np.full(16, np.nan), 1 / 30)
    with pytest.raises(ValueError):
        BVHWriter(tmp_path / "x.bvh", demo_lengths(), 0.0)
