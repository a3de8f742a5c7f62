"""What the motion stage costs per pose, and what it does to limb lengths and jitter.

* :func:`bench_motion`: median wall time of the live loop's motion stage
  (:class:`stream.motion_wire.MotionWire`, around :meth:`stream.motion.MotionStage.process`)
  per round and per pose, at 1 and 32 streams (one pose per stream per round), on the
  bundled demo clip with 1 cm noise so the estimator and the rotation solver do real work.
* :func:`motion_quality`: limb-length CV and joint jitter of a pose sequence before and
  after the stage (for ``poselift video`` outputs: their ``poses3d``), overall and once the
  body has settled.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import numpy as np

from poselift.model.body import joint_jitter, limb_length_cv
from poselift.stream.motion import MotionStage


def _demo_poses() -> np.ndarray:
    path = resources.files("poselift.stream") / "assets" / "demo_clip.npz"
    with resources.as_file(path) as p, np.load(p) as data:
        return data["poses3d"].astype(np.float64)


TIMED_ROUNDS = 2000  # what ``main`` times, with and without --time-only


def bench_motion(streams: tuple[int, ...] = (1, 32), frames: int = 300, seed: int = 0,
                 cold_mib: float = 4.0) -> dict[str, dict[str, float]]:
    """``{"streams_<S>": {"batch_ms", "per_pose_ms", "p90_ms", "cold_batch_ms",
    "cold_per_pose_ms", "stage_per_pose_ms", "calls", "load_average"}}``: medians over
    ``frames`` timed rounds of what the live loop pays for the motion stage, one
    :class:`stream.motion_wire.MotionWire` call on a round of one pose per stream (the
    engine's float32 joints; the stage itself, the stacking of the round and the per-pose
    outputs), in its steady state (every body settled: 50 untimed rounds first, the
    estimator's warm-up is 30). ``stage_per_pose_ms``: :meth:`stream.motion.MotionStage.process`
    alone, per pose (the figure earlier results gave as ``per_pose_ms``).

    ``cold_*``: the same, with ``cold_mib`` MiB of other data read between calls, as a model
    step does in the live loop: the stage's code and data are then out of the CPU caches,
    which roughly doubles its cost (notes in stream/motion.py). ``load_average``: the
    1-minute load average when the streams were timed (other processes share the cores)."""
    import os

    from poselift.stream.engine import PoseOut
    from poselift.stream.motion_wire import MotionWire

    poses = _demo_poses()
    rng = np.random.default_rng(seed)
    other = np.ones(int(cold_mib * 2**20) // 8)
    out: dict[str, dict[str, float]] = {}
    for s in streams:
        names = [f"cam{i}" for i in range(s)]
        offsets = rng.integers(0, len(poses), size=s)
        batches = [poses[(offsets + t) % len(poses)] + rng.normal(0, 0.01, (s, 17, 3))
                   for t in range(50 + 2 * frames + frames // 20)]
        wire, warm, cold = MotionWire(), [], []
        for t, batch in enumerate(batches):
            joints = batch.astype(np.float32)  # as the engine gives them
            round_ = [PoseOut(name, t, 0.0, 0.0, joints[i], True, False, [], epoch=1) for i, name in enumerate(names)]
            # Timed in alternating blocks of 21 warm and 20 cold calls (the same load for both);
            # the first warm call of a block, after the cold ones, is not counted.
            k = (t - 50) % 41
            evict = t >= 50 and k >= 21
            if evict:
                other.sum()
            t0 = time.perf_counter()
            wire(round_)
            elapsed = time.perf_counter() - t0
            if t >= 50 and k != 0:
                (cold if evict else warm).append(elapsed)
        stage, alone = MotionStage(), []
        for t, batch in enumerate(batches[:50 + frames]):
            t0 = time.perf_counter()
            stage.process(names, batch)
            if t >= 50:
                alone.append(time.perf_counter() - t0)
        warm, cold = warm[:frames], cold[:frames] or warm
        med, cold_med = float(np.median(warm)) * 1e3, float(np.median(cold)) * 1e3
        out[f"streams_{s}"] = {"batch_ms": med, "per_pose_ms": med / s, "p90_ms": float(np.percentile(warm, 90)) * 1e3,
                               "cold_batch_ms": cold_med, "cold_per_pose_ms": cold_med / s,
                               "stage_per_pose_ms": float(np.median(alone)) * 1e3 / s,
                               "calls": float(len(warm)), "load_average": os.getloadavg()[0]}
    return out


def run_stage(poses: np.ndarray, valid: np.ndarray | None = None, **body_options: object) -> tuple[np.ndarray, np.ndarray]:
    """One stream's (T, 17, 3) poses through the stage offline: (consistent poses, settled flags)."""
    stage = MotionStage(**body_options)
    valid = np.ones(len(poses), bool) if valid is None else np.asarray(valid, bool)
    out = np.empty((len(poses), 17, 3))
    settled = np.zeros(len(poses), bool)
    for t, pose in enumerate(np.asarray(poses, dtype=np.float64)):
        b = stage.process(["s"], pose[None], valid[t:t + 1])
        out[t] = b.joints[0]
        settled[t] = b.settled[0]
    return out, settled


def motion_quality(poses: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """CV and jitter of ``poses`` (T, 17, 3) raw and through the stage, over the ``valid``
    frames (the protocol says not to use the others); ``*_settled`` only over the frames
    after the body settled."""
    poses = np.asarray(poses, dtype=np.float64)
    consistent, settled = run_stage(poses, valid)
    v = np.ones(len(poses), bool) if valid is None else np.asarray(valid, bool)
    result = {"frames": float(len(poses)), "cv_raw": limb_length_cv(poses, v),
              "cv_consistent": limb_length_cv(consistent, v),
              "jitter_raw": joint_jitter(poses, v), "jitter_consistent": joint_jitter(consistent, v)}
    after = settled.nonzero()[0]
    if len(after) > 3:
        tail = slice(after[0], None)
        result.update(cv_raw_settled=limb_length_cv(poses[tail], v[tail]),
                      cv_consistent_settled=limb_length_cv(consistent[tail], v[tail]),
                      jitter_raw_settled=joint_jitter(poses[tail], v[tail]),
                      jitter_consistent_settled=joint_jitter(consistent[tail], v[tail]))
    return result


def video_quality(npz: str | Path) -> dict[str, float]:
    """:func:`motion_quality` of a ``poselift video --out`` file."""
    with np.load(npz) as data:
        return motion_quality(data["poses3d"], data["valid"] if "valid" in data else None)


def validation_quality(noise_px: float = 3.0, missing_prob: float = 0.05, max_frames: int | None = 6000,
                       seed: int = 0) -> dict[str, object]:
    """Limb-length CV and joint jitter of the shipped causal model's poses, raw against the
    motion stage's default output, on the validation takes of the mocap set seen through the
    fixed evaluation cameras with detector-like 2D corruption (``noise_px`` Gaussian pixels
    per 1000 px of image width, ``missing_prob`` joints missing per frame, held as live).
    Every sequence is one stream; the figures are frame-weighted means over sequences, plus
    the ground truth's own (the mocap bodies are rigid: its CV is the floor)."""
    import torch

    from poselift.model import lift_sequence
    from poselift.model.commands import default_checkpoint
    from poselift.model.checkpoint import load_checkpoint
    from poselift.train.cameras import Corruption
    from poselift.train.dataset import VALIDATION_SUBJECTS, load_takes, split_takes
    from poselift.train.generators import evaluation_views

    from .accuracy import _mocap_root

    torch.manual_seed(seed)
    model = load_checkpoint(default_checkpoint("causal")).model.eval()
    takes = load_takes(_mocap_root(), subjects=set(VALIDATION_SUBJECTS), progress=False)
    _, val = split_takes(takes)
    corruption = Corruption(noise_px=noise_px, missing_prob=missing_prob)
    rows, total = [], 0
    for i, take in enumerate(val):
        for kp, gt in evaluation_views(take, corruption=corruption, seed=seed + i):
            if max_frames is not None and total >= max_frames:
                break
            with torch.inference_mode():
                raw = lift_sequence(model, kp[None])[0].double().numpy()
            q = motion_quality(raw)
            consistent, _ = run_stage(raw)
            gt = gt.double().numpy()
            q.update(cv_truth=limb_length_cv(gt), jitter_truth=joint_jitter(gt),
                     mpjpe_raw_mm=float(np.linalg.norm(raw - gt, axis=-1).mean() * 1000),
                     mpjpe_consistent_mm=float(np.linalg.norm(consistent - gt, axis=-1).mean() * 1000))
            rows.append(q)
            total += len(raw)
    weights = np.array([r["frames"] for r in rows])
    keys = [k for k in rows[0] if k != "frames" and all(k in r for r in rows)]
    summary = {k: float(np.average([r[k] for r in rows], weights=weights)) for k in keys}
    return {"data": f"validation takes (subjects {', '.join(VALIDATION_SUBJECTS)}), 4 evaluation cameras each, "
                    f"{len(rows)} sequences, {total} frames",
            "corruption": {"noise_px_per_1000": noise_px, "missing_prob": missing_prob}, "seed": seed,
            "model": "model/weights/causal.pt (streamed = lift_sequence for a causal model)",
            "summary": summary, "sequences": rows}


def main(argv: list[str] | None = None) -> None:
    """``python -m poselift.bench.motion [OUT.json] [--time-only]``: the figures of README,
    Motion (``--time-only``: the stage time alone, printed, nothing written)."""
    import argparse
    import json
    import os

    from .hardware import cpu_model

    p = argparse.ArgumentParser(prog="python -m poselift.bench.motion",
                                description="What the motion stage costs per pose and what it does to limb "
                                            "lengths and jitter (README, Motion).")
    p.add_argument("out", nargs="?", default="bench/results/motion.json",
                   help="JSON to write (default bench/results/motion.json)")
    p.add_argument("--time-only", action="store_true",
                   help="only time the stage (2,000 rounds at 1 and 32 streams); print, write nothing")
    args = p.parse_args(argv)
    machine = f"{cpu_model()}, {os.cpu_count()} cores"
    # 2,000 rounds both ways: with the default 300 the stage timed 0.124 ms per pose at one
    # stream on an AMD EPYC where 2,000 gave 0.076, minutes apart (the first rounds are slower)
    if args.time_only:
        print(json.dumps({"stage_time": bench_motion(frames=TIMED_ROUNDS), "machine": machine}, indent=2))
        return
    result = {"stage_time": bench_motion(frames=TIMED_ROUNDS), "quality": validation_quality(), "machine": machine}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"stage_time": result["stage_time"], "quality": result["quality"]["summary"]}, indent=2))


if __name__ == "__main__":
    main()
