"""``train(cfg) -> metrics``: everything ``python train.py`` does, callable from tests.

The config is ``conf/train.yaml`` composed by Hydra. This is the only place (with
``train.py``) that reads it: ``hydra.utils.instantiate`` builds the DataModule from
``cfg.data``, the detector from ``cfg.model`` and the LightningModule from ``cfg.module``
(handing it the detector), each from the class its group names; no key is mapped by hand.

Run folder (``paths.output_dir``, by default ``runs/<run_name>``)::

    metrics.json            the best checkpoint's validation figures, the last ones, paths
    checkpoints/best.ckpt   best val/sens_at_10fa so far
    checkpoints/last.ckpt   end of the last epoch, or the last mid-epoch save
    plots/epoch_NNN/        validation sensitivity-FA curve and example traces
    config.yaml             the resolved config
    model_summary.txt       live parameters per top-level block
    wandb/ or csv/          logger output

``ckpt_path=last`` resumes from ``checkpoints/last.ckpt`` of the same run folder (same
``run_name``); any other value is a checkpoint path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from brain_go_brr import accel
from brain_go_brr.config import plain
from brain_go_brr.inference import CheckpointMismatchError, load_detector
from brain_go_brr.io import atomic_write_json, atomic_write_text
from brain_go_brr.training.callbacks import (
    AtomicCheckpointIO,
    HardNegativeMining,
    RandomStateCallback,
)
from brain_go_brr.training.module import SeizureDetectorModule

log = logging.getLogger(__name__)

CKPT_SUBDIR = "checkpoints"
LAST_CKPT = "last.ckpt"
BEST_CKPT = "best.ckpt"


def model_summary(model: nn.Module) -> str:
    """Trainable parameters per top-level block and in total (the honest live count)."""
    lines = [f"{'block':<24}{'parameters':>14}"]
    total = 0
    for name, child in model.named_children():
        n = sum(p.numel() for p in child.parameters() if p.requires_grad)
        total += n
        lines.append(f"{name:<24}{n:>14,}")
    own = sum(p.numel() for p in model.parameters(recurse=False) if p.requires_grad)
    if own:
        lines.append(f"{'(own)':<24}{own:>14,}")
        total += own
    lines.append(f"{'total':<24}{total:>14,}")
    return "\n".join(lines)


def resolve_ckpt_path(ckpt_path: str | None, ckpt_dir: Path) -> str | None:
    """``None`` (fresh start), ``last`` -> ``ckpt_dir/last.ckpt``, or an existing path."""
    if ckpt_path in (None, ""):
        return None
    path = ckpt_dir / LAST_CKPT if ckpt_path == "last" else Path(str(ckpt_path)).expanduser()
    if not path.is_file():
        hint = (
            f"no {LAST_CKPT} in {ckpt_dir}: resume with the run_name (and paths.root) of the "
            "run to continue, or drop ckpt_path to start fresh"
            if ckpt_path == "last"
            else "check the path, or use ckpt_path=last to continue this run"
        )
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: {path} not found; {hint}")
    return str(path)


def _check_fresh_start(ckpt_dir: Path, ckpt_path: str | None) -> None:
    if ckpt_path is None and (ckpt_dir / LAST_CKPT).exists():
        raise FileExistsError(
            f"{ckpt_dir} already holds checkpoints of an earlier run; continue it with "
            "ckpt_path=last, or start a new run with another run_name (or delete the folder)"
        )


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """The loggers of ``cfg.logger`` (a mapping of name -> instantiable config; may be empty)."""
    return [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c]


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The ``callbacks`` group, the random-state callback, and hard-negative mining when
    ``data.sampling.hard_negative_share`` > 0."""
    configs = (cfg.get("callbacks") or {}).values()
    callbacks = [hydra.utils.instantiate(c) for c in configs if c is not None]
    share = float(OmegaConf.select(cfg, "data.sampling.hard_negative_share", default=0.0) or 0.0)
    mining = [HardNegativeMining()] if share > 0 else []
    return [*callbacks, RandomStateCallback(), *mining]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the detector ``cfg`` describes; returns the final logged metrics.

    The returned dict holds every ``train/*`` and ``val/*`` number logged last (floats),
    plus ``best_ckpt_path`` and ``last_ckpt_path`` (strings, empty when not written).
    """
    from brain_go_brr.runtime import tune_cpu_allocator

    tune_cpu_allocator()

    output_dir = Path(cfg.paths.output_dir)
    ckpt_dir = output_dir / CKPT_SUBDIR
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), ckpt_dir)
    _check_fresh_start(ckpt_dir, ckpt_path)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    L.seed_everything(int(cfg.seed), workers=True)
    if cfg.hardware.get("matmul_precision"):
        torch.set_float32_matmul_precision(str(cfg.hardware.matmul_precision))

    # The groups name their classes (_target_): data=synthetic generates on first use.
    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data, _convert_="all")
    # Validation runs without gradients: there the CPU kernels of brain_go_brr.accel run;
    # training steps take the plain PyTorch forward (BGB_ACCEL=0: plain everywhere).
    detector: nn.Module = accel.accelerate(hydra.utils.instantiate(cfg.model))
    summary = model_summary(detector)
    log.info("model %s\n%s", type(detector).__name__, summary)
    atomic_write_text(output_dir / "model_summary.txt", summary + "\n")
    module: SeizureDetectorModule = hydra.utils.instantiate(cfg.module, detector=detector)

    loggers = build_loggers(cfg)
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=build_callbacks(cfg),
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
    )
    for lg in trainer.loggers:
        lg.log_hyperparams(
            {
                "config": plain(cfg),
                "model/parameters": sum(p.numel() for p in detector.parameters()),
            }
        )

    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    finally:
        # A later run in this process (tests, sweeps) must be able to start its own group.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    metrics: dict[str, Any] = {
        k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1
    }
    best, last = ckpt_dir / BEST_CKPT, ckpt_dir / LAST_CKPT
    metrics["best_ckpt_path"] = str(best) if best.exists() else ""
    metrics["last_ckpt_path"] = str(last) if last.exists() else ""
    if trainer.is_global_zero:
        atomic_write_json(output_dir / "metrics.json", run_summary(cfg, trainer, module, metrics))
    return metrics


def run_summary(
    cfg: DictConfig, trainer: L.Trainer, module: SeizureDetectorModule, final: dict[str, Any]
) -> dict[str, Any]:
    """What ``metrics.json`` of a run folder holds: the validation figures of the best
    checkpoint's epoch (``best``), the last logged values (``final``) and the checkpoints.
    The seed summary of a multirun (``seed_summary.md``) reads ``best``."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    best_epoch: dict[str, Any] | None = None
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, ModelCheckpoint) and cb.monitor and module.val_history:
            monitor = str(cb.monitor)
            rows = [r for r in module.val_history if monitor in r]
            if rows:
                sign = 1.0 if cb.mode == "max" else -1.0
                best_epoch = max(rows, key=lambda r: sign * float(r[monitor]))
                break  # the first row of the best value: the one the checkpoint kept
    return {
        "run_name": str(cfg.get("run_name")),
        "seed": int(cfg.seed),
        "best": best_epoch,
        "final": {k: v for k, v in final.items() if isinstance(v, float)},
        "best_ckpt_path": final["best_ckpt_path"],
        "last_ckpt_path": final["last_ckpt_path"],
    }


__all__ = ["CheckpointMismatchError", "load_detector", "train"]
