"""Wrappers around the DataModule's loaders that training needs and the data pipeline does not.

:class:`ResumableLoader` -- exact mid-epoch resume. Lightning saves and restores the state
of a training loader that has ``state_dict`` / ``load_state_dict``. This wrapper counts the
batches it has served in the current epoch; after a restart it serves the same epoch (the
balanced sampler's draw depends only on ``(seed, epoch)``, set by Lightning before the first
batch is fetched) minus the batches already trained on, so a resumed run sees exactly the
batches an uninterrupted one would. Skipped batches are read and dropped rather than cut
from the sampler: the sampler stays the data pipeline's business, and reading costs little
next to a training step (the loader's share of step time is in BENCHMARKS.md).

:class:`EveryRankEvalLoader` -- validation under DDP. Each rank validates whole records, so
with fewer dev records than ranks some rank has no windows at all. Lightning skips the whole
validation loop (hooks included) on a rank whose loader is empty; that rank then never joins
the epoch-end gather of stitched tracks and its peers wait on it forever. This wrapper gives
such a rank one batch of zero windows, so every rank runs the same hooks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


class _LoaderProxy:
    """Attribute access falls through to the wrapped loader, so Lightning still finds
    ``sampler`` / ``batch_sampler`` (for ``set_epoch``) and ``dataset``."""

    _own: frozenset[str] = frozenset({"loader"})

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this wrapper does not define itself.
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets e.g. ``worker_init_fn`` on the loader it is given; it belongs inside.
        if name in self._own:
            object.__setattr__(self, name, value)
        else:
            setattr(self.loader, name, value)


class ResumableLoader(_LoaderProxy):
    """Wraps a DataLoader; ``state_dict()`` is ``{"batches_served": n}`` of the current epoch."""

    _own = frozenset({"loader", "_served", "_skip"})

    def __init__(self, loader: Any) -> None:
        super().__init__(loader)
        self._served = 0
        self._skip = 0

    def __iter__(self) -> Iterator[Any]:
        # A generator: the wrapped loader (and its sampler's draw) is only created on the
        # first ``next``, after Lightning has called ``set_epoch`` for this epoch.
        skip, self._skip = self._skip, 0
        self._served = 0
        for batch in self.loader:
            self._served += 1
            if self._served <= skip:
                continue
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"batches_served": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._skip = int(state["batches_served"])


class EveryRankEvalLoader(_LoaderProxy):
    """Wraps an evaluation DataLoader; an empty one yields a single zero-window batch.

    The empty batch is ``loader.dataset[[]]``: the dataset's own keys with a batch size of 0
    (``x`` (0, 19, W) and so on), which ``validation_step`` recognises and passes over.
    """

    def __len__(self) -> int:
        return max(1, len(self.loader))

    def __iter__(self) -> Iterator[Any]:
        if len(self.loader) == 0:
            yield self.loader.dataset[np.zeros(0, dtype=np.int64)]
            return
        yield from self.loader
