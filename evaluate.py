"""Evaluate a checkpoint, or re-score cached probabilities: ``python evaluate.py ...``.

Examples::

    python evaluate.py ckpt_path=runs/demo/checkpoints/best.ckpt model=v3_tiny split=dev
    python evaluate.py ckpt_path=best.ckpt data=tusz data.root=/data/tusz split=dev
    python evaluate.py probs_dir=runs/eval/dev_2025-01-01_12-00-00 post.tau_on=0.9
    python evaluate.py probs_dir=RUN -m post.tau_on=0.80,0.84,0.88 post.tau_off=0.70,0.74,0.78
    python evaluate.py probs_dir=RUN -m hydra/sweeper=optuna hydra.sweeper.n_trials=30 \\
        'post.tau_on=interval(0.6,0.99)' 'post.closing_samples=range(11,101,10)'

Everything happens in :func:`brain_go_brr.evaluation.evaluate.evaluate`; this file only lets
Hydra compose ``conf/eval.yaml``, turns ``hardware=auto`` into this machine's preset, and
returns the objective to a sweeper.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from brain_go_brr.evaluation.evaluate import evaluate
from brain_go_brr.hardware import resolve_auto


@hydra.main(config_path="conf", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> float:
    return float(evaluate(cfg)["objective"])


def _multirun_flag_first(args: list[str]) -> list[str]:
    """Hydra's parser takes overrides only after its flags; the README writes
    ``evaluate.py probs_dir=RUN -m post.tau_on=...``, so move ``-m`` to the front."""
    flags = [a for a in args if a in ("-m", "--multirun")]
    return [*flags, *(a for a in args if a not in flags)]


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *_multirun_flag_first(resolve_auto(sys.argv[1:]))]
    main()
