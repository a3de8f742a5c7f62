"""Layout.to_h36m's grouped gather against the definition: each H36M joint is the weighted
sum of exactly the source joints its matrix row names (so NaN stays local)."""

import numpy as np
import pytest

from poselift.model.skeleton import LAYOUTS, Layout


def by_definition(layout: Layout, points: np.ndarray) -> np.ndarray:
    out = np.empty(points.shape[:-2] + (17, points.shape[-1]))
    for j in range(17):
        cols = np.nonzero(layout.to_h36m_matrix[j])[0]
        out[..., j, :] = sum(layout.to_h36m_matrix[j, c] * points[..., c, :] for c in cols)
    return out


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_grouped_gather_equals_the_per_joint_definition_with_nan(name):
    layout = LAYOUTS[name]
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(4, 3, layout.num_joints, 2))
    pts[0, 0, rng.integers(layout.num_joints)] = np.nan  # one missing source joint
    pts[1, 2, :, 1] = np.nan
    for points in (pts, pts[0, 0], pts[2]):
        np.testing.assert_allclose(layout.to_h36m(points), by_definition(layout, points), rtol=0, atol=1e-12)
        assert np.array_equal(np.isnan(layout.to_h36m(points)), np.isnan(by_definition(layout, points)))


def test_unequal_weights_and_a_custom_layout():
    m = np.zeros((17, 20))
    m[np.arange(17), np.arange(17)] = 1.0
    m[0] = 0.0
    m[0, [17, 18, 19]] = (0.2, 0.3, 0.5)  # three sources, unequal weights
    m[5] = 0.0
    m[5, [1, 19]] = (0.25, 0.75)
    layout = Layout("custom20", tuple(f"j{i}" for i in range(20)), m)
    pts = np.random.default_rng(2).normal(size=(6, 20, 3))
    pts[2, 18] = np.nan
    out = layout.to_h36m(pts)
    np.testing.assert_allclose(out, by_definition(layout, pts), rtol=0, atol=1e-12)
    assert np.isnan(out[2, 0]).all() and np.isfinite(np.delete(out[2], 0, axis=0)).all()
