"""Window tables and the batch samplers: balanced training draws, in-order evaluation.

A *window table* lists windows as (record index, start sample); samplers yield arrays of
row numbers of that table, one array per batch, and the dataset turns a whole array into a
batch at once (few large copies instead of per-window collation).

Balanced training recipe (DESIGN.md), redrawn every epoch from ``(seed, epoch)``:
every window that is partly seizure (P of them), ``full_per_partial * P`` fully-seizure
windows and ``background_per_partial * P`` background windows, each kind drawn without
replacement while the pool is large enough (a pool smaller than its quota is used whole
as many times as it fits, the remainder drawn without replacement).

Both samplers subclass :class:`torch.utils.data.DistributedSampler` so that Lightning keeps
them as they are under DDP instead of wrapping them in its own distributed sampler (which
would re-shard our batches). Rank and world size are explicit arguments.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from torch.utils.data import Dataset, DistributedSampler

#: Window kinds in :func:`train_windows`.
BACKGROUND, PARTIAL, FULL = 0, 1, 2


@dataclass(frozen=True)
class WindowTable:
    """Windows of a split: ``record[k]``, ``start[k]`` (samples at 256 Hz), both (W,) int64."""

    record: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return int(self.record.shape[0])


def window_starts(n_samples: int, window_samples: int, stride_samples: int) -> np.ndarray:
    """Starts of the windows covering ``[0, n_samples)``: every ``stride``, last one end-aligned.

    A record shorter than one window gives a single window at 0 (zero-padded when read).
    """
    if n_samples <= window_samples:
        return np.zeros(1, dtype=np.int64)
    last = n_samples - window_samples
    starts = np.arange(0, last + 1, stride_samples, dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return starts


def eval_windows(
    n_samples: Sequence[int] | np.ndarray, window_samples: int, stride_samples: int
) -> WindowTable:
    """Every window of every record, records in order, starts ascending within a record."""
    starts = [window_starts(int(n), window_samples, stride_samples) for n in n_samples]
    record = np.repeat(np.arange(len(starts), dtype=np.int64), [len(s) for s in starts])
    return WindowTable(record, np.concatenate(starts) if starts else np.zeros(0, np.int64))


def train_windows(
    labels: Sequence[np.ndarray], window_samples: int, stride_samples: int
) -> tuple[WindowTable, np.ndarray]:
    """Training windows of each record's labels (n,) uint8 and their kind, (W,) int8.

    Windows start every ``stride_samples`` and lie inside the record (a record shorter than a
    window contributes one zero-padded window at 0). Kind: BACKGROUND (no seizure sample),
    PARTIAL (some), FULL (every sample of the window is seizure).
    """
    records, starts, kinds = [], [], []
    for r, lab in enumerate(labels):
        n = lab.shape[0]
        if n <= window_samples:
            st = np.zeros(1, dtype=np.int64)
        else:
            st = np.arange(0, n - window_samples + 1, stride_samples, dtype=np.int64)
        # Seizure samples per window from a cumulative sum: O(n) for all windows at once.
        csum = np.concatenate([[0], np.cumsum(lab, dtype=np.int64)])
        stop = np.minimum(st + window_samples, n)
        seiz = csum[stop] - csum[st]
        kind = np.where(seiz == 0, BACKGROUND, np.where(seiz == window_samples, FULL, PARTIAL))
        records.append(np.full(st.shape, r, dtype=np.int64))
        starts.append(st)
        kinds.append(kind.astype(np.int8))
    if not records:
        empty = np.zeros(0, dtype=np.int64)
        return WindowTable(empty, empty), np.zeros(0, dtype=np.int8)
    table = WindowTable(np.concatenate(records), np.concatenate(starts))
    return table, np.concatenate(kinds)


def _take(pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` items of ``pool``: without replacement, reusing the pool whole when short."""
    if count <= 0 or pool.size == 0:
        return np.zeros(0, dtype=pool.dtype)
    whole, rest = divmod(count, pool.size)
    parts = [pool] * whole + [rng.choice(pool, size=rest, replace=False)]
    return np.concatenate(parts)


def balanced_draw(
    kinds: np.ndarray,
    full_per_partial: float,
    background_per_partial: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Window ids of one balanced epoch, shuffled; see the module docstring for the recipe.

    With no partly-seizure window at all the quotas are taken relative to the fully-seizure
    count; a split without any seizure cannot be balanced and raises.
    """
    partial = np.flatnonzero(kinds == PARTIAL)
    full = np.flatnonzero(kinds == FULL)
    background = np.flatnonzero(kinds == BACKGROUND)
    base = partial.size or full.size
    if base == 0:
        raise ValueError(
            f"balanced sampling needs seizure windows, but none of the {kinds.size} training "
            "windows contains a seizure sample; check the split's labels (prepare_report.json)"
        )
    ids = np.concatenate(
        [
            partial,
            _take(full, round(full_per_partial * base), rng),
            _take(background, round(background_per_partial * base), rng),
        ]
    )
    return rng.permutation(ids)


def _as_dataset(sized: Sized) -> Dataset[Any]:
    # DistributedSampler only takes len() of its dataset, and we override what depends on it.
    return cast("Dataset[Any]", sized)


def _batches(ids: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for i in range(0, ids.size, batch_size):
        yield ids[i : i + batch_size]


class BalancedBatchSampler(DistributedSampler[np.ndarray]):
    """Yields batches (arrays of window ids) of this rank's share of a balanced epoch.

    The epoch's draw depends only on ``(seed, epoch)``: every rank draws the same shuffled
    list, trims it to a multiple of ``world_size`` and takes every ``world_size``-th id from
    ``rank``, so shards are disjoint and equal. Lightning passes the epoch number through
    :meth:`set_epoch` at each epoch start; :meth:`resume_at` makes one epoch start part-way,
    for a run resumed from a mid-epoch checkpoint.
    """

    def __init__(
        self,
        kinds: np.ndarray,
        batch_size: int,
        *,
        full_per_partial: float = 0.3,
        background_per_partial: float = 2.5,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__(
            _as_dataset(kinds), num_replicas=world_size, rank=rank, shuffle=False, seed=seed
        )
        self.kinds = kinds
        self.batch_size = batch_size
        self.full_per_partial = full_per_partial
        self.background_per_partial = background_per_partial
        # The epoch size does not depend on the draw, only on the kind counts.
        self.epoch_size = balanced_draw(
            kinds, full_per_partial, background_per_partial, np.random.default_rng(0)
        ).size
        self.per_rank = self.epoch_size // world_size
        self._resume_epoch, self._resume_batch = -1, 0

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Serve ``epoch`` without its first ``batches_done`` batches (other epochs whole).

        ``len()`` stays the whole epoch's batch count: the training loop counts the skipped
        batches as done already.
        """
        self._resume_epoch, self._resume_batch = int(epoch), int(batches_done)

    def first_batch(self, epoch: int) -> int:
        """Index of the first batch served in ``epoch`` (0 unless :meth:`resume_at` it)."""
        return self._resume_batch if epoch == self._resume_epoch else 0

    def epoch_ids(self, epoch: int) -> np.ndarray:
        """This rank's window ids for ``epoch``, in the order they are served."""
        rng = np.random.default_rng([self.seed, epoch])
        ids = balanced_draw(self.kinds, self.full_per_partial, self.background_per_partial, rng)
        return ids[: self.per_rank * self.num_replicas][self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[np.ndarray]:
        ids = self.epoch_ids(self.epoch)[self.first_batch(self.epoch) * self.batch_size :]
        return _batches(ids, self.batch_size)

    def __len__(self) -> int:
        return -(-self.per_rank // self.batch_size)


class EvalBatchSampler(DistributedSampler[np.ndarray]):
    """Yields batches of window ids in order; under DDP each rank gets whole records.

    Records are split into ``world_size`` contiguous blocks of about equal window counts,
    so each record's windows all land on one rank (stitching needs no cross-rank merge;
    only the per-record results are gathered). Nothing is padded or repeated: a duplicated
    window would bias the stitched mean.
    """

    def __init__(
        self, table: WindowTable, batch_size: int, *, rank: int = 0, world_size: int = 1
    ) -> None:
        super().__init__(_as_dataset(table), num_replicas=world_size, rank=rank, shuffle=False)
        self.batch_size = batch_size
        n = len(table)
        # Cut only where a new record begins, at the boundary nearest each equal share.
        record_starts = np.flatnonzero(np.diff(table.record, prepend=-1)) if n else np.zeros(0)
        cuts = [0]
        for k in range(1, world_size):
            target = k * n / world_size
            i = int(np.searchsorted(record_starts, target)) if record_starts.size else 0
            options = record_starts[max(i - 1, 0) : i + 1]
            best = int(options[np.argmin(np.abs(options - target))]) if options.size else n
            cuts.append(max(best, cuts[-1]))
        cuts.append(n)
        self.ids = np.arange(cuts[rank], cuts[rank + 1], dtype=np.int64)

    def __iter__(self) -> Iterator[np.ndarray]:
        return _batches(self.ids, self.batch_size)

    def __len__(self) -> int:
        return -(-self.ids.size // self.batch_size)
