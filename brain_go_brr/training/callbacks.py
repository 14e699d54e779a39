"""Checkpoint plumbing: atomic checkpoint files and the random state a resumed run needs.

What a checkpoint holds (Lightning's own keys plus ours), enough to continue a run exactly:
model weights, optimizer and scheduler state, epoch and global step, the loops' progress
(mid-epoch position included), the training loader's position in its epoch (the
DataModule's state, see :class:`~brain_go_brr.data.datamodule.TrainLoader`), the callbacks'
state (best score, early-stopping patience), the count of skipped non-finite steps, and the
torch / numpy / python random states (:class:`RandomStateCallback`). Everything is tensors
and plain Python values, so ``torch.load(path, weights_only=True)`` reads it.

Mid-epoch checkpoints: ``callbacks.last_checkpoint_mid_epoch.every_n_train_steps`` rewrites
``last.ckpt`` every N optimizer steps, so a killed run loses at most N steps; resume with
``ckpt_path=last``.
"""

from __future__ import annotations

import os
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from brain_go_brr.io import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary sibling and renames it into place.

    A run killed while saving leaves the previous checkpoint intact, never a truncated one.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"AtomicCheckpointIO takes no storage_options (got {storage_options!r})"
            )
        with atomic_open(path, "wb") as fh:
            torch.save(checkpoint, fh)


class RandomStateCallback(L.Callback):
    """Saves and restores the torch, numpy and python random states with each checkpoint.

    Stored as tensors and plain values (numpy's state array as an int64 tensor) so that the
    checkpoint still loads with ``weights_only=True``. Each rank restores the state saved
    by rank zero, which is what an uninterrupted single-process run would have.
    """

    def state_dict(self) -> dict[str, Any]:
        # The legacy global generator is the state to carry over (libraries still draw from it).
        kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
        version, mt_state, gauss_next = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "kind": str(kind),
                "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "gauss": float(gauss),
            },
            "python": {"version": version, "state": list(mt_state), "gauss_next": gauss_next},
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        np_state = state_dict["numpy"]
        np.random.set_state(  # noqa: NPY002
            (
                np_state["kind"],
                np_state["keys"].numpy().astype(np.uint32),
                np_state["pos"],
                np_state["has_gauss"],
                np_state["gauss"],
            )
        )
        py = state_dict["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class HardNegativeMining(L.Callback):
    """The channel between training and the DataModule's hard-negative sampler.

    After each training batch it hands the DataModule the highest probability the model gave
    each window (``window_max_prob`` of the training step's output) with
    :meth:`~brain_go_brr.data.datamodule.TUSZDataModule.observe_train_windows`; at the start
    of each epoch, before the epoch's windows are drawn, it commits the earlier observations
    with :meth:`~brain_go_brr.data.datamodule.TUSZDataModule.commit_train_observations` (on
    every DDP rank). ``train()`` adds it when ``data.sampling.hard_negative_share`` > 0.
    A step whose loss was not finite (no output) is not observed.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs before the epoch's first batch is drawn (the loader iterates lazily).
        trainer.datamodule.commit_train_observations(trainer.current_epoch)  # type: ignore[attr-defined]

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if not isinstance(outputs, dict) or "window_max_prob" not in outputs:
            return
        trainer.datamodule.observe_train_windows(  # type: ignore[attr-defined]
            batch["window"].cpu().numpy(),
            outputs["window_max_prob"].cpu().numpy(),
            trainer.current_epoch,
        )
