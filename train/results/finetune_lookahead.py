"""Issue 14: look-ahead models fine-tuned on the CPU from the shipped causal model.

``python train/results/finetune_lookahead.py F OUT.pt [STEPS [LR]]`` fine-tunes
model/weights/causal.pt into a model with F frames of look-ahead
(``TrainConfig.future_frames``; every F has the causal model's parameter shapes).
F = 0 with the identical procedure is the control: does the fine-tune itself cost accuracy?

Recipe (chosen not to cost clean accuracy, /work/notes-train.md part 5): the shipped
model's white-noise augmentation (4 px, 2 % missing joints, 0.002 swaps), no velocity loss,
no detector noise, dropout 0 (per-frame masks jitter chunk outputs), frozen batch norm
(small chunk batches give BN statistics far from the running ones), lr LR (default 1e-4; the
shipped lookahead1.pt/lookahead3.pt used 3e-5, which cost less accuracy), chunks of 16
output frames, batch 32, one body variant per take, seed 1, STEPS/50 epochs of 50 batches
(lr x0.95 per epoch; a checkpoint per epoch; ``--resume`` is the CLI equivalent). Weights stored in fp16.
Equivalent CLI: ``poselift train --init model/weights/causal.pt --future-frames F --channels 384
--dropout 0 --freeze-bn --lr 3e-5 --chunk 16 --batch-size 32 --variants 1 --noise-px 4
--missing-prob 0.02 --swap-prob 0.002 --epochs 4 --max-batches 50 --seed 1 --half --out OUT.pt``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from poselift.train.trainer import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


def config(future_frames: int, steps: int = 200, lr: float = 1e-4) -> TrainConfig:
    return TrainConfig(data=str(ROOT.parent / "shared" / "data" / "mocap" / "cmu"), filter_widths=(3, 3, 3, 3, 3),
                       future_frames=future_frames, channels=384, epochs=max(1, steps // 50), batch_size=32, chunk=16, lr=lr,
                       dropout=0.0, freeze_batch_norm=True, variants=1, noise_px=4.0, missing_prob=0.02,
                       swap_prob=0.002, max_batches_per_epoch=min(steps, 50), eval_cameras=1, seed=1,
                       init_from=str(ROOT / "model" / "weights" / "causal.pt"), half_weights=True)


def main(future_frames: int, out: str, steps: int = 200, lr: float = 1e-4) -> None:
    resume = Path(out + ".state.pt").exists()
    result = train(config(future_frames, steps, lr), out, resume=resume, device="cpu", plot=False, progress=True)
    print(json.dumps(result.history, indent=1))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 200,
         float(sys.argv[4]) if len(sys.argv) > 4 else 1e-4)
