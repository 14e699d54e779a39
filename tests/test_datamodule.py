"""Window tables, balanced sampling, DDP shards, batch contents and whole-record evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from data_fixtures import make_split, tiny_cache

from brain_go_brr.data.cache import SFREQ
from brain_go_brr.data.datamodule import EvalLoader, TUSZDataModule, WindowBatchDataset
from brain_go_brr.data.sampling import (
    BACKGROUND,
    FULL,
    PARTIAL,
    BalancedBatchSampler,
    EvalBatchSampler,
    HardNegativeMemory,
    balanced_draw,
    eval_windows,
    train_windows,
    window_starts,
)

W = 60 * SFREQ
STRIDE = 10 * SFREQ


def test_window_starts_cover_the_record_with_the_last_aligned_to_the_end() -> None:
    assert window_starts(W, W, STRIDE).tolist() == [0]
    assert window_starts(W - 5, W, STRIDE).tolist() == [0]  # short: one padded window
    starts = window_starts(W + 3 * STRIDE + 7, W, STRIDE)
    assert starts.tolist() == [0, STRIDE, 2 * STRIDE, 3 * STRIDE, 3 * STRIDE + 7]
    table = eval_windows([W + 7, 10], W, W)
    assert table.record.tolist() == [0, 0, 1]
    assert table.start.tolist() == [0, 7, 0]


def test_train_window_kinds_follow_the_labels() -> None:
    labels = np.zeros(W + 4 * STRIDE, dtype=np.uint8)
    labels[STRIDE : STRIDE + W + STRIDE] = 1  # seizure covers windows 1..2 fully
    table, kinds = train_windows([labels, np.zeros(100, np.uint8)], W, STRIDE)
    assert table.start.tolist() == [0, STRIDE, 2 * STRIDE, 3 * STRIDE, 4 * STRIDE, 0]
    assert table.record.tolist() == [0, 0, 0, 0, 0, 1]
    assert kinds.tolist() == [PARTIAL, FULL, FULL, PARTIAL, PARTIAL, BACKGROUND]


def _kinds(n_partial: int, n_full: int, n_background: int) -> np.ndarray:
    kinds = np.array([PARTIAL] * n_partial + [FULL] * n_full + [BACKGROUND] * n_background)
    return np.random.default_rng(0).permutation(kinds).astype(np.int8)


def test_balanced_draw_matches_the_ratios_without_replacement() -> None:
    kinds = _kinds(40, 50, 500)
    ids = balanced_draw(kinds, 0.3, 2.5, np.random.default_rng(1))
    counts = np.bincount(kinds[ids], minlength=3)
    assert counts[PARTIAL] == 40  # every partly-seizure window
    assert counts[FULL] == 12  # 0.3 x 40
    assert counts[BACKGROUND] == 100  # 2.5 x 40
    assert np.unique(ids).size == ids.size


def test_balanced_draw_reuses_a_short_pool_whole() -> None:
    kinds = _kinds(40, 5, 500)  # 12 fully-seizure windows wanted, 5 exist
    ids = balanced_draw(kinds, 0.3, 2.5, np.random.default_rng(1))
    full = ids[kinds[ids] == FULL]
    assert full.size == 12
    assert set(np.bincount(full)[np.flatnonzero(kinds == FULL)]) <= {2, 3}


def test_balanced_draw_without_seizures_explains() -> None:
    with pytest.raises(ValueError, match="none of the 7 training windows contains a seizure"):
        balanced_draw(np.zeros(7, np.int8), 0.3, 2.5, np.random.default_rng(0))


def test_sampler_redraws_each_epoch_and_is_deterministic() -> None:
    kinds = _kinds(30, 40, 400)
    a = BalancedBatchSampler(kinds, 8, seed=7)
    b = BalancedBatchSampler(kinds, 8, seed=7)
    e0, e1 = a.epoch_ids(0), a.epoch_ids(1)
    assert e0.size == e1.size == 30 + 9 + 75
    assert not np.array_equal(np.sort(e0), np.sort(e1))  # a new background draw
    np.testing.assert_array_equal(e0, b.epoch_ids(0))
    assert not np.array_equal(e0, BalancedBatchSampler(kinds, 8, seed=8).epoch_ids(0))
    a.set_epoch(1)
    batches = list(a)
    assert len(batches) == len(a) == 15  # ceil(114 / 8)
    np.testing.assert_array_equal(np.concatenate(batches), e1)


def test_hard_negative_draw_oversamples_the_background_the_model_found_seizure_like() -> None:
    kinds = _kinds(40, 50, 500)
    background = np.flatnonzero(kinds == BACKGROUND)
    hardness = np.full(kinds.size, np.nan, dtype=np.float32)
    hardness[background[:250]] = 0.01  # trained on, confidently background
    hardness[background[:10]] = 0.9  # trained on, looked like seizure: 10 hard windows
    hits_plain, hits_mined = 0, 0
    for seed in range(20):
        plain = balanced_draw(kinds, 0.3, 2.5, np.random.default_rng(seed))
        mined = balanced_draw(kinds, 0.3, 2.5, np.random.default_rng(seed), hardness, 0.5)
        np.testing.assert_array_equal(np.bincount(kinds[mined]), np.bincount(kinds[plain]))
        assert np.unique(mined).size == mined.size  # still without replacement
        hits_mined += int(np.isin(background[:10], mined).sum())
        hits_plain += int(np.isin(background[:10], plain).sum())
    # 50 of the 100 background windows by hardness, the 10 hard ones holding 9 / (9 + 2.4) of
    # that weight: nearly all of them come every epoch. Uniformly, each has a 1-in-5 chance.
    assert hits_mined >= 0.9 * 10 * 20
    assert hits_plain <= 0.35 * 10 * 20
    np.testing.assert_array_equal(
        balanced_draw(kinds, 0.3, 2.5, np.random.default_rng(3), hardness, 0.5),
        balanced_draw(kinds, 0.3, 2.5, np.random.default_rng(3), hardness, 0.5),
    )
    # Nothing known yet (the first epoch): the plain uniform draw.
    unknown = np.full(kinds.size, np.nan, dtype=np.float32)
    np.testing.assert_array_equal(
        balanced_draw(kinds, 0.3, 2.5, np.random.default_rng(3), unknown, 0.5),
        balanced_draw(kinds, 0.3, 2.5, np.random.default_rng(3)),
    )


def test_hard_negative_memory_commits_only_earlier_epochs_and_round_trips() -> None:
    memory = HardNegativeMemory(6)
    memory.observe(np.array([1, 4]), np.array([0.2, 0.9]), epoch=0)
    memory.commit(0)  # a mid-epoch resume of epoch 0: its own observations stay pending
    assert np.isnan(memory.score).all()
    memory.commit(1)
    np.testing.assert_allclose(memory.score, [np.nan, 0.2, np.nan, np.nan, 0.9, np.nan])
    memory.observe(np.array([4, 5]), np.array([0.1, 0.7]), epoch=1)
    restored = HardNegativeMemory(6)
    restored.load_state_dict(memory.state_dict())
    restored.commit(2)
    np.testing.assert_allclose(restored.score, [np.nan, 0.2, np.nan, np.nan, 0.1, 0.7])
    # DDP: another rank observed window 0; the reduction is the element-wise maximum.
    other = np.full(6, -1.0, dtype=np.float32)
    other[0] = 0.6
    memory.commit(2, reduce_max=lambda mine: np.maximum(mine, other))
    np.testing.assert_allclose(memory.score, [0.6, 0.2, np.nan, np.nan, 0.1, 0.7])
    with pytest.raises(
        ValueError, match="memory of 6 training windows, but the training split has 5"
    ):
        HardNegativeMemory(5).load_state_dict(memory.state_dict())


def test_ddp_shards_are_disjoint_and_equal() -> None:
    kinds = _kinds(31, 40, 400)  # 31 + 9 + 78 = 118 windows: not a multiple of 4
    for world in (2, 4):
        shards = [
            BalancedBatchSampler(kinds, 8, seed=3, rank=r, world_size=world) for r in range(world)
        ]
        ids = [s.epoch_ids(5) for s in shards]
        assert len({i.size for i in ids}) == 1
        assert ids[0].size == 118 // world
        union = np.concatenate(ids)
        assert np.unique(union).size == union.size  # disjoint
        full_draw = BalancedBatchSampler(kinds, 8, seed=3).epoch_ids(5)
        assert set(union.tolist()) <= set(full_draw.tolist())
        assert len({len(s) for s in shards}) == 1  # same number of batches on every rank


def test_eval_shards_keep_records_whole() -> None:
    table = eval_windows([5 * W, W, 3 * W, 2 * W, 4 * W], W, W // 2)
    parts = [EvalBatchSampler(table, 4, rank=r, world_size=2) for r in range(2)]
    ids = [np.concatenate(list(p)) for p in parts]
    np.testing.assert_array_equal(np.concatenate(ids), np.arange(len(table)))
    assert not set(table.record[ids[0]]) & set(table.record[ids[1]])
    assert abs(ids[0].size - ids[1].size) <= 9  # the largest record has 9 windows


@pytest.fixture
def small_cache(tmp_path: Path) -> tuple[Path, dict]:
    train = make_split(
        tmp_path, "train", [(3 * W, [(W, W + 2000)]), (2 * W + 123, []), (W // 2, [(0, 100)])]
    )
    dev = make_split(tmp_path, "dev", [(2 * W + 777, [(500, 4000)]), (W - 1000, [])], seed=10)
    return tmp_path, {"train": list(train.values()), "dev": list(dev.values())}


def test_training_batch_is_the_cached_window(small_cache: tuple[Path, dict]) -> None:
    cache_dir, arrays = small_cache
    dm = TUSZDataModule(cache_dir, batch_size=8, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].dtype == torch.float16 and batch["x"].shape[1:] == (19, W)
    assert batch["y"].dtype == torch.float32 and batch["y"].shape[1:] == (W,)
    assert batch["record"].dtype == torch.int64 and batch["start"].dtype == torch.int64
    for b in range(batch["x"].shape[0]):
        r, s = int(batch["record"][b]), int(batch["start"][b])
        signals, labels = arrays["train"][r]
        n = min(W, signals.shape[1] - s)
        np.testing.assert_array_equal(batch["x"][b, :, :n].numpy(), signals[:, s : s + n])
        np.testing.assert_array_equal(batch["y"][b, :n].numpy(), labels[s : s + n])
        assert not batch["x"][b, :, n:].any() and not batch["y"][b, n:].any()


def test_validation_covers_every_sample_of_every_record_in_order(
    small_cache: tuple[Path, dict],
) -> None:
    cache_dir, arrays = small_cache
    dm = TUSZDataModule(cache_dir, batch_size=2, eval_stride_s=25.0)
    dm.setup("validate")
    records = dm.split_records("dev")
    assert [r.n_samples for r in records] == [2 * W + 777, W - 1000]
    rebuilt = [np.full((19, r.n_samples), np.nan, np.float32) for r in records]
    seen: list[tuple[int, int]] = []
    for batch in dm.val_dataloader():
        for b in range(batch["x"].shape[0]):
            r, s = int(batch["record"][b]), int(batch["start"][b])
            seen.append((r, s))
            n = min(W, records[r].n_samples - s)
            rebuilt[r][:, s : s + n] = batch["x"][b, :, :n].float().numpy()
    assert seen == sorted(seen)  # records in order, starts ascending
    assert seen[-1] == (1, 0)  # the short record: one padded window
    for r, (signals, _) in enumerate(arrays["dev"]):
        np.testing.assert_array_equal(rebuilt[r], signals.astype(np.float32))


def test_workers_load_the_same_batches(small_cache: tuple[Path, dict]) -> None:
    cache_dir, _ = small_cache
    main = TUSZDataModule(cache_dir, batch_size=4, num_workers=0)
    worker = TUSZDataModule(cache_dir, batch_size=4, num_workers=1)
    for dm in (main, worker):
        dm.setup("fit")
    for a, b in zip(main.val_dataloader(), worker.val_dataloader(), strict=True):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["start"], b["start"])


def _starts(batches: list[dict]) -> list[list[int]]:
    return [b["start"].tolist() for b in batches]


def test_train_loader_state_resumes_the_epoch_after_the_batches_served(
    small_cache: tuple[Path, dict],
) -> None:
    cache_dir, _ = small_cache
    dm = TUSZDataModule(cache_dir, batch_size=2, seed=4)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    whole = _starts(list(loader))
    n = len(whole)
    assert n == len(loader) > 2
    assert loader.state_dict() == {"epoch": 1, "batches_served": n}
    it = iter(loader)
    first = [next(it), next(it)]
    assert _starts(first) == whole[:2]
    state = dm.state_dict()
    assert state == {"train_position": {"epoch": 1, "batches_served": 2}}

    # Restored before the loader is built (the usual order in Lightning) ...
    resumed = TUSZDataModule(cache_dir, batch_size=2, seed=4)
    resumed.load_state_dict(state)
    again = resumed.train_dataloader()
    again.sampler.set_epoch(1)
    assert _starts(list(again)) == whole[2:]  # the skipped batches are not even drawn
    assert again.state_dict() == {"epoch": 1, "batches_served": n}
    assert len(again) == n  # the training loop counts the skipped batches as done
    # ... or after; any other epoch is whole.
    late = TUSZDataModule(cache_dir, batch_size=2, seed=4)
    built = late.train_dataloader()
    late.load_state_dict(state)
    built.sampler.set_epoch(1)
    assert _starts(list(built)) == whole[2:]
    built.sampler.set_epoch(2)
    assert len(list(built)) == n
    assert TUSZDataModule(cache_dir).state_dict() == {}  # nothing to carry before training


def test_a_rank_without_eval_windows_gets_one_empty_batch(small_cache: tuple[Path, dict]) -> None:
    cache_dir, _ = small_cache
    dm = TUSZDataModule(cache_dir, batch_size=2)
    cache = dm.cache("dev")
    table = eval_windows(cache.n_samples, W, W)  # records of 3 and 1 windows
    dataset = WindowBatchDataset(cache, table, W)
    loaders = [
        EvalLoader(
            dataset, sampler=EvalBatchSampler(table, 8, rank=r, world_size=3), batch_size=None
        )
        for r in range(3)
    ]
    batches = [list(lo) for lo in loaders]
    assert [len(lo) for lo in loaders] == [len(b) for b in batches] == [1, 1, 1]
    sizes = sorted(b[0]["x"].shape[0] for b in batches)
    assert sizes == [0, 1, 3]  # one rank per record, the third has none
    empty = next(b[0] for b in batches if b[0]["x"].shape[0] == 0)
    assert empty["x"].shape == (0, 19, W) and empty["record"].shape == (0,)


def test_bad_strides_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"eval_stride_s=90\.0 is longer than window_s=60\.0"):
        TUSZDataModule(tmp_path, eval_stride_s=90.0)


def _two_quiet_epochs(**kwargs: Any) -> Any:
    """A Lightning CPU trainer for two epochs without validation, logging or checkpoints."""
    import lightning as L

    return L.Trainer(
        max_epochs=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kwargs,
    )


def test_datamodule_over_a_prepared_synthetic_corpus(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    dm = TUSZDataModule(tiny_cache(tmp_path_factory), batch_size=8)
    dm.setup("fit")
    sampler = dm.train_sampler()
    kinds = sampler.kinds[sampler.epoch_ids(0)]
    n_partial = int((kinds == PARTIAL).sum())
    assert n_partial > 0
    assert int((kinds == BACKGROUND).sum()) == round(2.5 * n_partial)
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (8, 19, W)
    assert torch.isfinite(batch["x"].float()).all()


def test_lightning_keeps_the_sampler_and_redraws_each_epoch(
    small_cache: tuple[Path, dict],
) -> None:
    import lightning as L

    starts: dict[int, list[int]] = {0: [], 1: []}

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
            starts[self.current_epoch] += batch["start"].tolist()
            return (self.w * batch["x"].float().mean()).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = TUSZDataModule(small_cache[0], batch_size=4, seed=1)
    trainer = _two_quiet_epochs()
    trainer.fit(Probe(), dm)
    assert isinstance(trainer.train_dataloader.sampler, BalancedBatchSampler)
    sampler = dm.train_sampler()
    table = dm.train_table()
    for epoch in (0, 1):
        assert starts[epoch] == table.start[sampler.epoch_ids(epoch)].tolist()
    assert starts[0] != starts[1]


def test_training_feeds_hard_negative_mining_and_the_next_epoch_draws_from_it(
    small_cache: tuple[Path, dict],
) -> None:
    import lightning as L

    from brain_go_brr.training.callbacks import HardNegativeMining
    from brain_go_brr.training.module import SeizureDetectorModule

    class FirstChannel(torch.nn.Module):
        """Logits = channel 0 of the input, so each window's max probability is known."""

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))  # something for the optimizer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, 0] + 0 * self.w

    served: dict[int, list[int]] = {0: [], 1: []}

    class Served(L.Callback):
        def on_train_batch_start(
            self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict, batch_idx: int
        ) -> None:
            served[trainer.current_epoch] += batch["window"].tolist()

    cache_dir, arrays = small_cache
    dm = TUSZDataModule(cache_dir, batch_size=4, seed=2, sampling={"hard_negative_share": 1.0})
    trainer = _two_quiet_epochs(callbacks=[Served(), HardNegativeMining()])
    trainer.fit(SeizureDetectorModule(FirstChannel()), dm)
    table, memory = dm.train_table(), dm._hard_memory
    assert memory is not None
    # Epoch 0's observations were committed when epoch 1 began: exactly its windows,
    # each with sigmoid of the window's largest channel-0 value.
    seen = np.flatnonzero(np.isfinite(memory.score))
    assert seen.tolist() == sorted(set(served[0]))
    for k in seen:
        signals = arrays["train"][table.record[k]][0]
        peak = signals[0, table.start[k] : table.start[k] + W].astype(np.float32).max()
        assert memory.score[k] == pytest.approx(1 / (1 + np.exp(-peak)), rel=1e-5)
    # Epoch 1 was drawn from that memory (and epoch 1's own observations wait their turn).
    sampler = dm.train_sampler()
    assert served[1] == sampler.epoch_ids(1).tolist()
    plain = BalancedBatchSampler(sampler.kinds, 4, seed=2)
    assert served[1] != plain.epoch_ids(1).tolist()
    assert memory.pending_epoch == 1
    assert set(dm.state_dict()["hard_negatives"]) == {"score", "pending", "pending_epoch"}
