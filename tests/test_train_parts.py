"""Training building blocks: focal loss, parameter groups, LR schedule, stitching, RNG state."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from brain_go_brr.hardware import resolve_auto
from brain_go_brr.post.stitch import RecordAccumulator, stitch_windows
from brain_go_brr.training.callbacks import RandomStateCallback
from brain_go_brr.training.losses import FocalLoss, focal_loss
from brain_go_brr.training.optim import (
    OptimConfig,
    build_adamw,
    build_scheduler,
    param_groups,
    warmup_cosine_factor,
)


def test_focal_loss_matches_hand_computed_values() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    p = torch.sigmoid(logits)[0]
    # p_t: p for positives, 1 - p for negatives; alpha 0.25 on positives, 0.75 on negatives.
    terms = [
        -0.25 * (1 - p[0]) ** 2 * torch.log(p[0]),
        -0.75 * (p[1]) ** 2 * torch.log(1 - p[1]),
        -0.25 * (1 - p[2]) ** 2 * torch.log(p[2]),
    ]
    expected = torch.stack(terms).mean()
    assert focal_loss(logits, targets, alpha=0.25, gamma=2.0).item() == pytest.approx(
        expected.item(), rel=1e-6
    )


def test_focal_loss_with_gamma_zero_is_weighted_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 100, generator=gen)
    targets = (torch.rand(4, 100, generator=gen) > 0.8).float()
    bce = nn.functional.binary_cross_entropy_with_logits(logits, targets)
    # alpha 0.5 weights both classes by one half.
    assert focal_loss(logits, targets, 0.5, 0.0).item() == pytest.approx(0.5 * bce.item(), 1e-6)


def test_focal_loss_is_finite_for_saturated_logits_and_checks_args() -> None:
    logits = torch.tensor([[80.0, -80.0]])
    loss = focal_loss(logits, torch.tensor([[0.0, 1.0]]))  # confidently wrong
    assert torch.isfinite(loss) and loss.item() > 10
    with pytest.raises(ValueError, match=r"differ in shape"):
        focal_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"loss\.alpha"):
        FocalLoss(alpha=1.5)


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.A_log = nn.Parameter(torch.zeros(2))
        self.D = nn.Parameter(torch.ones(2))
        self.dt_bias = nn.Parameter(torch.zeros(2))
        self.conv = nn.Conv1d(4, 4, 3, bias=False)


def test_param_groups_exclude_norms_biases_and_ssm_parameters_from_decay() -> None:
    decay, no_decay = param_groups(_Toy(), weight_decay=0.1)
    assert sorted(decay["names"]) == ["conv.weight", "proj.weight"]
    assert sorted(no_decay["names"]) == [
        "A_log", "D", "dt_bias", "norm.bias", "norm.weight", "proj.bias",
    ]  # fmt: skip
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    opt = build_adamw(_Toy(), OptimConfig(weight_decay=0.1))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def test_warmup_then_cosine_schedule() -> None:
    assert warmup_cosine_factor(0, 4, 20, 0.1) == pytest.approx(0.25)
    assert warmup_cosine_factor(3, 4, 20, 0.1) == pytest.approx(1.0)
    # Half-way through the cosine: the mean of 1 and the floor.
    assert warmup_cosine_factor(12, 4, 20, 0.1) == pytest.approx(0.55)
    assert warmup_cosine_factor(20, 4, 20, 0.1) == pytest.approx(0.1)
    assert warmup_cosine_factor(50, 4, 20, 0.1) == pytest.approx(0.1)
    model = _Toy()
    opt = build_adamw(model, OptimConfig(lr=1.0, warmup_steps=None, warmup_ratio=0.25))
    sched = build_scheduler(opt, OptimConfig(lr=1.0, warmup_ratio=0.25), total_steps=8)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:2] == pytest.approx([0.5, 1.0])  # 2 warm-up steps = 25 % of 8
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))
    assert lrs[-1] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 5 / 6)))


def test_record_accumulator_equals_stitch_windows() -> None:
    rng = np.random.default_rng(0)
    n_samples, length = [50, 7], 16
    starts0 = np.array([0, 10, 20, 30, 34])  # last window aligned to the record end
    probs0 = rng.random((5, length)).astype(np.float32)
    probs1 = rng.random((1, length)).astype(np.float32)  # shorter than a window: padded
    acc = RecordAccumulator(n_samples)
    # Fed in uneven batches, records interleaved.
    acc.add(probs0[:2], np.array([0, 0]), starts0[:2])
    acc.add(np.concatenate([probs0[2:3], probs1]), np.array([0, 1]), np.array([20, 0]))
    acc.add(probs0[3:], np.array([0, 0]), starts0[3:])
    tracks, partial = acc.complete_tracks()
    assert partial == []
    np.testing.assert_allclose(tracks[0], stitch_windows(probs0, starts0, 50), rtol=1e-6)
    np.testing.assert_allclose(tracks[1], stitch_windows(probs1, np.array([0]), 7), rtol=1e-6)


def test_record_accumulator_reports_partly_covered_records() -> None:
    acc = RecordAccumulator([40])
    acc.add(np.ones((1, 16), np.float32), np.array([0]), np.array([0]))
    tracks, partial = acc.complete_tracks()
    assert tracks == {} and partial == [0]


def test_random_state_round_trip() -> None:
    cb = RandomStateCallback()
    torch.manual_seed(3)
    np.random.seed(3)  # noqa: NPY002 - the legacy global state is what the callback carries
    state = cb.state_dict()
    a = (torch.rand(3), np.random.rand(3))  # noqa: NPY002
    torch.manual_seed(99)
    np.random.seed(99)  # noqa: NPY002
    cb.load_state_dict(state)
    b = (torch.rand(3), np.random.rand(3))  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_resolve_auto_keeps_explicit_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("brain_go_brr.hardware.detect_preset", lambda: "cpu")
    assert resolve_auto(["experiment=smoke"]) == ["experiment=smoke", "hardware=cpu"]
    assert resolve_auto(["hardware=auto", "seed=1"]) == ["seed=1", "hardware=cpu"]
    assert resolve_auto(["hardware=a100"]) == ["hardware=a100"]
    # Jobs that run on cluster nodes: this (submitting) machine must not pick their preset.
    slurm = ["-m", "hydra/launcher=submitit_slurm", "optim.lr=1e-4,3e-4"]
    assert resolve_auto(slurm) == slurm
    local = ["-m", "hydra/launcher=submitit_local"]
    assert resolve_auto(local) == [*local, "hardware=cpu"]
