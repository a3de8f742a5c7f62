"""Issue 14 part 5: a short CPU fine-tune of the shipped causal model, new recipe vs control.

``python train/results/finetune_detector.py new OUT_DIR`` (detector noise up to 2 and a
velocity loss) or ``... control OUT_DIR`` (the shipped corruption and loss), both from
model/weights/causal.pt with the same procedure: chunks of 16, batch 32, 65 steps,
lr 2e-4, dropout 0 (per-frame dropout masks fight a velocity loss), frozen batch norm
(small batches of correlated chunks give BN statistics far from the running ones).
Then ``poselift eval OUT_DIR/new.pt --subjects 09,12,94 [--detector-noise 1]``.
Results: /work/notes-train.md (about 5 minutes per run on 2 busy cores).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from poselift.train.trainer import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


def main(variant: str, out_dir: str, steps: int = 65) -> None:
    common = dict(data=str(ROOT.parent / "shared" / "data" / "mocap" / "cmu"), filter_widths=(3, 3, 3, 3, 3),
                  causal=True, channels=384, epochs=1, batch_size=32, chunk=16, lr=2e-4, dropout=0.0,
                  freeze_batch_norm=True, variants=1, noise_px=4.0, missing_prob=0.02, swap_prob=0.002,
                  max_batches_per_epoch=steps, init_from=str(ROOT / "model" / "weights" / "causal.pt"),
                  eval_cameras=1, seed=1)
    extra = dict(detector_noise=2.0, velocity_loss_weight=1.0) if variant == "new" else {}
    result = train(TrainConfig(**common, **extra), Path(out_dir) / f"{variant}.pt", device="cpu", plot=False)
    print(json.dumps(result.history[-1]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
