"""Training and evaluating the root-trajectory model (depth over focal length).

The trajectory model is a causal :class:`TemporalModel` with one output joint whose z
channel predicts ``log q``, ``q = Z / f_n`` (root depth over the focal length in
normalised screen units, ``f_n = 2 f_px / w``); see ``model/root.py`` for why this is
what one image determines and how ``q`` becomes metres. The loss is the L1 distance of
``log q`` (for small errors the relative depth error ``|Z' - Z| / Z``, the paper's 1/z
weighting), plus a small term holding the unused x, y channels at 0.

Data: every window is seen through a fresh random virtual camera (train/cameras.py:
random yaw, distance, height, field of view, image size, lens distortion) with
detector-like corruption and flips, exactly as for the pose model; only the camera
distance range is widened to 2-10 m (:data:`ROOT_CAMERA_RANGES`).

The model is shipped inside a copy of a pose checkpoint (:func:`ship_trajectory`): the
pose entries are copied untouched, ``trajectory`` holds the new model and
``meta["trajectory"]`` says its target (``model.root.TRAJECTORY_META``).

Command line (thin)::

    python -m poselift.train.trajectory train --out root.pt [--epochs 8 ...] [--resume]
    python -m poselift.train.trajectory calibrate root.pt.state.pt --out root.pt   # re-ship a run's weights
    python -m poselift.train.trajectory eval root.pt [--json out.json]
    python -m poselift.train.trajectory ship root.pt --base model/weights/causal.pt --out causal.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from poselift.model import ModelConfig, TemporalModel, lift_sequence, resolve_device
from poselift.model.checkpoint import (FORMAT_NAME, FORMAT_VERSION, CheckpointError, atomic_torch_save,
                                       load_checkpoint, read_raw)
from poselift.model.root import (TRAJECTORY_META, depth_over_focal_from_output, fuse_roots, root_from_depth,
                                 root_from_pose)

from .cameras import (CameraRanges, Corruption, corrupt_keypoints, fixed_cameras, normalize_pixels,
                      project_to_pixels, world_to_camera)
from .dataset import VALIDATION_SUBJECTS, Take, load_takes, split_takes
from .generators import Batch, WindowSampler
from .trainer import StoredConfig, bn_momentum, state_path

STATE_FORMAT = "poselift-root-training-state"
ROOT_CAMERA_RANGES = dataclasses.replace(CameraRanges(), distance=(2.0, 10.0))
EVAL_DISTANCES: tuple[float, ...] = (4.0, 6.0, 8.0)
DEPTH_BINS: tuple[tuple[float, float], ...] = ((2.0, 4.0), (4.0, 6.0), (6.0, 8.0), (8.0, 10.0))


@dataclass
class RootTrainConfig(StoredConfig):
    """Everything a trajectory training run depends on (stored with the weights)."""

    data: str
    filter_widths: tuple[int, ...] = (3, 3, 3, 3)
    channels: int = 256
    dropout: float = 0.25
    fps: float = 30.0
    epochs: int = 8
    batch_size: int = 1024
    lr: float = 1e-3
    lr_decay: float = 0.9
    bn_momentum_start: float = 0.1
    bn_momentum_end: float = 0.001
    flip: bool = True
    variants: int = 8
    noise_px: float = 4.0
    missing_prob: float = 0.02
    swap_prob: float = 0.002
    distortion: bool = True
    distance: tuple[float, float] = (2.0, 10.0)
    xy_weight: float = 0.1
    seed: int = 0
    validation_subjects: tuple[str, ...] = VALIDATION_SUBJECTS
    train_subjects: tuple[str, ...] = ()
    max_batches_per_epoch: int = 0
    eval_cameras: int = 4
    calibrate_batches: int = 20  # 0: ship the raw weights (see train/root_calibration.py)

    def model_config(self) -> ModelConfig:
        return ModelConfig(filter_widths=tuple(self.filter_widths), causal=True, channels=self.channels,
                           dropout=self.dropout, num_joints_out=1)

    def camera_ranges(self) -> CameraRanges:
        return dataclasses.replace(CameraRanges(), distance=tuple(self.distance))



# ----------------------------------------------------------------------------- targets
def depth_target(batch: Batch) -> torch.Tensor:
    """``q = Z / f_n`` (B, K) for a batch: root depth over the normalised focal length (fx)."""
    return batch.trajectory[..., 0, 2] / batch.intrinsics[:, None, 0]


def root_loss(output: torch.Tensor, q: torch.Tensor, xy_weight: float = 0.1) -> dict[str, torch.Tensor]:
    """``output`` (B, K, 1, 3) raw network output, ``q`` (B, K) targets. L1 of log q
    (relative depth error for small errors) plus ``xy_weight`` x L1 of the unused channels."""
    losses = {"log_q": (output[..., 0, 2] - torch.log(q)).abs().mean()}
    if xy_weight:
        losses["xy"] = xy_weight * output[..., 0, :2].abs().mean()
    return losses


# ----------------------------------------------------------------------------- training
def _seed_epoch(cfg: RootTrainConfig, epoch: int, device: torch.device) -> torch.Generator:
    seed = cfg.seed * 100_003 + epoch + 7
    torch.manual_seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


class RootTrainer:
    """The trajectory model, its optimizer and sampler; see :func:`train_root`."""

    def __init__(self, config: RootTrainConfig, device: str | torch.device | None = "cpu",
                 takes: list[Take] | None = None, progress: bool = True) -> None:
        self.config = config
        self.device = resolve_device(device)
        self.progress = progress
        if takes is None:
            takes = load_takes(config.data, fps=config.fps, variants=config.variants, seed=config.seed,
                               progress=progress)
        train_takes, self.val_takes = split_takes(takes, tuple(config.validation_subjects))
        if config.train_subjects:
            train_takes = [t for t in train_takes if t.subject in set(config.train_subjects)]
        if not train_takes:
            raise ValueError("no training takes left after the validation split")
        torch.manual_seed(config.seed)
        self.model = TemporalModel(config.model_config()).to(self.device)
        corruption = Corruption(config.noise_px, config.missing_prob, config.swap_prob, random_strength=True)
        self.sampler = WindowSampler(train_takes, self.model.receptive_field(), True, 1, self.device, config.flip,
                                     corruption, camera_ranges=config.camera_ranges(), distortion=config.distortion)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, amsgrad=True)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []

    def train_epoch(self) -> dict[str, Any]:
        cfg = self.config
        gen = _seed_epoch(cfg, self.epoch, self.device)
        lr = cfg.lr * cfg.lr_decay ** self.epoch
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        momentum = bn_momentum(cfg, self.epoch)
        self.model.set_bn_momentum(momentum)
        self.model.train()
        net = self.model.strided_twin()
        n_batches = self.sampler.batches_per_epoch(cfg.batch_size)
        if cfg.max_batches_per_epoch:
            n_batches = min(n_batches, cfg.max_batches_per_epoch)
        totals: dict[str, float] = {}
        rel = 0.0
        start = time.perf_counter()
        bar = tqdm(range(n_batches), desc=f"root epoch {self.epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not self.progress, mininterval=10.0)
        for _ in bar:
            batch = self.sampler.sample(cfg.batch_size, gen)
            v = batch.valid
            out = net(batch.inputs[v])
            q = depth_target(batch)[v]
            losses = root_loss(out, q, cfg.xy_weight)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} in epoch {self.epoch + 1}; lower --lr?")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            for k, val in losses.items():
                totals[k] = totals.get(k, 0.0) + val.item()
            with torch.no_grad():
                r = ((out[..., 0, 2].exp() - q).abs() / q).mean().item()
            rel += r
            bar.set_postfix(depth_rel=f"{r:.3f}")
        record: dict[str, Any] = {"epoch": self.epoch + 1, "lr": lr, "bn_momentum": momentum, "batches": n_batches,
                                  "seconds": time.perf_counter() - start, "train_depth_rel": rel / n_batches}
        record.update({f"loss_{k}": val / n_batches for k, val in totals.items()})
        return record

    def state_dict(self) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "format_version": 1, "config": self.config.to_dict(),
                "model": {k: v.cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "epoch": self.epoch, "history": self.history}

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        if state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{source}: not a poselift root training state file")
        saved = RootTrainConfig.from_dict(state["config"])
        mine = dataclasses.replace(self.config, epochs=saved.epochs, data=saved.data,
                                   calibrate_batches=saved.calibrate_batches)
        if saved != mine:
            diff = [f.name for f in dataclasses.fields(RootTrainConfig) if getattr(saved, f.name) != getattr(mine, f.name)]
            raise CheckpointError(f"{source}: cannot resume: the run was started with different settings: {diff}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])


def train_root(config: RootTrainConfig, out: str | Path, base_checkpoint: str | Path | None = None,
               resume: bool = False, device: str | None = "cpu", takes: list[Take] | None = None,
               progress: bool = True, validate: bool = True) -> RootTrainer:
    """Train the trajectory model; every epoch writes ``out`` (a copy of ``base_checkpoint``,
    default the shipped causal model, with this trajectory model, see :func:`ship_trajectory`)
    and ``out.state.pt`` (for ``resume``), both atomically."""
    from poselift.model.commands import default_checkpoint

    out = Path(out)
    base = Path(base_checkpoint) if base_checkpoint is not None else default_checkpoint("causal")
    trainer = RootTrainer(config, device, takes, progress)
    if resume:
        sp = state_path(out)
        if not sp.exists():
            raise FileNotFoundError(f"{sp}: no training state to resume from")
        trainer.load_state_dict(read_raw(sp), str(sp))
        if progress:
            print(f"resuming after epoch {trainer.epoch} of {config.epochs}", flush=True)
    while trainer.epoch < config.epochs:
        record = trainer.train_epoch()
        if validate and trainer.val_takes:
            trainer.model.eval()
            ev = evaluate_root(trainer.model, trainer.val_takes, distances=(6.0,), cameras=config.eval_cameras,
                               device=trainer.device)
            record.update({"val_root_m": ev.overall["root_m"], "val_depth_rel": ev.overall["depth_rel"]})
        trainer.epoch += 1
        trainer.history.append(record)
        atomic_torch_save(trainer.state_dict(), state_path(out))
        ship_calibrated(trainer, base, out)
        if progress:
            msg = (f"root epoch {record['epoch']}: log-q loss {record['loss_log_q']:.4f}, train depth error "
                   f"{record['train_depth_rel'] * 100:.1f}%, {record['seconds']:.0f} s")
            if "val_root_m" in record:
                msg += f"; validation (6 m) root {record['val_root_m']:.3f} m, depth {record['val_depth_rel'] * 100:.1f}%"
            print(msg, flush=True)
    return trainer


# ----------------------------------------------------------------------------- shipping
def ship_calibrated(trainer: RootTrainer, base: str | Path, out: str | Path) -> dict[str, Any]:
    """Ship a calibrated copy of the trainer's model (the model in training is left
    alone); returns the training record written into ``meta["trajectory"]["training"]``."""
    import copy

    from .root_calibration import calibrate

    cfg = trainer.config
    model = trainer.model
    training: dict[str, Any] = {"config": cfg.to_dict(), "epochs_done": trainer.epoch, "history": trainer.history}
    if cfg.calibrate_batches:
        model = copy.deepcopy(trainer.model)
        training["calibration"] = calibrate(model, trainer.sampler, cfg.calibrate_batches,
                                            min(cfg.batch_size, 1024))
    ship_trajectory(base, model, out, training=training)
    return training


def ship_trajectory(base_checkpoint: str | Path, trajectory_model: TemporalModel, out: str | Path,
                    training: dict[str, Any] | None = None, half: bool = True) -> None:
    """Write ``out``: ``base_checkpoint`` with its pose entries copied untouched and
    ``trajectory`` = ``trajectory_model`` (fp16 storage with ``half``), and
    ``meta["trajectory"]`` = :data:`model.root.TRAJECTORY_META` plus ``training``."""
    raw = read_raw(base_checkpoint)
    if raw.get("format") != FORMAT_NAME or raw.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{base_checkpoint}: not a poselift checkpoint of format version {FORMAT_VERSION}")
    base_cfg = ModelConfig.from_dict(raw["config"])
    tcfg = trajectory_model.config
    if tcfg.causal != base_cfg.causal or (not tcfg.causal and tcfg.receptive_field != base_cfg.receptive_field):
        raise ValueError("the trajectory model must have the pose model's latency (both causal, or the same RF)")
    sd = {k: v.detach().cpu().clone() for k, v in trajectory_model.state_dict().items()}
    if half:
        sd = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
    meta = dict(raw.get("meta") or {})
    meta["trajectory"] = {**TRAJECTORY_META, "training": dict(training or {})}
    raw["meta"] = meta
    raw["trajectory"] = {"config": tcfg.to_dict(), "state_dict": sd}
    atomic_torch_save(raw, out)


# ----------------------------------------------------------------------------- evaluation
@dataclass
class RootView:
    """One take seen by one camera: model input, true root and the camera's intrinsics."""

    name: str
    keypoints: torch.Tensor  # (T, 17, 2) normalised screen units
    root: np.ndarray  # (T, 3) true pelvis, camera metres
    focal_px: float
    size: tuple[int, int]
    in_view: np.ndarray  # (T,) bool: every joint in front of the camera and inside the image
    distance: float
    pose: np.ndarray | None = None  # (T, 17, 3) the true joints, camera metres, root-relative


def root_views(take: Take, distance: float = 6.0, cameras: int = 4, corruption: Corruption = Corruption(),
               seed: int = 0, size: tuple[int, int] = (1280, 720), fov_deg: float = 60.0) -> list[RootView]:
    """A take seen by the fixed protocol cameras (train/cameras.py ``fixed_cameras``: yaw
    0/90/180/270 degrees, ``distance`` m from the take's mean root, 1.6 m high, aimed at
    1.0 m, no distortion, principal point at the centre), keeping the root position."""
    from poselift.model.skeleton import flip_permutation

    world = torch.from_numpy(take.positions).double()
    centre = world[:, 0].mean(dim=0)
    centre[1] = 0.0
    cams = fixed_cameras(centre, count=cameras, distance=distance, size=size, fov_deg=fov_deg)
    g = torch.Generator().manual_seed(seed)
    perm = torch.from_numpy(flip_permutation())
    views = []
    for c in range(cameras):
        cam = world_to_camera(world[None], cams[c:c + 1])
        clean = project_to_pixels(cam, cams[c:c + 1])
        px = corrupt_keypoints(clean, cams.size[c:c + 1], corruption, perm, g)
        w, h = size
        inside = ((clean[0, ..., 0] >= 0) & (clean[0, ..., 0] <= w) & (clean[0, ..., 1] >= 0) & (clean[0, ..., 1] <= h)
                  & (cam[0, ..., 2] > 0.5)).all(dim=1)
        views.append(RootView(f"{take.name}@{c}", normalize_pixels(px, cams.size[c:c + 1])[0].float(),
                              cam[0, :, 0].numpy(), float(cams.focal[c, 0]), size, inside.numpy(), distance,
                              (cam[0] - cam[0, :, :1]).numpy()))
    return views


@dataclass
class RootEvaluation:
    """Root errors: ``root_m`` mean 3D distance (m), ``depth_m`` mean |dZ| (m), ``depth_rel``
    mean |dZ| / Z, ``frames``; ``overall``, per true-depth bin and per camera distance."""

    overall: dict[str, float]
    bins: dict[str, dict[str, float]] = field(default_factory=dict)
    per_distance: dict[str, dict[str, float]] = field(default_factory=dict)
    focal_scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _summary(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    if len(gt) == 0:
        return {"frames": 0}
    dz = np.abs(pred[:, 2] - gt[:, 2])
    return {"frames": int(len(gt)), "root_m": float(np.linalg.norm(pred - gt, axis=1).mean()),
            "depth_m": float(dz.mean()), "depth_rel": float((dz / gt[:, 2]).mean()),
            "depth_bias_rel": float(((pred[:, 2] - gt[:, 2]) / gt[:, 2]).mean()),
            "xy_m": float(np.linalg.norm(pred[:, :2] - gt[:, :2], axis=1).mean())}


def predict_root(model: TemporalModel, keypoints: torch.Tensor, focal_px: float, size: tuple[int, int],
                 device: str | torch.device = "cpu") -> np.ndarray:
    """(T, 17, 2) normalised keypoints -> (T, 3) root in camera metres, causal as the stream runs."""
    out = lift_sequence(model, keypoints[None], device=device)[0].cpu()
    return root_from_depth(depth_over_focal_from_output(out).double().numpy(), keypoints[:, 0].double().numpy(),
                           focal_px, size[0], size[1])


#: How :func:`score_root` turns a view's predictions into a root: the trajectory network's
#: depth alone, the pose fitted to the 2D joints (:func:`poselift.model.root.root_from_pose`),
#: or their blend (:func:`poselift.model.root.fuse_roots`, what the stream publishes).
ROOT_METHODS: tuple[str, ...] = ("network", "fitted", "fused")


@dataclass
class RootPrediction:
    """One view's predictions: the trajectory network's ``q`` (T,) and the pose model's
    root-relative joints (T, 17, 3) (None without a pose model), both causal as the stream runs."""

    view: RootView
    q: np.ndarray
    pose: np.ndarray | None = None


def collect_root_predictions(model: TemporalModel, takes: list[Take], distances: tuple[float, ...] = EVAL_DISTANCES,
                             cameras: int = 4, corruption: Corruption = Corruption(),
                             device: str | torch.device = "cpu", seed: int = 0,
                             pose_model: TemporalModel | None = None,
                             flip_tta: bool = False) -> list[RootPrediction]:
    """Every protocol view at every distance with the trajectory model's predicted q (T,) and,
    given ``pose_model``, its root-relative poses (T, 17, 3); causal, as the stream runs.
    ``flip_tta``: both flip-averaged, as ``--flip-tta`` streams them."""
    model = model.eval()
    pose_model = pose_model.eval() if pose_model is not None else None
    out = []
    for d in tqdm(distances, desc="root views", unit="distance", leave=False):
        for i, take in enumerate(takes):
            for v in root_views(take, d, cameras, corruption, seed + i):
                raw = lift_sequence(model, v.keypoints[None], device=device, flip_tta=flip_tta)[0].cpu()
                pose = (lift_sequence(pose_model, v.keypoints[None], device=device,
                                      flip_tta=flip_tta)[0].cpu().double().numpy()
                        if pose_model is not None else None)
                out.append(RootPrediction(v, depth_over_focal_from_output(raw).double().numpy(), pose))
    return out


def predicted_root(p: RootPrediction, focal_px: float, method: str = "network") -> np.ndarray:
    """(T, 3) camera metres for one view, decoded with ``focal_px`` by ``method`` (:data:`ROOT_METHODS`)."""
    if method not in ROOT_METHODS:
        raise ValueError(f"unknown root method {method!r}; choose from {', '.join(ROOT_METHODS)}")
    kp = p.view.keypoints.double().numpy()
    network = root_from_depth(p.q, kp[:, 0], focal_px, *p.view.size)
    if method == "network":
        return network
    if p.pose is None:
        raise ValueError(f"root method {method!r} needs the pose model's predictions")
    fitted = root_from_pose(p.pose, kp, focal_px, *p.view.size)
    return fitted if method == "fitted" else fuse_roots(network, fitted)


def score_root(collected: list[RootPrediction], focal_scale: float = 1.0, method: str = "network") -> RootEvaluation:
    """Root errors of collected predictions decoded with the true focal length times
    ``focal_scale``, by ``method`` (:data:`ROOT_METHODS`)."""
    preds, gts, dists = [], [], []
    for p in collected:
        v = p.view
        pred = predicted_root(p, v.focal_px * focal_scale, method)
        preds.append(pred[v.in_view])
        gts.append(v.root[v.in_view])
        dists.append(np.full(int(v.in_view.sum()), v.distance))
    pred, gt, dist = np.concatenate(preds), np.concatenate(gts), np.concatenate(dists)
    result = RootEvaluation(_summary(pred, gt), focal_scale=focal_scale)
    for lo, hi in DEPTH_BINS:
        m = (gt[:, 2] >= lo) & (gt[:, 2] < hi)
        result.bins[f"{lo:g}-{hi:g} m"] = _summary(pred[m], gt[m])
    m = (gt[:, 2] >= 4.0) & (gt[:, 2] <= 8.0)
    result.bins["4-8 m (all)"] = _summary(pred[m], gt[m])
    for d in sorted(set(dist.tolist())):
        result.per_distance[f"{d:g} m"] = _summary(pred[dist == d], gt[dist == d])
    return result


def evaluate_root(model: TemporalModel, takes: list[Take], distances: tuple[float, ...] = EVAL_DISTANCES,
                  cameras: int = 4, corruption: Corruption = Corruption(), focal_scale: float = 1.0,
                  device: str | torch.device = "cpu", seed: int = 0) -> RootEvaluation:
    """Root error on ``takes`` seen by the protocol cameras at each of ``distances``; the
    focal length stated to the decoder is the true one times ``focal_scale``. Frames in
    which some joint is outside the image or behind the camera are left out (a detector
    would not see them). Bins are by the true depth Z."""
    return score_root(collect_root_predictions(model, takes, distances, cameras, corruption, device, seed), focal_scale)


def format_root_table(results: list[tuple[str, RootEvaluation]]) -> str:
    """Markdown table: one row per (label, depth bin)."""
    lines = ["| setting | depth bin / camera | frames | root error m | depth error m | depth error % | depth bias % | x,y error m |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in results:
        rows = [("all", r.overall)] + list(r.bins.items()) + [(f"camera at {k}", v) for k, v in r.per_distance.items()]
        for name, s in rows:
            if not s.get("frames"):
                continue
            lines.append(f"| {label} | {name} | {s['frames']} | {s['root_m']:.3f} | {s['depth_m']:.3f} | "
                         f"{s['depth_rel'] * 100:.1f} | {s['depth_bias_rel'] * 100:+.1f} | {s['xy_m']:.3f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    from .commands import DEFAULT_MOCAP

    p = argparse.ArgumentParser(prog="python -m poselift.train.trajectory",
                                description="Train, evaluate and ship the root-trajectory (depth over focal) model.")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", default=str(DEFAULT_MOCAP))
    t.add_argument("--out", required=True)
    t.add_argument("--base", default=None, help="pose checkpoint to copy (default: the shipped causal model)")
    t.add_argument("--arch", default="3,3,3,3")
    t.add_argument("--channels", type=int, default=256)
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--batch-size", type=int, default=1024)
    t.add_argument("--variants", type=int, default=8)
    t.add_argument("--max-batches", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--resume", action="store_true")
    e = sub.add_parser("eval")
    e.add_argument("checkpoint")
    e.add_argument("--data", default=str(DEFAULT_MOCAP))
    e.add_argument("--noise-px", type=float, default=0.0)
    e.add_argument("--missing-prob", type=float, default=0.0)
    e.add_argument("--focal-scales", default="1.0,0.8,1.2")
    e.add_argument("--methods", default="fused,network,fitted",
                   help="root estimates to score: " + ", ".join(ROOT_METHODS) + " (fused is what the stream publishes)")
    e.add_argument("--flip-tta", action="store_true", help="flip-average both networks, as --flip-tta streams them")
    e.add_argument("--json")
    c = sub.add_parser("calibrate", help="calibrate the fp32 weights of a run's state file and ship them")
    c.add_argument("state", help="OUT.state.pt of a train run")
    c.add_argument("--data", default=str(DEFAULT_MOCAP))
    c.add_argument("--base", default=None)
    c.add_argument("--out", required=True)
    c.add_argument("--batches", type=int, default=30)
    s = sub.add_parser("ship")
    s.add_argument("trained", help="a checkpoint with a depth-over-focal trajectory model")
    s.add_argument("--base", required=True)
    s.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.cmd == "train":
        torch.set_num_threads(args.threads)
        cfg = RootTrainConfig(data=args.data, filter_widths=tuple(int(w) for w in args.arch.split(",")),
                              channels=args.channels, epochs=args.epochs, batch_size=args.batch_size,
                              variants=args.variants, max_batches_per_epoch=args.max_batches)
        train_root(cfg, args.out, args.base, resume=args.resume)
        print(f"wrote {args.out}")
    elif args.cmd == "eval":
        ckpt = load_checkpoint(args.checkpoint)
        if ckpt.trajectory_model is None:
            raise SystemExit(f"{args.checkpoint}: no trajectory model")
        takes = load_takes(args.data, fps=ckpt.fps, subjects=set(VALIDATION_SUBJECTS), progress=False)
        corruption = Corruption(args.noise_px, args.missing_prob)
        collected = collect_root_predictions(ckpt.trajectory_model, takes, corruption=corruption,
                                             pose_model=ckpt.model, flip_tta=args.flip_tta)
        results = []
        for method in args.methods.split(","):
            for scale in (float(x) for x in args.focal_scales.split(",")):
                label = ("true focal" if scale == 1.0 else f"focal x{scale:g}") + f", {method}"
                results.append((label, score_root(collected, scale, method)))
        print(format_root_table(results))
        if args.json:
            Path(args.json).write_text(json.dumps({k: r.to_dict() for k, r in results}, indent=2))
    elif args.cmd == "calibrate":
        from poselift.model.commands import default_checkpoint

        torch.set_num_threads(1)
        state = read_raw(args.state)
        cfg = dataclasses.replace(RootTrainConfig.from_dict(state["config"]), data=args.data,
                                  calibrate_batches=args.batches)
        trainer = RootTrainer(cfg, "cpu", progress=False)
        trainer.load_state_dict(state, args.state)
        training = ship_calibrated(trainer, args.base or default_checkpoint("causal"), args.out)
        print(json.dumps(training["calibration"], indent=1))
        print(f"wrote {args.out}")
    else:
        ckpt = load_checkpoint(args.trained)
        if ckpt.trajectory_model is None:
            raise SystemExit(f"{args.trained}: no trajectory model")
        ship_trajectory(args.base, ckpt.trajectory_model, args.out,
                        training=(ckpt.meta.get("trajectory") or {}).get("training"))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
