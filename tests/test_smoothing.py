"""One-Euro filter on 3D poses (stream/smoothing.py)."""

import numpy as np
import pytest

from poselift.stream.smoothing import OneEuroFilter, smooth_sequence

FPS = 30.0


def pose_sequence(values: np.ndarray) -> np.ndarray:
    """(T,) scalar signal -> (T, 17, 3) poses moving along x with it (joints offset)."""
    offsets = np.linspace(-0.5, 0.5, 17 * 3).reshape(17, 3)
    out = np.repeat(offsets[None], len(values), axis=0)
    out[..., 0] += values[:, None]
    return out


def second_difference(x: np.ndarray) -> float:
    return float(np.abs(x[2:] - 2 * x[1:-1] + x[:-2]).mean())


def lag(filtered: np.ndarray, reference: np.ndarray, max_lag: int = 30) -> int:
    errs = [np.abs(filtered[max_lag:] - reference[max_lag - k:len(reference) - k]).mean() for k in range(max_lag)]
    return int(np.argmin(errs))


def test_constant_input_passes_unchanged():
    poses = pose_sequence(np.full(50, 0.3))
    assert np.array_equal(smooth_sequence(poses, FPS), poses)


def test_step_converges_monotonically():
    values = np.r_[np.zeros(10), np.ones(60)]
    out = smooth_sequence(pose_sequence(values), FPS, min_cutoff=1.0, beta=0.5)[:, 0, 0] + 0.5
    after = out[10:]
    assert np.all(np.diff(after) >= -1e-12) and 0 < after[0] < 1  # moves at once, no overshoot
    assert abs(after[-1] - 1.0) < 1e-3


def test_jitter_on_a_noisy_sine_is_reduced():
    t = np.arange(300) / FPS
    clean = 0.2 * np.sin(2 * np.pi * 0.5 * t)
    noisy = clean + np.random.default_rng(0).normal(0, 0.01, t.shape)
    out = smooth_sequence(pose_sequence(noisy), FPS, min_cutoff=1.0, beta=0.5)[:, 3, 0]
    ref = pose_sequence(clean)[:, 3, 0]
    raw = pose_sequence(noisy)[:, 3, 0]
    assert second_difference(out) < 0.4 * second_difference(raw)
    assert np.ptp(out[30:]) > 0.85 * np.ptp(ref[30:])  # the motion itself survives (amplitude)
    assert np.abs(out - ref)[30:].max() < 0.1  # and follows with a bounded lag (< 5 frames at peak speed)


def test_lag_grows_as_min_cutoff_falls():
    t = np.arange(300) / FPS
    sine = pose_sequence(0.2 * np.sin(2 * np.pi * 0.5 * t))
    lags = [lag(smooth_sequence(sine, FPS, min_cutoff=mc, beta=0.0)[:, 0, 0], sine[:, 0, 0])
            for mc in (8.0, 2.0, 0.5, 0.2)]
    assert lags == sorted(lags) and lags[-1] > lags[0] + 3


def test_reset_invalid_frames_and_streams():
    f = OneEuroFilter(2, min_cutoff=1.0, beta=0.0, fps=FPS)
    a = pose_sequence(np.zeros(1))[0]
    b = pose_sequence(np.ones(1))[0]
    first = f(np.stack([a, b]))
    assert np.array_equal(first, np.stack([a, b]))  # the first frame of a stream passes unchanged
    moved = f(np.stack([b, b]))
    assert 0 < moved[0, 0, 0] - a[0, 0] < 1  # stream 0 smooths towards b; stream 1 stays at b
    assert np.allclose(moved[1], b)
    # an invalid frame (NaN, or valid=False) holds the last output and leaves the state alone
    nan = np.full_like(a, np.nan)
    held = f(np.stack([nan, a]), valid=[True, False])
    assert np.array_equal(held, moved)
    # only stream 1, by slot index; then reset stream 0: its next frame starts afresh
    f(b[None], streams=[1])
    f.reset(0)
    assert np.array_equal(f(a[None] + 5, streams=[0]), a[None] + 5)


def test_streams_are_independent_and_timestamps_match_fps():
    rng = np.random.default_rng(1)
    seqs = [pose_sequence(np.cumsum(rng.normal(0, 0.02, 40))) for _ in range(2)]
    together = OneEuroFilter(2, fps=FPS)
    joint = np.stack([together(np.stack([seqs[0][i], seqs[1][i]])) for i in range(40)], axis=1)
    for s in range(2):
        assert np.allclose(joint[s], smooth_sequence(seqs[s], FPS))
    timed = OneEuroFilter(1)
    out = np.stack([timed(seqs[0][i][None], t=[i / FPS])[0] for i in range(40)])
    assert np.allclose(out, smooth_sequence(seqs[0], FPS))
    with pytest.raises(ValueError, match="timestamps"):
        OneEuroFilter(1)(seqs[0][:1])
