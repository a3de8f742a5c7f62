"""VideoPose3D npz reader: files written here in that exact format (random data, 2 subjects, 2 actions)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from poselift.model.skeleton import COCO17
from poselift.train.h36m_npz import (H36M_32_TO_17, H36M_EXTRINSICS, H36M_INTRINSICS, H36M_SUBJECTS, H36MFormatError,
                            camera_parameters, camera_to_world, load_videopose3d, project_to_pixels,
                            quaternion_rotate, read_npz_objects, world_to_camera)

SUBJECTS = ("S1", "S9")
ACTIONS = ("Walking", "Eating 2")
METADATA = {"layout_name": "h36m", "num_joints": 17,
            "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}


def _make_3d(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(T, 32, 3) metres: a body-sized cloud around (x, y) = walk path, z in [0, 1.8]."""
    base = rng.uniform([-0.3, -0.3, 0.0], [0.3, 0.3, 1.8], size=(1, 32, 3))
    drift = np.linspace(0, 0.5, frames)[:, None, None] * np.array([1.0, 0.0, 0.0])
    return (base + drift + rng.normal(scale=0.01, size=(frames, 32, 3))).astype(np.float32)


def _make_data(seed: int = 0, frames: int = 12, extra_2d: int = 0, confidence: bool = False):
    rng = np.random.default_rng(seed)
    pos3d, pos2d = {}, {}
    for s_i, subject in enumerate(SUBJECTS):
        pos3d[subject], pos2d[subject] = {}, {}
        for a_i, action in enumerate(ACTIONS):
            t = frames + 2 * s_i + a_i  # all lengths differ
            world = _make_3d(rng, t + extra_2d)
            pos3d[subject][action] = world[:t]
            cams = []
            for c in range(4):
                intr, extr = camera_parameters(subject, c)
                cam = world_to_camera(world[:, list(H36M_32_TO_17)], extr["orientation"], extr["translation"])
                kp = project_to_pixels(cam, intr).astype(np.float32)
                if confidence:
                    kp = np.concatenate([kp, rng.uniform(0, 1, size=kp.shape[:2] + (1,)).astype(np.float32)], -1)
                cams.append(kp)
            pos2d[subject][action] = cams
    return pos3d, pos2d


def _write(tmp_path: Path, pos3d, pos2d, metadata=None, name2d: str = "data_2d_h36m_gt.npz"):
    p3, p2 = tmp_path / "data_3d_h36m.npz", tmp_path / name2d
    np.savez_compressed(p3, positions_3d=pos3d)
    np.savez_compressed(p2, positions_2d=pos2d, metadata=METADATA if metadata is None else metadata)
    return p3, p2


@pytest.fixture()
def files(tmp_path):
    pos3d, pos2d = _make_data()
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    return p3, p2, pos3d, pos2d


# ------------------------------------------------------------------ loading


def test_load_takes_shapes_and_order(files):
    p3, p2, pos3d, pos2d = files
    takes = load_videopose3d(p3, p2)
    assert len(takes) == len(SUBJECTS) * len(ACTIONS) * 4
    assert [(t.subject, t.action, t.camera_index) for t in takes] == \
        [(s, a, c) for s in SUBJECTS for a in ACTIONS for c in range(4)]
    for take in takes:
        n = pos3d[take.subject][take.action].shape[0]
        assert take.num_frames == n
        assert take.keypoints_2d.shape == (n, 17, 2)
        assert take.positions_3d_world.shape == (n, 17, 3)
        assert take.positions_3d_camera.shape == (n, 17, 3)
        assert take.confidence is None
        intr = H36M_INTRINSICS[take.camera_index]
        assert (take.width, take.height) == (intr["res_w"], intr["res_h"])
        assert take.intrinsics["focal_length"] == intr["focal_length"]
        np.testing.assert_allclose(take.keypoints_2d, pos2d[take.subject][take.action][take.camera_index])


def test_subject_filter(files):
    p3, p2, _, _ = files
    takes = load_videopose3d(p3, p2, subjects=["S9"])
    assert {t.subject for t in takes} == {"S9"} and len(takes) == len(ACTIONS) * 4
    with pytest.raises(H36MFormatError, match="S5"):
        load_videopose3d(p3, p2, subjects=["S5"])  # calibrated, but not in the file


def test_joint_subset_picks_the_17_model_joints(tmp_path):
    pos3d, pos2d = _make_data()
    for subject in SUBJECTS:
        for action in ACTIONS:
            arr = pos3d[subject][action]
            arr[:, :, 0] = np.arange(32, dtype=np.float32) / 100.0  # x encodes the source joint index
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    take = load_videopose3d(p3, p2)[0]
    np.testing.assert_allclose(take.positions_3d_world[0, :, 0], np.array(H36M_32_TO_17) / 100.0, atol=1e-6)
    np.testing.assert_allclose(take.positions_3d_world,
                               pos3d[take.subject][take.action][:, list(H36M_32_TO_17)], atol=1e-6)
    assert H36M_32_TO_17 == (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)


def test_confidence_column_split_off(tmp_path):
    pos3d, pos2d = _make_data(confidence=True)
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    take = load_videopose3d(p3, p2)[5]
    assert take.keypoints_2d.shape[-1] == 2
    assert take.confidence.shape == take.keypoints_2d.shape[:2]
    np.testing.assert_allclose(take.confidence, pos2d[take.subject][take.action][take.camera_index][..., 2])


def test_coco_layout_mapped_to_h36m(tmp_path):
    pos3d, pos2d = _make_data(confidence=True)
    rng = np.random.default_rng(3)
    for s in SUBJECTS:
        for a in ACTIONS:
            pos2d[s][a] = [rng.uniform(0, 1000, size=k.shape).astype(np.float32) for k in pos2d[s][a]]
    p3, p2 = _write(tmp_path, pos3d, pos2d, metadata={**METADATA, "layout_name": "coco"})
    take = load_videopose3d(p3, p2)[0]
    raw = pos2d[take.subject][take.action][0]
    np.testing.assert_allclose(take.keypoints_2d, COCO17.to_h36m(raw[..., :2]), rtol=1e-5)
    np.testing.assert_allclose(take.confidence[:, 0], np.minimum(raw[:, 11, 2], raw[:, 12, 2]))  # pelvis=hips


def test_longer_2d_is_trimmed_to_3d_length(tmp_path):
    pos3d, pos2d = _make_data(extra_2d=3)
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    for take in load_videopose3d(p3, p2):
        n = pos3d[take.subject][take.action].shape[0]
        assert take.keypoints_2d.shape[0] == take.positions_3d_world.shape[0] == n
        np.testing.assert_allclose(take.keypoints_2d, pos2d[take.subject][take.action][take.camera_index][:n])


# ------------------------------------------------------------------ cameras


def test_quaternion_rotation_hand_computed():
    h = np.sqrt(0.5)
    q_z90 = np.array([h, 0.0, 0.0, h])  # 90 degrees about +z
    np.testing.assert_allclose(quaternion_rotate(q_z90, [1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(quaternion_rotate(q_z90, [0.0, 0.0, 2.0]), [0.0, 0.0, 2.0], atol=1e-12)
    q_x180 = np.array([0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(quaternion_rotate(q_x180, [[0.0, 1.0, 1.0]]), [[0.0, -1.0, -1.0]], atol=1e-12)
    np.testing.assert_allclose(quaternion_rotate(2 * q_z90, [1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-12)


def test_camera_tables_complete_and_in_metres():
    assert set(H36M_SUBJECTS) == {"S1", "S5", "S6", "S7", "S8", "S9", "S11"}
    assert [c["res_h"] for c in H36M_INTRINSICS] == [1002, 1000, 1000, 1002]
    for cams in H36M_EXTRINSICS.values():
        assert len(cams) == 4
        for cam in cams:
            assert np.linalg.norm(cam["orientation"]) == pytest.approx(1.0, abs=1e-6)
            assert 3.0 < np.linalg.norm(cam["translation"]) < 7.0  # metres from the capture centre
    with pytest.raises(KeyError, match="S2"):
        camera_parameters("S2", 0)


@pytest.mark.parametrize("subject", H36M_SUBJECTS)
def test_world_to_camera_sees_the_capture_volume(subject):
    """A person standing at the world origin is in front of every camera and inside its image."""
    feet_head = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.8]])
    for c in range(4):
        intr, extr = camera_parameters(subject, c)
        cam = world_to_camera(feet_head, extr["orientation"], extr["translation"])
        assert np.all((cam[:, 2] > 3.0) & (cam[:, 2] < 7.0))
        px = project_to_pixels(cam, intr)
        assert np.all(np.isfinite(px))
        assert np.all((px >= 0) & (px <= [intr["res_w"], intr["res_h"]]))
        assert px[0, 1] > px[1, 1]  # world z is up, image y is down: feet below head


def test_loaded_camera_frame_round_trip_and_projection(files):
    p3, p2, _, _ = files
    for take in load_videopose3d(p3, p2):
        o, t = take.extrinsics["orientation"], take.extrinsics["translation"]
        back = camera_to_world(take.positions_3d_camera, o, t)
        np.testing.assert_allclose(back, take.positions_3d_world, atol=1e-5)
        # rigid: limb lengths are the same in both frames
        np.testing.assert_allclose(np.linalg.norm(take.positions_3d_camera[:, 1] - take.positions_3d_camera[:, 0], axis=-1),
                                   np.linalg.norm(take.positions_3d_world[:, 1] - take.positions_3d_world[:, 0], axis=-1),
                                   atol=1e-5)
        assert np.all(take.positions_3d_camera[..., 2] > 2.0)
        px = project_to_pixels(take.positions_3d_camera, take.intrinsics)
        assert np.all(np.isfinite(px))
        assert np.all((px > -0.5 * take.width) & (px < 1.5 * take.width))
        if (take.subject, take.camera_index) in PUBLIC_S1:  # the file's 2D, against the hand-written camera
            np.testing.assert_allclose(_project_by_hand(take.positions_3d_world, *PUBLIC_S1[take.subject, take.camera_index]),
                                       take.keypoints_2d, atol=0.05)
    assert {(t.subject, t.camera_index) for t in load_videopose3d(p3, p2)} >= set(PUBLIC_S1)


# Human3.6M S1, cameras 54138969 and 55011271, as published with VideoPose3D
# (h36m_dataset.py): quaternion (w, x, y, z) rotating camera axes into world axes, camera
# centre in mm, then the intrinsics (pixels) and distortion of each camera.
PUBLIC_S1 = {
    ("S1", 0): ((0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088),
                (1841.1070556640625, 4955.28466796875, 1563.4454345703125),
                (1145.0494384765625, 1143.7811279296875), (512.54150390625, 515.4514770507812),
                (-0.20709891617298126, 0.24777518212795258, -0.0030751503072679043),
                (-0.0009756988729350269, -0.00142447161488235)),
    ("S1", 1): ((0.6157187819480896, -0.764836311340332, -0.14833825826644897, 0.11794740706682205),
                (1761.278564453125, -5078.0068359375, 1606.2650146484375),
                (1149.6756591796875, 1147.5916748046875), (508.8486328125, 508.0649108886719),
                (-0.1942136287689209, 0.2404085397720337, 0.006819975562393665),
                (-0.0016190266469493508, -0.0027408944442868233)),
}


# _project_by_hand of the capture centre (0, 0, 0) and a point 1.8 m above it, in pixels
LITERAL_S1_CAM0 = [[440.3573, 629.3747], [446.4505, 246.6555]]
LITERAL_S1_CAM1 = [[560.4697, 594.3332], [564.5189, 216.2839]]


def _project_by_hand(world_m, q, centre_mm, f, c, k, p):
    """World metres -> pixels, written out: rotation matrix of q, X_cam = R^T (X - C), then
    the pinhole with VideoPose3D's distortion (x, y) (1 + k1 r2 + k2 r4 + k3 r6 + p1 x + p2 y) + (p1, p2) r2."""
    w, x, y, z = np.asarray(q) / np.linalg.norm(q)
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                  [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                  [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    cam = (np.asarray(world_m, np.float64) - np.asarray(centre_mm) / 1000.0) @ R  # rows: R^T (X - C)
    u, v = cam[..., 0] / cam[..., 2], cam[..., 1] / cam[..., 2]
    r2 = u * u + v * v
    scale = 1 + k[0] * r2 + k[1] * r2 ** 2 + k[2] * r2 ** 3 + p[0] * u + p[1] * v
    ud, vd = u * scale + p[0] * r2, v * scale + p[1] * r2
    return np.stack([f[0] * ud + c[0], f[1] * vd + c[1]], axis=-1)


@pytest.mark.parametrize("camera", [0, 1])
def test_projection_matches_hand_computed_public_cameras(camera):
    """The module's world->camera->pixels against the projection written out above, and
    against pixel values computed once from it (a person at the capture centre)."""
    points = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.8], [0.5, -0.3, 1.0], [-1.2, 0.8, 0.2]])
    want = _project_by_hand(points, *PUBLIC_S1["S1", camera])
    intr, extr = camera_parameters("S1", camera)
    got = project_to_pixels(world_to_camera(points, extr["orientation"], extr["translation"]), intr)
    np.testing.assert_allclose(got, want, atol=1e-6)
    literal = {0: LITERAL_S1_CAM0, 1: LITERAL_S1_CAM1}[camera]
    np.testing.assert_allclose(got[:2], literal, atol=1e-3)


def test_projection_behind_camera_is_nan():
    assert np.all(np.isnan(project_to_pixels(np.array([0.1, 0.2, -1.0]), H36M_INTRINSICS[0])))


# ------------------------------------------------------------------ errors


def _err(match_parts: list[str]):
    return pytest.raises(H36MFormatError, match=".*".join(re.escape(p) for p in match_parts))


def test_missing_key(tmp_path):
    pos3d, pos2d = _make_data()
    p3 = tmp_path / "data_3d_h36m.npz"
    np.savez_compressed(p3, positions=pos3d)
    p2 = tmp_path / "data_2d.npz"
    np.savez_compressed(p2, positions_2d=pos2d)  # metadata missing
    with _err([str(p3), "missing key", "positions_3d"]):
        load_videopose3d(p3, p2)
    np.savez_compressed(p3, positions_3d=pos3d)
    with _err([str(p2), "missing key", "metadata"]):
        load_videopose3d(p3, p2)


def test_extra_member_refused(tmp_path):
    pos3d, pos2d = _make_data()
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    np.savez_compressed(p3, positions_3d=pos3d, something_else=np.zeros(3))
    with _err([str(p3), "unexpected member", "something_else"]):
        load_videopose3d(p3, p2)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_pickle_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    p3 = tmp_path / "data_3d_h36m.npz"
    np.savez(p3, positions_3d=np.array({"S1": _Evil(marker)}, dtype=object))
    with _err([str(p3), "positions_3d", "refusing to unpickle"]):
        read_npz_objects(p3, ["positions_3d"])
    assert not marker.exists()
    # sanity: numpy's own loader would have run it
    np.load(p3, allow_pickle=True)["positions_3d"]
    assert marker.exists()


def test_not_an_npz_and_plain_array_refused(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    with _err([str(bad), "not an npz"]):
        read_npz_objects(bad, ["positions_3d"])
    np.savez(bad, positions_3d=np.zeros((3, 32, 3)))
    with _err([str(bad), "positions_3d", "0-d object array"]):
        read_npz_objects(bad, ["positions_3d"])
    with pytest.raises(FileNotFoundError):
        read_npz_objects(tmp_path / "nope.npz", ["positions_3d"])


def test_wrong_3d_shape(tmp_path):
    pos3d, pos2d = _make_data()
    pos3d["S9"]["Walking"] = pos3d["S9"]["Walking"][:, :31]
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    with _err([str(p3), "positions_3d", "'S9'", "'Walking'", "(T, 32, 3)"]):
        load_videopose3d(p3, p2)


def test_wrong_2d_shape_and_camera_count(tmp_path):
    pos3d, pos2d = _make_data()
    pos2d["S1"]["Eating 2"][2] = pos2d["S1"]["Eating 2"][2][:, :16]
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    with _err([str(p2), "positions_2d", "'S1'", "'Eating 2'", "[2]", "(T, 17, 2)"]):
        load_videopose3d(p3, p2)
    pos3d, pos2d = _make_data()
    pos2d["S1"]["Walking"] = pos2d["S1"]["Walking"][:3]
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    with _err([str(p2), "'Walking'", "4 per-camera"]):
        load_videopose3d(p3, p2)


@pytest.mark.parametrize("which", ["3d", "2d"])
def test_nan_rejected(tmp_path, which):
    pos3d, pos2d = _make_data()
    if which == "3d":
        pos3d["S9"]["Eating 2"][4, 7, 1] = np.nan
    else:
        pos2d["S9"]["Eating 2"][1][4, 7, 1] = np.nan
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    path = p3 if which == "3d" else p2
    with _err([str(path), "'S9'", "'Eating 2'", "NaN"]):
        load_videopose3d(p3, p2)


def test_shorter_2d_is_an_error(tmp_path):
    pos3d, pos2d = _make_data()
    pos2d["S1"]["Walking"][3] = pos2d["S1"]["Walking"][3][:-2]
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    with _err([str(p2), "'S1'", "'Walking'", "[3]", "2D frames but"]):
        load_videopose3d(p3, p2)


@pytest.mark.parametrize("which", ["3d", "2d"])
def test_unknown_subject(tmp_path, which):
    pos3d, pos2d = _make_data()
    target = pos3d if which == "3d" else pos2d
    target["S2"] = target.pop("S9")
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    with _err([str(p3 if which == "3d" else p2), "unknown subject", "'S2'"]):
        load_videopose3d(p3, p2)


def test_missing_subject_or_action_in_2d(tmp_path):
    pos3d, pos2d = _make_data()
    del pos2d["S9"]
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    with _err([str(p2), "'S9'", "missing"]):
        load_videopose3d(p3, p2)
    pos3d, pos2d = _make_data()
    del pos2d["S1"]["Eating 2"]
    p3, p2 = _write(tmp_path, pos3d, pos2d)
    with _err([str(p2), "'S1'", "'Eating 2'", "missing"]):
        load_videopose3d(p3, p2)


@pytest.mark.parametrize("metadata,msg", [
    ({**METADATA, "num_joints": 16}, "num_joints"),
    ({**METADATA, "layout_name": "openpose"}, "layout_name"),
    ({"num_joints": 17}, "layout_name"),
    ([1, 2], "pickled dict (0-d object array)"),
    (np.array("h36m", dtype=object), "expected a dict"),
])
def test_bad_metadata(tmp_path, metadata, msg):
    pos3d, pos2d = _make_data()
    p3, p2 = _write(tmp_path, pos3d, pos2d, metadata=metadata)
    with _err([str(p2), "metadata", msg]):
        load_videopose3d(p3, p2)
