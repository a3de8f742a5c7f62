"""The root that ``video`` fits to the full-context model's poses, with and without flip averaging.

``video`` publishes the pose fitted to the 2D (``model.root.root_from_pose``) as the root of
the full-context model, which has no trajectory network. This scores that root on the
validation takes (the protocol views of ``train/trajectory.py`` at 4, 6 and 8 m, true focal
length, clean 2D), once from the poses as streamed and once flip-averaged (``--flip-tta``).
The causal model's trajectory network is only used to fill the unused network slot.

``python train/results/root_flip_tta.py [--md OUT]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from poselift.bench.isolated import write_results
from poselift.model.checkpoint import load_checkpoint
from poselift.train.dataset import VALIDATION_SUBJECTS, load_takes
from poselift.train.trajectory import collect_root_predictions, format_root_table, score_root

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--md", default=str(Path(__file__).with_suffix(".md")))
    args = parser.parse_args()
    torch.set_num_threads(1)
    weights = ROOT / "model" / "weights"
    full, causal = load_checkpoint(weights / "full.pt"), load_checkpoint(weights / "causal.pt")
    takes = load_takes(ROOT.parent / "shared" / "data" / "mocap" / "cmu", subjects=set(VALIDATION_SUBJECTS),
                       progress=False)
    results = []
    for flip in (False, True):
        collected = collect_root_predictions(causal.trajectory_model, takes, pose_model=full.model, flip_tta=flip)
        results.append(("full-context poses, fitted" + (", --flip-tta" if flip else ""), score_root(collected, 1.0, "fitted")))
    table = format_root_table(results)
    write_results({label: r.to_dict() for label, r in results}, table + "\n", None, args.md)


if __name__ == "__main__":
    main()
