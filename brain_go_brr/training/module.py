"""The LightningModule: focal-loss training of an injected detector, whole-record validation.

Batches are the DataModule's dicts (``brain_go_brr.data.datamodule``)::

    x       (B, 19, 15360) float16   cast to float32 here, on the device
    y       (B, 15360)     float32   per-sample label in {0, 1}
    record  (B,)           int64     record index within the split
    start   (B,)           int64     window start in samples at 256 Hz
    window  (B,)           int64     window id (training: what hard-negative mining tracks)

Training: optional left-right mirroring of windows (``hemisphere_flip``,
:mod:`brain_go_brr.training.augment`), focal loss on per-sample logits, AdamW with parameter
groups and a per-step warm-up + cosine schedule (:mod:`brain_go_brr.training.optim`). A
non-finite loss skips the step on every rank (no backward, no optimizer update), is counted in
``train/nonfinite_steps``, and ``max_consecutive_nonfinite`` of them in a row stop the run
with :class:`NonFiniteLossError`. Each training step returns ``{"loss", "window_max_prob"}``:
the highest probability of each window, which the
:class:`~brain_go_brr.training.callbacks.HardNegativeMining` callback hands to the
DataModule when it mines hard negatives.

Validation works on whole dev recordings, never on separate windows:

1. each window's probabilities are added into its record's running sum and count
   (:class:`RecordAccumulator`), so memory grows with the recordings, not the windows;
2. at the end of the epoch every rank turns its (whole) records into stitched tracks; the
   tracks are gathered on rank zero (the DataModule gives each rank whole records);
3. rank zero post-processes and scores them with the project's scorer and broadcasts the
   numbers, so every rank logs the same values (only rank zero's logger writes).

Logged keys: ``train/loss``, ``train/lr``, ``train/nonfinite_steps``, ``val/loss``,
``val/auroc``, ``val/sens_at_{1,2.5,5,10}fa``, ``val/fa_per_24h`` (OVLP false alarms per
24 h at the configured post-processing), ``val/sensitivity`` (OVLP, same setting),
``val/n_records``, and ``val/sens_at_10fa_auroc`` = ``val/sens_at_10fa`` + 0.01 x
``val/auroc``: the 10 FA/24h sensitivity with ties broken by AUROC, for checkpoint
selection on a dev split so small that the sensitivity is the same (often 0) for many
epochs. The AUROC term never outweighs one seizure's share of the sensitivity on a dev
split of up to 100 seizures.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from brain_go_brr.config import plain
from brain_go_brr.post.postprocess import PostConfig
from brain_go_brr.post.stitch import RecordAccumulator
from brain_go_brr.scoring.metrics import FA_TARGETS, RecordTrack, fa_key, flatten, score_tracks
from brain_go_brr.training.augment import (
    check_probability,
    draw_mirror_mask,
    mirror_hemispheres,
)
from brain_go_brr.training.losses import FocalLoss
from brain_go_brr.training.optim import OptimConfig, build_adamw, build_scheduler

log = logging.getLogger(__name__)

#: Weight of val/auroc in val/sens_at_10fa_auroc: breaks ties, below one seizure in 100.
AUROC_TIE_BREAK = 0.01


class NonFiniteLossError(RuntimeError):
    """Too many consecutive training steps had a NaN or infinite loss."""


def _as(kind: Any, value: Any) -> Any:
    """``value`` as the dataclass ``kind``: itself, built from a (config) mapping, or the
    defaults for ``None``; a key ``kind`` lacks is a ValueError naming it."""
    if value is None:
        return kind()
    if isinstance(value, kind):
        return value
    try:
        return kind(**plain(value))
    except TypeError as exc:
        raise ValueError(f"{kind.__name__}: {exc}; see its fields in {kind.__module__}") from None


def _plain_preprocess(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """The preprocessing settings as plain JSON-like values (tuples become lists)."""
    from brain_go_brr.data.preprocess import PreprocessConfig

    cfg = PreprocessConfig.from_dict(values or {})
    return json.loads(json.dumps(asdict(cfg)))


class SeizureDetectorModule(L.LightningModule):
    """Trains and validates an injected per-sample seizure detector.

    Args:
        detector: ``(B, 19, T)`` float -> ``(B, T)`` logits (e.g. ``V3Detector``).
        optim: AdamW and schedule settings (an ``OptimConfig`` or its fields as a mapping).
        focal_alpha, focal_gamma: focal loss parameters.
        post: post-processing used for validation events (a ``PostConfig`` or a mapping).
        max_consecutive_nonfinite: this many non-finite losses in a row stop the run.
        n_example_traces: records plotted each validation epoch (those with seizures first).
        plots_dir: where validation PNGs go (``None``: no plots).
        model_config: the detector's config (``conf/model``), stored in checkpoints for
            evaluation.
        preprocess_config: the data's preprocessing (``data.preprocess``), stored in
            checkpoints for inference on new recordings.
        hemisphere_flip: probability that a training window has its hemispheres swapped
            (:mod:`brain_go_brr.training.augment`); 0 turns it off.
        seed: seeds the augmentation draws (with the global step and the rank).
    """

    def __init__(
        self,
        detector: nn.Module,
        optim: OptimConfig | Mapping[str, Any] | None = None,
        focal_alpha: float = 0.5,
        focal_gamma: float = 2.0,
        post: PostConfig | Mapping[str, Any] | None = None,
        max_consecutive_nonfinite: int = 20,
        n_example_traces: int = 3,
        plots_dir: str | Path | None = None,
        model_config: Mapping[str, Any] | None = None,
        preprocess_config: Mapping[str, Any] | None = None,
        hemisphere_flip: float = 0.0,
        seed: int = 0,
        bootstrap: int = 0,
    ) -> None:
        super().__init__()
        self.detector = detector
        self.optim_cfg = _as(OptimConfig, optim)
        self.loss_fn = FocalLoss(focal_alpha, focal_gamma)
        self.post_cfg = _as(PostConfig, post)
        model_config, preprocess_config = plain(model_config), plain(preprocess_config)
        self.max_consecutive_nonfinite = int(max_consecutive_nonfinite)
        self.n_example_traces = int(n_example_traces)
        self.plots_dir = Path(plots_dir) if plots_dir is not None else None
        self.hemisphere_flip = check_probability(hemisphere_flip)  # fails here, not mid-run
        self.seed = int(seed)
        self.bootstrap = int(bootstrap)  # resamples for the validation intervals; 0: off
        # Plain values only: checkpoints must load with torch.load(weights_only=True).
        self.save_hyperparameters(
            {
                "optim": {**asdict(self.optim_cfg), "betas": list(self.optim_cfg.betas)},
                "focal_alpha": focal_alpha,
                "focal_gamma": focal_gamma,
                "post": asdict(self.post_cfg),
                "max_consecutive_nonfinite": self.max_consecutive_nonfinite,
                "hemisphere_flip": self.hemisphere_flip,
                "seed": self.seed,
                "model": model_config or {},
                # what inference (detect, szcore) must apply to a new recording
                "preprocess": _plain_preprocess(preprocess_config),
            }
        )
        self.nonfinite_steps = 0
        self._nonfinite_run = 0
        # Every validation's logged figures, in order (kept in checkpoints): the figures of
        # the best checkpoint's epoch are read from here at the end of a run.
        self.val_history: list[dict[str, float]] = []
        self._val_acc: RecordAccumulator | None = None
        self._val_loss_sum = 0.0
        self._val_loss_windows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 19, T)`` -> ``(B, T)`` logits (input cast to float32)."""
        logits: torch.Tensor = self.detector(x.float())
        return logits

    # -- training ------------------------------------------------------------------------

    def training_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int
    ) -> dict[str, torch.Tensor] | None:
        x = batch["x"]  # (B, 19, T)
        if self.hemisphere_flip > 0:
            mask = draw_mirror_mask(
                self.hemisphere_flip, x.shape[0], self.seed, self.global_step, self.global_rank
            )
            x = mirror_hemispheres(x, mask)
        logits = self(x)  # (B, T)
        loss = self.loss_fn(logits.float(), batch["y"])
        finite = bool(torch.isfinite(loss).item())
        # Every rank must take the same branch, or DDP waits forever for missing gradients.
        bad = torch.tensor([0.0 if finite else 1.0], device=self.device)
        if self.trainer.world_size > 1:
            torch.distributed.all_reduce(bad)
        all_finite = bad.item() == 0.0
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True)
        if not all_finite:
            self.nonfinite_steps += 1
            self._nonfinite_run += 1
            self.log("train/nonfinite_steps", float(self.nonfinite_steps), on_step=True)
            log.warning(
                "step %d: non-finite training loss (%s on this rank); step skipped "
                "(%d in a row, %d in all)",
                self.global_step,
                loss.item(),
                self._nonfinite_run,
                self.nonfinite_steps,
            )
            if self._nonfinite_run >= self.max_consecutive_nonfinite:
                raise NonFiniteLossError(
                    f"{self._nonfinite_run} consecutive training steps had a non-finite loss "
                    f"(step {self.global_step}); the run is diverging. Lower optim.lr, keep "
                    "trainer.gradient_clip_val set, try trainer.precision=32-true, or check the "
                    "input cache for NaN (brain-go-brr prepare writes prepare_report.json); "
                    "module.max_consecutive_nonfinite sets the limit"
                )
            return None  # Lightning skips backward and the optimizer update
        self._nonfinite_run = 0
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/nonfinite_steps", float(self.nonfinite_steps), on_step=True)
        # (B,): what hard-negative mining keeps of each window (callbacks.HardNegativeMining)
        window_max_prob = torch.sigmoid(logits.detach().float().amax(dim=1))
        return {"loss": loss, "window_max_prob": window_max_prob}

    def configure_optimizers(self) -> Any:
        optimizer = build_adamw(self.detector, self.optim_cfg)
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = build_scheduler(optimizer, self.optim_cfg, total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["nonfinite_steps"] = self.nonfinite_steps
        checkpoint["val_history"] = [dict(row) for row in self.val_history]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite_steps = int(checkpoint.get("nonfinite_steps", 0))
        self.val_history = [dict(row) for row in checkpoint.get("val_history", [])]

    # -- validation ----------------------------------------------------------------------

    def _val_records(self) -> list[Any]:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "split_records"):
            raise RuntimeError(
                "validation needs the DataModule's split_records(): pass a TUSZDataModule "
                "to trainer.fit(datamodule=...)"
            )
        return list(dm.split_records(dm.splits["val"]))

    def on_validation_epoch_start(self) -> None:
        records = self._val_records()
        self._val_acc = RecordAccumulator([r.n_samples for r in records])
        self._val_loss_sum = 0.0
        self._val_loss_windows = 0

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if batch["x"].shape[0] == 0:
            return  # a DDP rank without dev records (EvalLoader): joins the gather only
        logits = self(batch["x"]).float()  # (B, T)
        loss = self.loss_fn(logits, batch["y"])
        n = int(logits.shape[0])
        self._val_loss_sum += float(loss) * n
        self._val_loss_windows += n
        assert self._val_acc is not None
        self._val_acc.add(
            torch.sigmoid(logits).cpu().numpy(),
            batch["record"].cpu().numpy(),
            batch["start"].cpu().numpy(),
        )

    def on_validation_epoch_end(self) -> None:
        assert self._val_acc is not None
        strategy = self.trainer.strategy
        local_tracks, local_partial = self._val_acc.complete_tracks()
        self._val_acc = None
        loss_stats = torch.tensor(
            [self._val_loss_sum, float(self._val_loss_windows)], dtype=torch.float64
        )
        if self.trainer.world_size > 1:
            loss_stats = strategy.reduce(loss_stats.to(self.device), reduce_op="sum").cpu()
            gathered = _gather_objects((local_tracks, local_partial))
        else:
            gathered = [(local_tracks, local_partial)]
        metrics: dict[str, float] = {}
        if self.trainer.is_global_zero:
            tracks: dict[int, np.ndarray] = {}
            partial: list[int] = []
            for t, p in gathered:
                tracks.update(t)
                partial.extend(p)
            metrics = self._score(tracks, partial)
        metrics = strategy.broadcast(metrics, src=0)
        windows = float(loss_stats[1])
        metrics["val/loss"] = float(loss_stats[0]) / windows if windows else math.nan
        self.log_dict(metrics, sync_dist=False)
        if not self.trainer.sanity_checking:
            self.val_history.append({"epoch": int(self.current_epoch), **metrics})

    def _score(self, tracks: dict[int, np.ndarray], partial: list[int]) -> dict[str, float]:
        """Post-process and score the stitched tracks (rank zero); plots when asked."""
        records = self._val_records()
        if partial:
            log.warning(
                "validation: %d record(s) only partly covered (limit_val_batches?) are left "
                "out of scoring; %d whole record(s) scored",
                len(partial),
                len(tracks),
            )
        if not tracks:
            log.warning("validation: no whole record was covered; sensitivities reported as 0")
            zero = {f"val/sens_at_{fa_key(r)}fa": 0.0 for r in FA_TARGETS}
            return {**zero, "val/auroc": math.nan, "val/fa_per_24h": math.nan,
                    "val/sensitivity": 0.0, "val/n_records": 0.0,
                    "val/sens_at_10fa_auroc": 0.0}  # fmt: skip
        inputs = [
            RecordTrack(
                record_id=records[r].record_id,
                subject=records[r].patient,
                duration_s=records[r].duration_s,
                reference=list(records[r].seizures),
                prob=track,
            )
            for r, track in sorted(tracks.items())
        ]
        result: dict[str, Any] = score_tracks(
            inputs, self.post_cfg, fa_targets=FA_TARGETS, n_resamples=self.bootstrap,
            seed=self.seed,
        )  # fmt: skip
        metrics = flatten(result, "val")  # sens_at_<k>fa is 0.0 where no threshold gets there
        metrics["val/auroc"] = _num(result.get("auroc"))  # NaN: dev subset without seizures
        metrics["val/sensitivity"] = _num(result["ovlp"]["sensitivity"])
        metrics["val/fa_per_24h"] = _num(result["ovlp"]["fa_per_24h"])
        metrics["val/n_records"] = float(len(inputs))
        auroc = metrics["val/auroc"]
        metrics["val/sens_at_10fa_auroc"] = metrics["val/sens_at_10fa"] + AUROC_TIE_BREAK * (
            0.0 if math.isnan(auroc) else auroc
        )
        if self.plots_dir is not None and not self.trainer.sanity_checking:
            self._plot(inputs, result)
        return metrics

    def _plot(self, inputs: Sequence[Any], result: dict[str, Any]) -> None:
        """The sensitivity-FA/24h curve and a few probability traces, as PNGs (+ W&B images)."""
        from brain_go_brr.post.postprocess import postprocess
        from brain_go_brr.scoring.plots import plot_record_trace, plot_sens_fa_curve

        assert self.plots_dir is not None
        epoch_dir = self.plots_dir / f"epoch_{self.current_epoch:03d}"
        paths: dict[str, Path] = {}
        curve = result.get("curve")
        if curve:
            paths["val/sens_fa_curve"] = plot_sens_fa_curve(
                {"ovlp": [(p["fa_per_24h"], p["sensitivity"]) for p in curve]},
                epoch_dir / "sens_fa_curve.png",
                fa_targets=FA_TARGETS,
            )
        with_seizures = [t for t in inputs if t.reference]
        examples = (with_seizures + [t for t in inputs if not t.reference])[: self.n_example_traces]
        for i, rec in enumerate(examples):
            paths[f"val/trace_{i}"] = plot_record_trace(
                rec.prob,
                rec.reference,
                postprocess(rec.prob, self.post_cfg),
                epoch_dir / f"trace_{rec.record_id}.png",
                tau_on=self.post_cfg.tau_on,
                tau_off=self.post_cfg.tau_off,
                title=f"{rec.record_id} (epoch {self.current_epoch})",
            )
        log_image = getattr(self.logger, "log_image", None)
        if log_image is not None:
            for key, path in paths.items():
                log_image(key=key, images=[str(path)], step=self.global_step)


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` on rank zero (a list in rank order; empty on other ranks)."""
    rank_zero = torch.distributed.get_rank() == 0
    out: list[Any] | None = [None] * torch.distributed.get_world_size() if rank_zero else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out or []
