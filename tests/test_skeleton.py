import numpy as np
import pytest

from poselift.model.skeleton import (COCO17, H36M_JOINT_NAMES, H36M_LEFT, H36M_PARENTS, H36M_RIGHT, MEDIAPIPE33,
                            flip_permutation, get_layout)


def test_h36m_definitions_consistent():
    assert len(H36M_JOINT_NAMES) == len(H36M_PARENTS) == 17
    assert H36M_PARENTS[0] == -1 and all(p < i for i, p in enumerate(H36M_PARENTS) if i)
    for l, r in zip(H36M_LEFT, H36M_RIGHT):
        assert H36M_JOINT_NAMES[l].replace("left", "right") == H36M_JOINT_NAMES[r]
    perm = flip_permutation()
    assert sorted(perm) == list(range(17)) and all(perm[perm] == np.arange(17))


@pytest.mark.parametrize("layout", [COCO17, MEDIAPIPE33])
def test_mapping_to_h36m(layout):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(5, layout.num_joints, 2))
    out = layout.to_h36m(pts)
    idx = {n: i for i, n in enumerate(layout.joint_names)}
    assert out.shape == (5, 17, 2)
    np.testing.assert_allclose(out[:, 0], (pts[:, idx["left_hip"]] + pts[:, idx["right_hip"]]) / 2)
    np.testing.assert_allclose(out[:, 13], pts[:, idx["left_wrist"]])
    np.testing.assert_allclose(out[:, 9], pts[:, idx["nose"]])
    np.testing.assert_allclose(layout.to_h36m_matrix.sum(axis=1), 1.0)


def test_missing_source_joint_only_affects_its_targets():
    pts = np.zeros((33, 2))
    pts[MEDIAPIPE33.joint_names.index("left_wrist")] = np.nan
    out = MEDIAPIPE33.to_h36m(pts)
    assert np.isnan(out[13]).all() and np.isfinite(np.delete(out, 13, axis=0)).all()


def test_layout_errors():
    with pytest.raises(ValueError, match="unknown layout"):
        get_layout("openpose25")
    with pytest.raises(ValueError, match="17 joints"):
        COCO17.to_h36m(np.zeros((16, 2)))


def test_screen_normalisation_round_trip():
    from poselift.model.normalization import denormalize_screen, normalize_screen

    px = np.array([[0.0, 0.0], [1280.0, 720.0], [640.0, 360.0]])
    n = normalize_screen(px, 1280, 720)
    np.testing.assert_allclose(n[0], [-1, -720 / 1280], atol=1e-6)
    np.testing.assert_allclose(n[1], [1, 720 / 1280], atol=1e-6)
    np.testing.assert_allclose(n[2], [0, 0], atol=1e-6)
    np.testing.assert_allclose(denormalize_screen(n, 1280, 720), px, atol=1e-3)
    with pytest.raises(ValueError):
        normalize_screen(px, 0, 720)


def test_detectors_and_mocap_rigs_build_h36m_joints_alike():
    """The H36M joint constructions (pelvis = mid-hips, head = mid-eyes, ...) are defined once:
    the same anatomical points, named as a COCO-17 or MediaPipe-33 detection or as the CMU
    rig used for training, give the same H36M-17 joints."""
    from poselift.model.skeleton import H36M_SOURCE_POINTS
    from poselift.train.bvh_mapping import CMU_POINTS, CMU_TO_H36M, to_h36m

    rng = np.random.default_rng(0)
    points = {name: rng.normal(size=3) for name in H36M_SOURCE_POINTS}
    rig_names = [CMU_POINTS[p] for p in H36M_SOURCE_POINTS] + ["hip", "abdomen"]  # + joints no construction uses
    rig = np.stack([points[p] for p in H36M_SOURCE_POINTS] + [rng.normal(size=3)] * 2)[None]
    from_rig = to_h36m(rig, rig_names, CMU_TO_H36M)[0]
    for layout in (COCO17, MEDIAPIPE33):
        detected = np.stack([points.get(n, rng.normal(size=3)) for n in layout.joint_names])
        np.testing.assert_allclose(layout.to_h36m(detected), from_rig, atol=1e-12)
    np.testing.assert_allclose(from_rig[0], (points["left_hip"] + points["right_hip"]) / 2)
    np.testing.assert_allclose(from_rig[10], (points["left_eye"] + points["right_eye"]) / 2)
