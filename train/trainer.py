"""Training: supervised and semi-supervised (back-projection), causal and full-context.

Follows the paper's recipe, every part configurable in :class:`TrainConfig`: Amsgrad,
learning rate 1e-3 decayed x0.95 per epoch, batch-norm momentum decayed exponentially
from 0.1 to 0.001, dropout 0.25, flip augmentation. With ``chunk == 1`` the strided twin
is trained (one output frame per window); with ``chunk > 1`` the dilated model is trained
on chunks of consecutive output frames, which costs less per output frame and is what
the coherence terms need: ``velocity_loss_weight`` / ``acceleration_loss_weight`` add the
error of the first / second time differences over the chunk next to MPJPE, so jitter
costs something (MPJPE alone scores frames one by one). ``detector_noise`` adds the
time-correlated detector corruption of train/corruption.py (docs/corruption.md).
``ema_decay`` validates and saves an exponential moving average of the pose model's
weights (torch.optim.swa_utils) instead of the last step's.

Semi-supervised: labelled takes give the 3D loss and the trajectory model's weighted
(1/z) loss; unlabelled takes give only 2D and camera intrinsics. After the warm-up
epochs their predicted pose plus trajectory is projected (with distortion) and compared
with the input 2D at the *output* frames (causal windows end there, symmetric ones are
centred), plus the bone-length term between labelled and unlabelled predictions.

Every epoch writes, atomically, the model checkpoint (``out``) and the training state
(``out`` + ``.state.pt``); ``resume=True`` continues bit-for-bit (on the CPU) because
every epoch re-seeds its random streams from (seed, epoch).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from poselift.model import ModelConfig, TemporalModel, resolve_device
from poselift.model.checkpoint import CheckpointError, atomic_torch_save, read_raw, save_checkpoint
from poselift.model.skeleton import H36M_PARENTS

from .cameras import Corruption
from .corruption import DetectorNoise
from .dataset import VALIDATION_SUBJECTS, Take, load_takes, split_takes
from .evaluate import EvaluationResult, evaluate_takes
from .generators import Batch, WindowSampler
from .metrics import bone_length_loss, mpjpe, temporal_difference_loss, weighted_mpjpe

STATE_FORMAT = "poselift-training-state"


class StoredConfig:
    """JSON-safe round trip of a config dataclass, as stored in checkpoints and state files:
    tuples are written as lists and read back as tuples; unknown keys (a newer or older
    writer's) are ignored, missing ones take their defaults."""

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})


@dataclass
class TrainConfig(StoredConfig):
    """Everything a training run depends on; stored in the checkpoint and the state file."""

    data: str
    filter_widths: tuple[int, ...] = (3, 3, 3, 3, 3)
    causal: bool = False
    channels: int = 1024
    dropout: float = 0.25
    fps: float = 30.0
    epochs: int = 10
    batch_size: int = 1024
    chunk: int = 1
    lr: float = 1e-3
    lr_decay: float = 0.95
    bn_momentum_start: float = 0.1
    bn_momentum_end: float = 0.001
    flip: bool = True
    variants: int = 8
    noise_px: float = 0.0
    missing_prob: float = 0.0
    swap_prob: float = 0.0
    distortion: bool = True
    seed: int = 0
    validation_subjects: tuple[str, ...] = VALIDATION_SUBJECTS
    eval_cameras: int = 4
    max_batches_per_epoch: int = 0  # 0 = a full epoch
    train_subjects: tuple[str, ...] = ()  # empty: every non-validation subject
    semi_supervised: bool = False
    labeled_subjects: tuple[str, ...] = ()
    warmup_epochs: int = 1
    bone_loss_weight: float = 1.0
    detector_noise: float = 0.0  # max per-window strength of train.corruption.DetectorNoise (0 = off)
    velocity_loss_weight: float = 0.0  # weight of the velocity error term (needs chunk >= 2)
    acceleration_loss_weight: float = 0.0  # weight of the acceleration error term (needs chunk >= 3)
    val_detector_noise: float = 0.0  # also validate with DetectorNoise at this strength (0 = clean only)
    init_from: str = ""  # fine-tune: start from this checkpoint's weights (same architecture)
    freeze_batch_norm: bool = False  # keep BN running statistics fixed (small-batch fine-tuning)
    half_weights: bool = False  # store the final model checkpoint in fp16
    future_frames: int | None = None  # look-ahead F (frames after the output frame); None: 0 if causal else (RF-1)/2
    ema_decay: float = 0.0  # exponential moving average of the pose model's weights per step (0 = off)

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.future_frames is not None:  # F decides causality; keep the two fields consistent
            self.future_frames = int(self.future_frames)
            self.causal = self.future_frames == 0

    def corruption(self) -> Corruption:
        """The training corruption: the white-noise model plus, if set, the detector model
        with a strength drawn per window (clean windows included)."""
        detector = DetectorNoise(self.detector_noise, random_strength=True) if self.detector_noise > 0 else None
        return Corruption(self.noise_px, self.missing_prob, self.swap_prob, random_strength=True, detector=detector)

    def model_config(self, joints_out: int = 17) -> ModelConfig:
        return ModelConfig(filter_widths=tuple(self.filter_widths), causal=self.causal, channels=self.channels,
                           dropout=self.dropout, num_joints_out=joints_out, future_frames=self.future_frames)



@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    final: EvaluationResult | None = None


def state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state.pt")


def bn_momentum(config: TrainConfig, epoch: int) -> float:
    """Exponential decay from start to end over the run."""
    if config.epochs <= 1:
        return config.bn_momentum_start
    ratio = config.bn_momentum_end / config.bn_momentum_start
    return config.bn_momentum_start * ratio ** (epoch / (config.epochs - 1))


def _seed_epoch(config: TrainConfig, epoch: int, device: torch.device) -> torch.Generator:
    """Every epoch re-seeds from (seed, epoch): resuming replays the same random streams.
    The generator lives on the training device so batches are drawn there."""
    seed = config.seed * 100_003 + epoch
    torch.manual_seed(seed)  # dropout
    return torch.Generator(device=device).manual_seed(seed)


class Trainer:
    """Holds the models, optimizer and samplers of one run. Use :func:`train` for the CLI path."""

    def __init__(self, config: TrainConfig, device: str | torch.device | None = None,
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
        if config.init_from:
            self._load_initial_weights(config.init_from)
        self.trajectory_model: TemporalModel | None = None
        params = list(self.model.parameters())
        rf = self.model.receptive_field()
        for weight, order in ((config.velocity_loss_weight, 1), (config.acceleration_loss_weight, 2)):
            if weight > 0 and config.chunk <= order:
                raise ValueError(f"a {'velocity' if order == 1 else 'acceleration'} loss needs consecutive output "
                                 f"frames: use --chunk > {order} (got {config.chunk})")
        corruption = config.corruption()

        def sampler(ts: list[Take]) -> WindowSampler:
            return WindowSampler(ts, rf, config.causal, config.chunk, self.device, config.flip, corruption,
                                 distortion=config.distortion, future_frames=self.model.config.future_frames)

        if config.semi_supervised:
            labeled = [t for t in train_takes if t.subject in set(config.labeled_subjects)]
            unlabeled = [t for t in train_takes if t.subject not in set(config.labeled_subjects)]
            if not labeled or not unlabeled:
                raise ValueError("semi-supervised training needs both labelled and unlabelled training subjects "
                                 f"(labelled: {list(config.labeled_subjects)})")
            self.sampler = sampler(labeled)
            self.unlabeled_sampler: WindowSampler | None = sampler(unlabeled)
            self.trajectory_model = TemporalModel(config.model_config(joints_out=1)).to(self.device)
            params += list(self.trajectory_model.parameters())
        else:
            self.sampler = sampler(train_takes)
            self.unlabeled_sampler = None
        self.optimizer = torch.optim.Adam(params, lr=config.lr, amsgrad=True)
        # Polyak averaging: validation and the saved checkpoint use the average of the weights
        # over the last ~1/(1 - decay) steps, not the last step's, which small fine-tuning
        # batches leave several millimetres of P1 apart from epoch to epoch
        self.ema: AveragedModel | None = None
        if config.ema_decay > 0:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay),
                                     use_buffers=True)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self._train_mpjve: torch.Tensor | None = None  # last batch's MPJVE (chunk > 1), for the log

    def _load_initial_weights(self, path: str) -> None:
        """Fine-tuning starts from a checkpoint's weights; its architecture must be the one configured."""
        from poselift.model import load_checkpoint

        loaded = load_checkpoint(path).model
        # dropout and look-ahead may differ: every future_frames variant has the same parameter shapes
        # (ModelConfig.with_future_frames), so a causal model is a starting point for a look-ahead one
        # (both sides normalised alike: at a receptive field of 1, F = 0 is causal and symmetric
        # at once, so a single-frame model's stored causal flag must not count)
        mine = self.model.config.with_future_frames(self.model.config.future_frames)
        try:
            same = dataclasses.replace(loaded.config.with_future_frames(mine.future_frames), dropout=mine.dropout) == mine
        except ValueError:  # a look-ahead the loaded filter widths cannot have: another architecture
            same = False
        if not same:
            raise ValueError(f"{path}: its architecture {loaded.config} differs from the configured "
                             f"{mine}; pass the same --arch/--channels (dropout and --future-frames may differ)")
        self.model.load_state_dict({k: v.to(self.device) for k, v in loaded.state_dict().items()})

    # ------------------------------------------------------------------ forward
    def _net(self, model: TemporalModel):
        return model.strided_twin() if self.config.chunk == 1 else model

    def _losses(self, batch: Batch, unlabeled: Batch | None) -> dict[str, torch.Tensor]:
        valid = batch.valid
        pose = self._net(self.model)(batch.inputs[valid])
        target = batch.targets[valid]
        losses = {"pose": mpjpe(pose, target)}
        if self.config.velocity_loss_weight > 0:
            losses["velocity"] = self.config.velocity_loss_weight * temporal_difference_loss(pose, target, 1)
        if self.config.acceleration_loss_weight > 0:
            losses["acceleration"] = self.config.acceleration_loss_weight * temporal_difference_loss(pose, target, 2)
        if pose.shape[1] > 1:  # monitored, not optimised: the batch's MPJVE
            self._train_mpjve = temporal_difference_loss(pose.detach(), target, 1)
        if self.trajectory_model is not None:
            traj = self._net(self.trajectory_model)(batch.inputs[valid])
            depth = batch.trajectory[valid][..., 2]
            losses["trajectory"] = weighted_mpjpe(traj, batch.trajectory[valid], 1.0 / depth)
        if unlabeled is not None and self.trajectory_model is not None:
            from .cameras import project_normalized

            u_valid = unlabeled.valid
            pose_u = self._net(self.model)(unlabeled.inputs[u_valid])
            traj_u = self._net(self.trajectory_model)(unlabeled.inputs[u_valid])
            reproj = project_normalized(pose_u + traj_u, unlabeled.intrinsics[u_valid])
            losses["reprojection"] = mpjpe(reproj, unlabeled.inputs_at_targets[u_valid])
            losses["bone"] = self.config.bone_loss_weight * bone_length_loss(pose, pose_u, H36M_PARENTS)
        return losses

    # ------------------------------------------------------------------- epochs
    def train_epoch(self) -> dict[str, Any]:
        cfg = self.config
        gen = _seed_epoch(cfg, self.epoch, self.device)
        lr = cfg.lr * cfg.lr_decay ** self.epoch
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        momentum = bn_momentum(cfg, self.epoch)
        for m in (self.model, self.trajectory_model):
            if m is not None:
                m.set_bn_momentum(momentum)
                m.train()
                if cfg.freeze_batch_norm:
                    freeze_batch_norm(m)
        n_batches = self.sampler.batches_per_epoch(cfg.batch_size)
        if cfg.max_batches_per_epoch:
            n_batches = min(n_batches, cfg.max_batches_per_epoch)
        semi_active = self.unlabeled_sampler is not None and self.epoch >= cfg.warmup_epochs
        totals: dict[str, float] = {}
        mpjve_total = 0.0
        self._train_mpjve: torch.Tensor | None = None
        start = time.perf_counter()
        bar = tqdm(range(n_batches), desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not self.progress, leave=False)
        for _ in bar:
            batch = self.sampler.sample(cfg.batch_size, gen)
            unlabeled = self.unlabeled_sampler.sample(cfg.batch_size, gen) if semi_active else None
            losses = self._losses(batch, unlabeled)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} in epoch {self.epoch + 1}; lower --lr?")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + v.item()
            if self._train_mpjve is not None:
                mpjve_total += self._train_mpjve.item()
            bar.set_postfix(pose_mm=f"{losses['pose'].item() * 1e3:.1f}")
        record: dict[str, Any] = {"epoch": self.epoch + 1, "lr": lr, "bn_momentum": momentum,
                                  "seconds": time.perf_counter() - start, "batches": n_batches}
        record.update({f"loss_{k}": v / n_batches for k, v in totals.items()})
        if self._train_mpjve is not None:
            record["train_mpjve"] = mpjve_total / n_batches
        return record

    @property
    def result_model(self) -> TemporalModel:
        """The model that is validated and saved: the weight average when ``ema_decay`` is set."""
        return self.model if self.ema is None else self.ema.module

    def validate(self) -> EvaluationResult | None:
        if not self.val_takes:
            return None
        self.result_model.eval()
        return evaluate_takes(self.result_model, self.val_takes, self.device, cameras_per_take=self.config.eval_cameras)

    def validate_noisy(self) -> EvaluationResult | None:
        """Validation with the detector corruption at ``val_detector_noise`` (seeded, the
        same every epoch), or None when that is off."""
        if not self.val_takes or self.config.val_detector_noise <= 0:
            return None
        self.result_model.eval()
        corruption = Corruption(detector=DetectorNoise(self.config.val_detector_noise))
        return evaluate_takes(self.result_model, self.val_takes, self.device, corruption,
                              cameras_per_take=self.config.eval_cameras)

    # ------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "format_version": 1,
            "train_config": self.config.to_dict(),
            "model": {k: v.cpu() for k, v in self.model.state_dict().items()},
            "trajectory": None if self.trajectory_model is None
            else {k: v.cpu() for k, v in self.trajectory_model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "ema": None if self.ema is None else {k: v.cpu() for k, v in self.ema.state_dict().items()},
            "epoch": self.epoch,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        if state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{source}: not a poselift training state file")
        saved = TrainConfig.from_dict(state["train_config"])
        mine = dataclasses.replace(self.config, epochs=saved.epochs, data=saved.data)
        if saved != mine:
            diff = [f.name for f in dataclasses.fields(TrainConfig) if getattr(saved, f.name) != getattr(mine, f.name)]
            raise CheckpointError(f"{source}: cannot resume: the run was started with different settings: {diff}")
        self.model.load_state_dict(state["model"])
        if self.trajectory_model is not None and state.get("trajectory"):
            self.trajectory_model.load_state_dict(state["trajectory"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])

    def save(self, out: Path, final: EvaluationResult | None = None) -> None:
        atomic_torch_save(self.state_dict(), state_path(out))
        training = {"config": self.config.to_dict(), "epochs_done": self.epoch}
        if self.history:
            last = self.history[-1]
            training["validation"] = {k: last[k] for k in ("val_mpjpe", "val_p_mpjpe", "val_n_mpjpe", "val_mpjve",
                                                           "val_noisy_mpjpe", "val_noisy_mpjve") if k in last}
        save_checkpoint(out, self.result_model, fps=self.config.fps, training=training,
                        trajectory_model=self.trajectory_model, half=self.config.half_weights)


def freeze_batch_norm(model: torch.nn.Module) -> None:
    """Put every batch-norm layer in eval mode: normalise with the running statistics and
    leave them as they are. Fine-tuning a model trained as the strided twin on small
    batches of chunks needs this: a few dozen chunk samples give batch statistics far
    from the running ones (their frames are correlated), and updating them moves the
    model away from what it learnt (the affine weights still train)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def train(config: TrainConfig, out: str | Path, resume: bool = False, device: str | None = None,
          takes: list[Take] | None = None, progress: bool = True, plot: bool = True) -> TrainResult:
    """Train, validating and checkpointing every epoch. Ctrl-C keeps the last epoch's
    checkpoint, saves the interrupted weights beside it and returns ``interrupted=True``."""
    out = Path(out)
    trainer = Trainer(config, device, takes, progress)
    if resume:
        sp = state_path(out)
        if not sp.exists():
            raise FileNotFoundError(f"{sp}: no training state to resume from")
        trainer.load_state_dict(read_raw(sp), str(sp))
        if progress:
            print(f"resuming after epoch {trainer.epoch} of {config.epochs}")
    result = TrainResult(out, trainer.history)
    try:
        while trainer.epoch < config.epochs:
            record = trainer.train_epoch()
            val = trainer.validate()
            if val is not None:
                record.update({f"val_{k}": getattr(val, k) for k in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve")})
            noisy = trainer.validate_noisy()
            if noisy is not None:
                record.update({f"val_noisy_{k}": getattr(noisy, k) for k in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve")})
            trainer.epoch += 1
            trainer.history.append(record)
            trainer.save(out)
            result.final = val
            if progress:
                msg = f"epoch {record['epoch']}: loss {record['loss_pose'] * 1e3:.1f} mm"
                if "train_mpjve" in record:
                    msg += f", MPJVE {record['train_mpjve'] * 1e3:.2f} mm/frame"
                msg += f", {record['seconds']:.0f} s"
                if val is not None:
                    msg += (f"; validation P1 {val.mpjpe * 1e3:.1f} mm, P2 {val.p_mpjpe * 1e3:.1f} mm, "
                            f"MPJVE {val.mpjve * 1e3:.2f} mm/frame")
                if noisy is not None:
                    msg += f"; detector-noisy P1 {noisy.mpjpe * 1e3:.1f} mm, MPJVE {noisy.mpjve * 1e3:.2f} mm/frame"
                tqdm.write(msg)
            if plot:
                plot_curves(trainer.history, out.with_name(out.name + ".curves.png"))
    except KeyboardInterrupt:
        snapshot = out.with_name(out.name + ".interrupted.pt")
        save_checkpoint(snapshot, trainer.model, fps=config.fps, training={"interrupted_in_epoch": trainer.epoch + 1})
        print(f"\ninterrupted in epoch {trainer.epoch + 1}: last complete epoch kept in {out} "
              f"(resume with --resume); weights at interruption saved to {snapshot}")
        result.interrupted = True
    result.history = trainer.history
    return result


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Training loss and validation metrics per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [h["loss_pose"] * 1e3 for h in history], "o-", label="train loss (MPJPE)")
    for key, label in (("val_mpjpe", "validation P1"), ("val_p_mpjpe", "validation P2")):
        if key in history[0]:
            ax.plot(epochs, [h[key] * 1e3 for h in history], "o-", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mm")
    ax.grid(alpha=0.3)
    if "val_mpjve" in history[0]:
        ax2 = ax.twinx()
        ax2.plot(epochs, [h["val_mpjve"] * 1e3 for h in history], "s--", color="gray", label="validation MPJVE")
        ax2.set_ylabel("MPJVE mm/frame")
        ax2.legend(loc="upper center")
    ax.legend(loc="upper right")
    ax.set_title(f"training curves ({path.name.replace('.curves.png', '')})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

