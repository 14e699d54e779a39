"""``TUSZDataModule``: balanced training windows and whole-record evaluation over the cache.

Batches (every loader) are dicts::

    x       (B, 19, 15360) float16   60 s at 256 Hz, cast to float on the device by the model
    y       (B, 15360)     float32   per-sample seizure label in {0, 1}
    record  (B,)           int64     record index within the split (``split_records(split)[i]``)
    start   (B,)           int64     window start in samples at 256 Hz
    window  (B,)           int64     row of the split's window table (training: the sampler's id)

Training windows (``train`` split, every ``train_stride_s``) follow the balanced recipe of
:mod:`brain_go_brr.data.sampling`, redrawn every epoch from ``(seed, epoch)``, each DDP rank
a disjoint equal share; with ``hard_negative_share`` > 0 part of the background is chosen
by how seizure-like the model found it (a
:class:`~brain_go_brr.data.sampling.HardNegativeMemory`, fed through
:meth:`TUSZDataModule.observe_train_windows` by the
:class:`~brain_go_brr.training.callbacks.HardNegativeMining` callback). Validation (``dev``) and test
(``eval``) windows cover every sample of every whole record in order: windows every
``eval_stride_s``, the last one aligned to the record's end, a record shorter than a window
gives one zero-padded window. Under DDP each rank evaluates whole records (see
:class:`~brain_go_brr.data.sampling.EvalBatchSampler`).

A batch is assembled at once by :class:`WindowBatchDataset` (a sampler yields the window ids
of a whole batch), with one copy per window out of the memory-mapped cache.

Resuming mid-epoch: the training loader (:class:`TrainLoader`) counts the batches it has
handed out in its epoch; the DataModule's ``state_dict`` carries that position into every
checkpoint, and ``load_state_dict`` (called by Lightning when it restores one) makes the
sampler start that epoch after those batches, so a resumed run trains on exactly the
batches an uninterrupted one would; the hard-negative memory travels the same way. Under
DDP a rank without any validation windows still gets one empty batch (:class:`EvalLoader`).

Hydra configs (``conf/data/*.yaml``) build this class with ``hydra.utils.instantiate``: their
keys are its arguments, and a ``source`` makes it prepare the cache first
(:func:`brain_go_brr.data.prepare.ensure_prepared`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from brain_go_brr.data.cache import SFREQ, RecordInfo, SplitCache
from brain_go_brr.data.channels import N_CHANNELS
from brain_go_brr.data.sampling import (
    BalancedBatchSampler,
    EvalBatchSampler,
    HardNegativeMemory,
    WindowTable,
    eval_windows,
    train_windows,
)


def _batch_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor; in a DataLoader worker, directly in shared memory.

    A worker's batch travels to the main process through shared memory; a tensor allocated
    there already is sent as is, where an ordinary one is copied into a new segment first.
    """
    tensor = torch.empty(shape, dtype=dtype)
    return tensor.share_memory_() if get_worker_info() is not None else tensor


class WindowBatchDataset(Dataset[dict[str, torch.Tensor]]):
    """Whole batches of windows of one split: ``dataset[ids]`` with ``ids`` (B,) window ids."""

    def __init__(self, cache: SplitCache, table: WindowTable, window_samples: int) -> None:
        self.cache = cache
        self.table = table
        self.window_samples = window_samples

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, ids: np.ndarray) -> dict[str, torch.Tensor]:
        ids = np.asarray(ids, dtype=np.int64)
        records, starts = self.table.record[ids], self.table.start[ids]  # (B,), (B,)
        w = self.window_samples
        x_t = _batch_tensor((ids.size, N_CHANNELS, w), torch.float16)  # (B, 19, W)
        y_t = _batch_tensor((ids.size, w), torch.float32)  # (B, W)
        x, y = x_t.numpy(), y_t.numpy()
        for b, (r, s) in enumerate(zip(records.tolist(), starts.tolist(), strict=True)):
            signals, labels = self.cache.signals(r), self.cache.labels(r)
            stop = min(s + w, signals.shape[1])
            x[b, :, : stop - s] = signals[:, s:stop]
            y[b, : stop - s] = labels[s:stop]
            if stop - s < w:  # a record shorter than one window: zero padding
                x[b, :, stop - s :] = 0
                y[b, stop - s :] = 0
        return {
            "x": x_t,
            "y": y_t,
            "record": torch.from_numpy(records),
            "start": torch.from_numpy(starts),
            "window": torch.from_numpy(ids),
        }


class TrainLoader(DataLoader[Any]):
    """The training DataLoader (over a :class:`BalancedBatchSampler`), resumable mid-epoch.

    ``state_dict()`` is ``{"epoch": e, "batches_served": n}``: the batches handed to the
    training loop so far in epoch ``e``, counted as they leave the loader (batches that
    workers prefetched but the loop has not taken are not counted). ``load_state_dict`` makes
    the sampler serve epoch ``e`` without its first ``n`` batches (they are never read); other
    epochs stay whole.

    Lightning recognises the two methods (it stores this state with its loop state and does
    not warn that a mid-epoch resume is inexact) but hands the state back only to a loader
    it builds after restoring its loops; ``configure_optimizers`` builds it earlier (for
    ``trainer.estimated_stepping_batches``). So the DataModule's own ``state_dict`` /
    ``load_state_dict``, which Lightning restores before building any loader, carry it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epoch = 0
        self.batches_served = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # A generator: nothing runs (and the sampler draws nothing) until the first batch is
        # asked for, after Lightning has called set_epoch for this epoch.
        sampler = self.sampler
        assert isinstance(sampler, BalancedBatchSampler)
        self.epoch = sampler.epoch
        self.batches_served = sampler.first_batch(sampler.epoch)
        for batch in super().__iter__():
            self.batches_served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_served": self.batches_served}

    def load_state_dict(self, state_dict: Mapping[str, int]) -> None:
        sampler = self.sampler
        assert isinstance(sampler, BalancedBatchSampler)
        sampler.resume_at(int(state_dict["epoch"]), int(state_dict["batches_served"]))


class EvalLoader(DataLoader[Any]):
    """A validation/test DataLoader that yields one batch of zero windows when it has none.

    Under DDP each rank validates whole records, so with fewer records than ranks a rank may
    have no window at all. Lightning skips the whole validation loop, hooks included, on a
    rank whose loader is empty; that rank would never join the epoch-end gather of stitched
    tracks and its peers would wait for it forever. The empty batch is the dataset's own
    ``dataset[[]]`` (``x`` (0, 19, W) and so on), which ``validation_step`` passes over.
    """

    def __len__(self) -> int:
        return max(1, super().__len__())

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        if super().__len__() == 0:
            yield self.dataset[np.zeros(0, dtype=np.int64)]
            return
        yield from super().__iter__()


#: Defaults of the ``sampling`` and ``splits`` mappings (``conf/data/tusz.yaml``).
_SAMPLING: dict[str, float] = {
    "full_per_partial": 0.3,
    "background_per_partial": 2.5,
    "hard_negative_share": 0.0,
}
_SPLITS: dict[str, str] = {"train": "train", "val": "dev", "test": "eval"}


def _named(given: Mapping[str, Any] | None, defaults: dict[str, Any], key: str) -> dict[str, Any]:
    """``defaults`` updated by ``given``; a name not among the defaults is an error."""
    unknown = sorted(set(given or {}) - set(defaults))
    if unknown:
        raise ValueError(
            f"{key}: unknown key(s) {unknown}; the known ones are {sorted(defaults)} "
            "(conf/data/tusz.yaml)"
        )
    return {**defaults, **dict(given or {})}


class TUSZDataModule(L.LightningDataModule):
    """Windows of a prepared cache (see the module docstring for batches and sampling).

    Built by ``hydra.utils.instantiate`` from a ``conf/data/*.yaml`` group, whose keys are
    these arguments; or directly on a cache folder (``TUSZDataModule(cache_dir)``).

    Args:
        cache_dir: folder written by ``brain-go-brr prepare``; with ``source`` given, where
            the cache goes (``None``: the default place for that source).
        batch_size: training windows per batch (per rank).
        eval_batch_size: windows per validation/test batch (default: ``batch_size``).
        num_workers: DataLoader worker processes (0: load in the main process).
        pin_memory: pin batches for faster host-to-GPU copies.
        seed: seed of the balanced draws (epoch ``e`` uses ``(seed, e)``).
        window_s: window length in seconds (60 s = 15360 samples).
        train_stride_s: stride of the training windows in seconds.
        eval_stride_s: stride of the validation/test windows in seconds.
        sampling: the balanced epoch, any of ``full_per_partial`` (fully-seizure windows per
            partly-seizure window, default 0.3), ``background_per_partial`` (background
            windows per partly-seizure window, 2.5) and ``hard_negative_share`` (share of
            the background taken where the model's last highest probability was highest,
            not uniformly; 0, the default, turns it off).
        splits: cache split names of the ``train``, ``val`` and ``test`` stages (default
            ``train``, ``dev``, ``eval``).
        source: ``synthetic``, ``tusz`` or ``bids``: prepare that corpus first
            (:func:`brain_go_brr.data.prepare.ensure_prepared`, which returns at once when
            the cache is ready); ``None``: ``cache_dir`` is already prepared.
        root: the corpus folder (only with ``source``; ``conf/data/tusz.yaml`` documents
            this and the next four).
        preprocess: the preprocessing the cache is prepared with.
        synthetic: ``n_patients``, ``hours`` and ``seed`` of a synthetic corpus.
        bids: how a BIDS dataset is split into patient-disjoint splits.
        prepare_workers: processes for preparing (``None``: all cores).
    """

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        window_s: float = 60.0,
        train_stride_s: float = 10.0,
        eval_stride_s: float = 30.0,
        sampling: Mapping[str, float] | None = None,
        splits: Mapping[str, str] | None = None,
        source: str | None = None,
        root: str | Path | None = None,
        preprocess: Mapping[str, Any] | None = None,
        synthetic: Mapping[str, Any] | None = None,
        bids: Mapping[str, Any] | None = None,
        prepare_workers: int | None = None,
    ) -> None:
        super().__init__()
        if source is not None:
            from brain_go_brr.data.prepare import ensure_prepared

            corpus = {
                "source": source,
                "root": root,
                "cache_dir": cache_dir,
                "preprocess": preprocess,
                "synthetic": synthetic,
                "bids": bids,
                "prepare_workers": prepare_workers,
                "splits": _named(splits, _SPLITS, "data.splits"),
            }
            cache_dir = ensure_prepared(corpus)  # data=synthetic generates on first use
        elif cache_dir is None:
            raise ValueError(
                "TUSZDataModule needs a prepared cache_dir, or a source (synthetic, tusz, bids) "
                "to prepare: python train.py data=synthetic, or data=tusz data.root=PATH"
            )
        self.cache_dir = Path(cache_dir)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.seed = int(seed)
        # Seconds stay seconds up to here; samples from here on.
        self.window_samples = round(window_s * SFREQ)
        self.train_stride_samples = round(train_stride_s * SFREQ)
        self.eval_stride_samples = round(eval_stride_s * SFREQ)
        if min(self.window_samples, self.train_stride_samples, self.eval_stride_samples) <= 0:
            raise ValueError(
                f"window_s={window_s}, train_stride_s={train_stride_s} and "
                f"eval_stride_s={eval_stride_s} must all be positive"
            )
        if self.eval_stride_samples > self.window_samples:
            raise ValueError(
                f"eval_stride_s={eval_stride_s} is longer than window_s={window_s}: evaluation "
                "windows would leave samples uncovered; use a stride <= the window"
            )
        draw = {k: float(v) for k, v in _named(sampling, _SAMPLING, "data.sampling").items()}
        self.full_per_partial = draw["full_per_partial"]
        self.background_per_partial = draw["background_per_partial"]
        self.hard_negative_share = draw["hard_negative_share"]
        self.splits = {k: str(v) for k, v in _named(splits, _SPLITS, "data.splits").items()}
        self._caches: dict[str, SplitCache] = {}
        self._train: tuple[WindowTable, np.ndarray] | None = None
        self._train_loader: TrainLoader | None = None
        self._train_position: dict[str, int] | None = None  # from a checkpoint, see load_state_dict
        self._hard_memory: HardNegativeMemory | None = None  # built with the training table
        self._hard_state: dict[str, Any] | None = None  # from a checkpoint, until that table

    # -- records ---------------------------------------------------------------------------

    def cache(self, split: str) -> SplitCache:
        """The opened cache of ``split`` (a split name such as ``"dev"``)."""
        if split not in self._caches:
            self._caches[split] = SplitCache(self.cache_dir, split)
        return self._caches[split]

    def split_records(self, split: str) -> list[RecordInfo]:
        """Records of ``split`` in record-index order (the ``record`` of its batches)."""
        return self.cache(split).records

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            cache = self.cache(self.splits["train"])
            labels = [cache.labels(i) for i in range(len(cache))]
            self._train = train_windows(labels, self.window_samples, self.train_stride_samples)
            if self.hard_negative_share > 0:
                self._hard_memory = HardNegativeMemory(len(self._train[0]))
                if self._hard_state is not None:
                    self._hard_memory.load_state_dict(self._hard_state)
        if stage in (None, "fit", "validate"):
            self.cache(self.splits["val"])
        if stage in (None, "test"):
            self.cache(self.splits["test"])

    # -- loaders ---------------------------------------------------------------------------

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _loader_options(self) -> dict[str, Any]:
        return {
            "batch_size": None,  # the sampler yields whole batches
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.num_workers > 0,
        }

    def train_table(self) -> WindowTable:
        """All training windows (record, start); the sampler's ids index this table."""
        if self._train is None:
            self.setup("fit")
        assert self._train is not None
        return self._train[0]

    def train_sampler(self) -> BalancedBatchSampler:
        """This rank's balanced sampler over the training windows."""
        if self._train is None:
            self.setup("fit")
        assert self._train is not None
        rank, world = self._rank_world()
        return BalancedBatchSampler(
            self._train[1],
            self.batch_size,
            full_per_partial=self.full_per_partial,
            background_per_partial=self.background_per_partial,
            seed=self.seed,
            rank=rank,
            world_size=world,
            memory=self._hard_memory,
            hard_negative_share=self.hard_negative_share,
        )

    # -- hard-negative mining (called by training.callbacks.HardNegativeMining) ------------

    def observe_train_windows(self, window: np.ndarray, max_prob: np.ndarray, epoch: int) -> None:
        """The highest probability (B,) the model gave the training windows ``window`` (B,)."""
        if self._hard_memory is not None:
            self._hard_memory.observe(window, max_prob, epoch)

    def commit_train_observations(self, epoch: int) -> None:
        """At the start of ``epoch``, before its draw: earlier observations become hardness.

        Under DDP every rank must call this (it combines the ranks' observations).
        """
        if self._hard_memory is None:
            return
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self._hard_memory.commit(epoch, _all_reduce_max if distributed else None)

    def train_dataloader(self) -> TrainLoader:
        dataset = WindowBatchDataset(
            self.cache(self.splits["train"]), self.train_table(), self.window_samples
        )
        loader = TrainLoader(dataset, sampler=self.train_sampler(), **self._loader_options())
        if self._train_position is not None:
            loader.load_state_dict(self._train_position)
        self._train_loader = loader
        return loader

    def eval_dataloader(self, split: str) -> EvalLoader:
        """Every window of every record of ``split`` in order (this rank's records)."""
        cache = self.cache(split)
        table = eval_windows(cache.n_samples, self.window_samples, self.eval_stride_samples)
        rank, world = self._rank_world()
        sampler = EvalBatchSampler(table, self.eval_batch_size, rank=rank, world_size=world)
        dataset = WindowBatchDataset(cache, table, self.window_samples)
        return EvalLoader(dataset, sampler=sampler, **self._loader_options())

    def val_dataloader(self) -> EvalLoader:
        return self.eval_dataloader(self.splits["val"])

    def test_dataloader(self) -> EvalLoader:
        return self.eval_dataloader(self.splits["test"])

    # -- checkpoint state ------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The training loader's position in its epoch and the hard-negative memory (saved
        in every checkpoint)."""
        state: dict[str, Any] = {}
        if self._train_loader is not None:
            state["train_position"] = self._train_loader.state_dict()
        if self._hard_memory is not None:
            state["hard_negatives"] = self._hard_memory.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the training loader where a checkpoint left it.

        Lightning restores the DataModule before it builds the loaders (so
        :meth:`train_dataloader` applies the position), but with some strategies after; an
        existing loader is then updated in place.
        """
        self._train_position = state_dict.get("train_position")
        if self._train_position is not None and self._train_loader is not None:
            self._train_loader.load_state_dict(self._train_position)
        self._hard_state = state_dict.get("hard_negatives")
        if self._hard_state is not None and self._hard_memory is not None:
            self._hard_memory.load_state_dict(self._hard_state)


def _all_reduce_max(values: np.ndarray) -> np.ndarray:
    """The element-wise maximum of ``values`` over all DDP ranks."""
    backend = torch.distributed.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else None
    tensor = torch.from_numpy(values).to(device or "cpu")
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return tensor.cpu().numpy()
