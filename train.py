"""Train the seizure detector: ``python train.py [group=option ...] [key=value ...]``.

Examples::

    python train.py experiment=smoke                      # a minute on a CPU
    python train.py hardware=rtx4090 data=tusz data.root=/data/tusz
    python train.py experiment=smoke ckpt_path=last       # continue the smoke run
    python train.py -m hparams_search=optuna experiment=smoke hydra.sweeper.n_trials=2

Everything happens in :func:`brain_go_brr.training.train`; this file only lets Hydra
compose ``conf/train.yaml`` and turns ``hardware=auto`` into this machine's preset.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from brain_go_brr.hardware import resolve_auto
from brain_go_brr.training import train


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    # A sweeper optimises the returned value; a plain run ignores it.
    value = metrics.get(str(cfg.optimized_metric))
    return float(value) if value is not None else None


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *resolve_auto(sys.argv[1:])]
    main()
