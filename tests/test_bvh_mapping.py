"""Skeletons other than the shared CMU one are recognised by their joint names and units."""

import numpy as np
import pytest

from poselift.train.bvh import load_h36m_positions, read_bvh
from poselift.train.bvh_mapping import MAPPINGS, SkeletonMapping, _mirror, resolve_mapping

# A minimal humanoid in metres-per-unit `u`, facing +Z, Y up; names with an optional prefix.
JOINTS = [  # name, parent, offset in metres (rest pose)
    ("Hips", None, (0, 0.95, 0)),
    ("LeftUpLeg", "Hips", (0.09, -0.05, 0)), ("LeftLeg", "LeftUpLeg", (0, -0.42, 0)),
    ("LeftFoot", "LeftLeg", (0, -0.42, 0)),
    ("RightUpLeg", "Hips", (-0.09, -0.05, 0)), ("RightLeg", "RightUpLeg", (0, -0.42, 0)),
    ("RightFoot", "RightLeg", (0, -0.42, 0)),
    ("Spine", "Hips", (0, 0.25, 0)), ("Neck", "Spine", (0, 0.25, 0)), ("Head", "Neck", (0, 0.1, 0)),
    ("LeftShoulder", "Spine", (0.05, 0.2, 0)), ("LeftArm", "LeftShoulder", (0.12, 0, 0)),
    ("LeftForeArm", "LeftArm", (0.28, 0, 0)), ("LeftHand", "LeftForeArm", (0.25, 0, 0)),
    ("RightShoulder", "Spine", (-0.05, 0.2, 0)), ("RightArm", "RightShoulder", (-0.12, 0, 0)),
    ("RightForeArm", "RightArm", (-0.28, 0, 0)), ("RightHand", "RightForeArm", (-0.25, 0, 0)),
]


def write_rig(path, unit: float, prefix: str = "", frames: int = 4) -> None:
    children = {}
    for name, parent, _ in JOINTS:
        children.setdefault(parent, []).append(name)
    offsets = {n: np.array(o) / unit for n, _, o in JOINTS}
    lines = ["HIERARCHY"]

    def emit(name, depth, root=False):
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if root else 'JOINT'} {prefix}{name}")
        lines.append(pad + "{")
        o = offsets[name] if not root else np.zeros(3)
        lines.append(f"{pad}  OFFSET {o[0]:.6f} {o[1]:.6f} {o[2]:.6f}")
        chans = "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" if root else "3 Zrotation Xrotation Yrotation"
        lines.append(f"{pad}  CHANNELS {chans}")
        kids = children.get(name, [])
        for k in kids:
            emit(k, depth + 1)
        if not kids:
            end = {"Head": (0, 0.2 / unit, 0)}.get(name, (0, 0.05 / unit, 0))
            lines.extend([f"{pad}  End Site", pad + "  {", f"{pad}    OFFSET {end[0]} {end[1]} {end[2]}", pad + "  }"])
        lines.append(pad + "}")

    emit("Hips", 0, root=True)
    n_ch = 6 + 3 * (len(JOINTS) - 1)
    lines += ["MOTION", f"Frames: {frames}", "Frame Time: 0.0333333"]
    for f in range(frames):
        values = np.zeros(n_ch)
        values[:3] = np.array([0.0, 0.95, 0.0]) / unit
        values[3:6] = [0, 0, 10.0 * f]  # turns about Y over time
        lines.append(" ".join(f"{v:.5f}" for v in values))
    path.write_text("\n".join(lines) + "\n")


def test_mirror_names():
    assert _mirror("LeftUpLeg") == "RightUpLeg" and _mirror("leftEye") == "rightEye"
    assert _mirror("L_Hip") == "R_Hip" and _mirror("lThigh") == "rThigh" and _mirror("LHip") == "RHip"


@pytest.mark.parametrize("unit, prefix", [(0.01, "mixamorig:"), (0.056444, ""), (1.0, ""), (0.0254, "Bip01_")])
def test_generic_rig_recognised_with_units(tmp_path, unit, prefix):
    if prefix == "Bip01_":  # prefixes without a separator are not stripped: expect a clear error
        write_rig(tmp_path / "r.bvh", unit, prefix)
        with pytest.raises(ValueError, match="unrecognised skeleton"):
            load_h36m_positions(tmp_path / "r.bvh", fps=30)
        return
    write_rig(tmp_path / "r.bvh", unit, prefix)
    bvh = read_bvh(tmp_path / "r.bvh")
    mapping = resolve_mapping(bvh)
    assert mapping.unit_scale == pytest.approx(unit)
    assert mapping.drop_first_frame  # frame 0 has no rotation: a rest pose
    joints = load_h36m_positions(bvh, fps=30)
    assert joints.shape == (3, 17, 3)
    f = joints[0]
    np.testing.assert_allclose(np.linalg.norm(f[1] - f[2]), 0.42, atol=1e-6)  # thigh, metres
    assert f[4, 0] > f[1, 0]  # left hip on +x in the rig's rest frame
    assert f[10, 1] > f[8, 1] and f[9, 2] > f[8, 2]  # mid-eyes above the thorax, nose in front
    np.testing.assert_allclose(f[0], (f[1] + f[4]) / 2)


def test_registered_mapping_wins_and_unknown_name(tmp_path):
    write_rig(tmp_path / "r.bvh", 0.01)
    bvh = read_bvh(tmp_path / "r.bvh")
    custom = SkeletonMapping({n: ("Hips",) for n in MAPPINGS["cmu"].to_h36m}, unit_scale=0.01)
    MAPPINGS["test_rig"] = custom
    try:
        assert resolve_mapping(bvh) is custom
        assert resolve_mapping(bvh, "test_rig") is custom
    finally:
        del MAPPINGS["test_rig"]
    with pytest.raises(ValueError, match="unknown skeleton mapping"):
        resolve_mapping(bvh, "nope")


def test_shared_cmu_skeleton_uses_its_mapping(mocap_dir):
    bvh = read_bvh(mocap_dir / "subject_05" / "05_01.bvh.gz")
    assert resolve_mapping(bvh) is MAPPINGS["cmu"]
