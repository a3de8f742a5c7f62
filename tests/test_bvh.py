import gzip

import numpy as np
import pytest

from poselift.train.bvh import BVHError, forward_kinematics, load_h36m_positions, read_bvh, resample_indices
from poselift.train.dataset import load_takes, random_proportions, split_takes, subject_of

SIMPLE = """HIERARCHY
ROOT hip
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT spine
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT arm
    {
      OFFSET 5 0 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      End Site
      {
        OFFSET 1 0 0
      }
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.00833333
0 0 0 0 0 0 0 0 0 0 0 0
1 2 3 0 0 0 0 0 90 0 0 0
0 0 0 90 0 0 0 0 0 0 0 0
"""


def write(tmp_path, text, name="t.bvh"):
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["t.bvh", "t.bvh.gz"])
def test_parse_and_forward_kinematics(tmp_path, name):
    bvh = read_bvh(write(tmp_path, SIMPLE, name))
    assert bvh.joint_names == ["hip", "spine", "arm"]
    assert bvh.motion.shape == (3, 12)
    assert abs(bvh.fps - 120) < 1e-3
    pts, names = forward_kinematics(bvh, unit_scale=0.01)
    np.testing.assert_allclose(pts[0], [[0, 0, 0], [0, 0.1, 0], [0.05, 0.1, 0]], atol=1e-9)
    # frame 1: root translated by (1,2,3) cm; spine yawed +90 deg about Y: its child offset (5,0,0) -> (0,0,-5)
    np.testing.assert_allclose(pts[1, 2], [0.01, 0.12, 0.03 - 0.05], atol=1e-9)
    # frame 2: root rolled 90 deg about Z: spine offset (0,10,0) -> (-10,0,0)
    np.testing.assert_allclose(pts[2, 1], [-0.1, 0, 0], atol=1e-9)


def test_channel_order_is_per_joint(tmp_path):
    """Z then X (spine order) differs from X then Z: the loader must follow the file."""
    text = SIMPLE.replace("0 0 0 90 0 0 0 0 0 0 0 0", "0 0 0 0 0 0 90 90 0 0 0 0")
    bvh = read_bvh(write(tmp_path, text))
    pts, _ = forward_kinematics(bvh, unit_scale=1.0)
    # spine local = Rz(90) @ Rx(90); applied to the arm offset (5,0,0): Rx leaves it, Rz -> (0,5,0)
    np.testing.assert_allclose(pts[2, 2] - pts[2, 1], [0, 5, 0], atol=1e-9)
    swapped = text.replace("CHANNELS 3 Zrotation Xrotation Yrotation\n    JOINT arm",
                           "CHANNELS 3 Xrotation Zrotation Yrotation\n    JOINT arm")
    bvh2 = read_bvh(write(tmp_path, swapped, "s.bvh"))
    pts2, _ = forward_kinematics(bvh2, unit_scale=1.0)
    # now the values mean Rx(90) @ Rz(90): (5,0,0) -> Rz -> (0,5,0) -> Rx -> (0,0,5)
    np.testing.assert_allclose(pts2[2, 2] - pts2[2, 1], [0, 0, 5], atol=1e-9)


def test_offset_scale_and_extra_points(tmp_path):
    bvh = read_bvh(write(tmp_path, SIMPLE))
    pts, names = forward_kinematics(bvh, offset_scale=np.array([1.0, 2.0, 1.0]),
                                    extra_points={"tip": ("arm", (1.0, 0, 0))}, unit_scale=1.0)
    assert names[-1] == "tip"
    np.testing.assert_allclose(pts[0, 1], [0, 20, 0])
    np.testing.assert_allclose(pts[0, 3], [6, 20, 0])


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda t: t.replace("HIERARCHY", "HIERARCHX"), ":1: expected 'HIERARCHY'"),
        (lambda t: t.replace("CHANNELS 3 Zrotation Xrotation Yrotation\n    JOINT arm",
                             "CHANNELS 3 Zrotation Xrotation\n    JOINT arm"), ":9: CHANNELS says 3"),
        (lambda t: t.replace("1 2 3 0 0 0 0 0 90 0 0 0", "1 2 3 0 0 0 0 0 90 0 0"), ":25: expected 12 channel values"),
        (lambda t: t.replace("1 2 3 0 0 0 0 0 90 0 0 0", "1 2 nan 0 0 0 0 0 90 0 0 0"), ":25: NaN"),
        (lambda t: t.replace("1 2 3 0 0 0 0 0 90 0 0 0", "1 2 x 0 0 0 0 0 90 0 0 0"), ":25: non-numeric"),
        (lambda t: t[: t.index("MOTION")], "no MOTION section"),
        (lambda t: t[: t.rindex("0 0 0 90")], "header says 3 frames but only 2"),
        (lambda t: t.replace("Frame Time: 0.00833333", "Frame Time: zero"), "Frames: N"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, mutate, match):
    path = write(tmp_path, mutate(SIMPLE))
    with pytest.raises(BVHError, match=match) as info:
        read_bvh(path)
    assert str(path) in str(info.value)


def test_truncated_gzip(tmp_path):
    path = write(tmp_path, SIMPLE, "t.bvh.gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BVHError, match="t.bvh.gz"):
        read_bvh(path)


def test_resample_indices():
    np.testing.assert_allclose(resample_indices(9, 120, 30), [0, 4, 8])
    np.testing.assert_allclose(resample_indices(9, 120, 30, phase=1), [1, 5])
    assert len(resample_indices(121, 120, 25)) == 26


def test_shared_take_to_h36m(mocap_dir):
    path = mocap_dir / "subject_09" / "09_01.bvh.gz"
    bvh = read_bvh(path)
    joints = load_h36m_positions(bvh, fps=30)
    assert joints.shape == ((bvh.motion.shape[0] - 2) // 4 + 1, 17, 3)  # T-pose dropped, 120 -> 30 fps
    # a standing adult: head above pelvis above ankles, metres, plausible bone lengths
    f = joints[0]
    assert f[10, 1] > f[0, 1] > f[3, 1]
    assert 1.4 < f[10, 1] - min(f[3, 1], f[6, 1]) < 1.9
    thigh = np.linalg.norm(joints[:, 1] - joints[:, 2], axis=1)
    np.testing.assert_allclose(thigh, thigh[0], atol=1e-6)  # rigid bones
    assert 0.3 < thigh[0] < 0.5
    # exact subsampling (120 -> 24 fps, every 5th frame) agrees with the full rate
    j24 = load_h36m_positions(bvh, fps=24)
    np.testing.assert_allclose(j24[1], load_h36m_positions(bvh, fps=120)[5], atol=1e-6)


def _linear_take(tmp_path, frames=25):
    """SIMPLE's skeleton at 120 fps whose root moves 1 cm in x and 2 cm in z per frame."""
    header = SIMPLE.split("MOTION")[0]
    rows = "\n".join(f"{f} 0 {2 * f} 0 0 0 0 0 0 0 0 0" for f in range(frames))
    return read_bvh(write(tmp_path, f"{header}MOTION\nFrames: {frames}\nFrame Time: 0.00833333\n{rows}\n"))


def test_interpolated_resampling_of_a_linear_motion(tmp_path):
    """120 -> 25 fps is not an integer ratio: output frame k sits at source frame 4.8 k, and
    for a linear motion the linearly interpolated joints are known exactly."""
    from poselift.model.skeleton import H36M_JOINT_NAMES
    from poselift.train.bvh_mapping import SkeletonMapping

    bvh = _linear_take(tmp_path)
    # every H36M joint is the root, except the head, which is the arm joint (a fixed offset)
    mapping = SkeletonMapping({n: ("arm",) if n == "head" else ("hip",) for n in H36M_JOINT_NAMES},
                              unit_scale=0.01, drop_first_frame=False)
    j25 = load_h36m_positions(bvh, fps=25, mapping=mapping)
    # source frames 0, 4.8, 9.6, 14.4, 19.2, 24 -> root x = 1 cm per source frame, z = 2 cm
    assert j25.shape == (6, 17, 3)
    np.testing.assert_allclose(j25[:, 0, 0], [0.0, 0.048, 0.096, 0.144, 0.192, 0.24], atol=1e-6)
    np.testing.assert_allclose(j25[:, 0, 2], [0.0, 0.096, 0.192, 0.288, 0.384, 0.48], atol=1e-6)
    np.testing.assert_allclose(j25[:, 0, 1], 0.0, atol=1e-9)
    # the arm joint (head) rides along at its rest offset: spine (0, 10, 0) + arm (5, 0, 0) cm
    np.testing.assert_allclose(j25[:, 10] - j25[:, 0], np.tile([0.05, 0.10, 0.0], (6, 1)), atol=1e-6)
    # the phase shifts the grid: 120 -> 25 fps from source frame 2.5
    jp = load_h36m_positions(bvh, fps=25, mapping=mapping, phase=2.5)
    np.testing.assert_allclose(jp[:, 0, 0], [0.025, 0.073, 0.121, 0.169, 0.217], atol=1e-6)


def test_subjects_split_and_proportions(mocap_dir):
    assert subject_of(mocap_dir / "salsa" / "03.bvh.gz") == "60"
    assert subject_of(mocap_dir / "salsa" / "18.bvh.gz") == "61"
    assert subject_of(mocap_dir / "indian" / "04.bvh.gz") == "94"
    assert subject_of(mocap_dir / "subject_07" / "07_01.bvh.gz") == "07"
    takes = load_takes(mocap_dir / "subject_09", variants=2, progress=False)
    assert {t.variant for t in takes} == {0, 1, 2}
    train, val = split_takes(takes)
    assert not train and all(t.variant == 0 for t in val)
    bvh = read_bvh(mocap_dir / "subject_09" / "09_01.bvh.gz")
    scale, root = random_proportions(bvh, np.random.default_rng(1))
    assert scale.shape == (len(bvh.joints),) and 0.7 < root < 1.35
    a, b = takes[0].positions, takes[1].positions
    thigh = lambda p: np.linalg.norm(p[0, 1] - p[0, 2])  # noqa: E731
    assert abs(thigh(a) - thigh(b)) > 1e-3  # another body
