"""train(cfg) end to end on a tiny synthetic corpus: presets, metric keys, resume, loading.

The detector is ``model=v3_tiny`` and windows are 16 s (the model takes any length that is
a multiple of its downsampling), so each run takes seconds on two CPU cores.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader

from brain_go_brr.paths import conf_dir
from brain_go_brr.training import CheckpointMismatchError, load_detector, train
from brain_go_brr.training.module import NonFiniteLossError, SeizureDetectorModule

# The module, not the function of the same name that brain_go_brr.training exports.
train_mod = importlib.import_module("brain_go_brr.training.train")
REPO = Path(__file__).resolve().parents[1]
HARDWARE = sorted(p.stem for p in (conf_dir() / "hardware").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))
DEBUG = sorted(p.stem for p in (conf_dir() / "debug").glob("*.yaml"))
LOGGERS = sorted(p.stem for p in (conf_dir() / "logger").glob("*.yaml"))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A 4-patient synthetic corpus, generated and prepared through data=synthetic itself."""

    base = tmp_path_factory.mktemp("train_corpus")
    paths = {"root": str(base / "corpus"), "cache_dir": str(base / "cache")}
    cfg = _compose([f"data.{k}={v}" for k, v in paths.items()])
    hydra.utils.instantiate(cfg.data)  # first use: generates, then prepares
    assert (base / "corpus" / "synth_manifest.json").exists()
    return paths


def _compose(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    base = [
        "hardware=cpu",
        "model=v3_tiny",
        "logger=none",
        "data.synthetic.n_patients=4",
        "data.synthetic.hours=0.25",
        "data.synthetic.seed=5",
        "data.window_s=16",
        "data.train_stride_s=8",
        "data.eval_stride_s=16",
        "data.batch_size=1",
        "data.eval_batch_size=16",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "module.plots_dir=null",
        f"paths.output_dir={output_dir or '.'}",
    ]
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return compose("train", overrides=[*base, *overrides])


def _cfg(corpus: dict[str, str], tmp: Path, overrides: list[str] = ()) -> DictConfig:  # type: ignore[assignment]
    data = [f"data.{k}={v}" for k, v in corpus.items()]
    return _compose([*data, *overrides], output_dir=tmp)


def test_groups_build_their_objects_with_every_override(
    corpus: dict[str, str], tmp_path: Path
) -> None:
    """``data`` and ``module`` are built by ``instantiate`` from their groups: an override of
    any of their keys (or of the keys they point at: optim, loss, post, model) reaches the
    object with no mapping in train()."""
    overrides = [
        "optim.lr=0.0123", "loss.alpha=0.33", "loss.gamma=1.5", "post.tau_on=0.91",
        "module.hemisphere_flip=0.25", "module.n_example_traces=5", "model.node_layers=2",
        "data.sampling.hard_negative_share=0.4", "data.eval_stride_s=8", "data.seed=9",
    ]  # fmt: skip
    cfg = _cfg(corpus, tmp_path, overrides)
    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    assert (dm.hard_negative_share, dm.eval_stride_samples, dm.seed) == (0.4, 8 * 256, 9)
    assert dm.cache_dir == Path(corpus["cache_dir"])
    detector = hydra.utils.instantiate(cfg.model)
    module = hydra.utils.instantiate(cfg.module, detector=detector)
    assert module.detector is detector and len(detector.node_stream.layers) == 2
    assert module.optim_cfg.lr == 0.0123 and module.optim_cfg.betas == (0.9, 0.999)
    assert (module.loss_fn.alpha, module.loss_fn.gamma) == (0.33, 1.5)
    assert module.post_cfg.tau_on == 0.91
    assert (module.hemisphere_flip, module.n_example_traces, module.plots_dir) == (0.25, 5, None)
    hp = module.hparams
    assert hp["model"]["node_layers"] == 2 and hp["model"]["_target_"].endswith("build_v3")
    assert hp["preprocess"]["notch_hz"] == cfg.data.preprocess.notch_hz
    with pytest.raises(hydra.errors.InstantiationException, match=r"data\.sampling: unknown key"):
        hydra.utils.instantiate(cfg.data, sampling={"hard_negative": 0.5}, _convert_="all")


@pytest.mark.parametrize(
    "group,option",
    [("hardware", h) for h in HARDWARE]
    + [("experiment", e) for e in EXPERIMENTS]
    + [("debug", d) for d in DEBUG],
)
def test_every_preset_and_experiment_runs_fast_dev_run(
    group: str, option: str, corpus: dict[str, str], tmp_path: Path
) -> None:
    # One training window and one validation batch of two windows: does it run at all?
    fdr = ["trainer.fast_dev_run=true", "data.eval_batch_size=2"]
    cfg = _cfg(corpus, tmp_path, [f"{group}={option}", *fdr])
    if group == "hardware":
        assert cfg.hardware.name == option
        # This machine has no GPU: the GPU presets' device settings are replaced by the cpu
        # preset's here, explicitly; the PE mode stays the preset's (its batch size is
        # checked by test_hardware_presets_set_their_documented_values).
        with open_dict(cfg):
            cfg.trainer.accelerator = "cpu"
            cfg.trainer.precision = "32-true"
            cfg.data.pin_memory = False
            cfg.data.num_workers = 0
            cfg.data.batch_size = 1
    if group == "experiment":
        # The experiment's own corpus would take minutes to generate; keep the tiny one.
        with open_dict(cfg):
            cfg.data.synthetic = {"n_patients": 4, "hours": 0.25, "seed": 5}
            cfg.data.batch_size, cfg.data.eval_batch_size = 1, 2
            cfg.data.window_s, cfg.data.train_stride_s, cfg.data.eval_stride_s = 16, 8, 16
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss_step"])


def _bare(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return compose("train", overrides=overrides)


def test_hardware_presets_set_their_documented_values() -> None:
    rtx = _bare(["hardware=rtx4090"])
    assert (rtx.data.batch_size, rtx.trainer.precision, rtx.hardware.name) == (
        4,
        "32-true",
        "rtx4090",
    )
    a100 = _bare(["hardware=a100"])
    assert (a100.data.batch_size, a100.trainer.precision) == (64, "bf16-mixed")
    # h100 is a100 with more loader workers
    h100 = _bare(["hardware=h100"])
    assert (h100.hardware.name, h100.data.num_workers) == ("h100", 16)
    assert OmegaConf.to_container(h100.trainer) == OmegaConf.to_container(a100.trainer)
    assert h100.data.batch_size == a100.data.batch_size
    # Presets never change the model: the PE schedule is the pe group's (default dynamic).
    for preset in ("rtx4090", "a100", "h100", "cpu"):
        cfg = _bare([f"hardware={preset}"])
        assert OmegaConf.to_container(cfg.model) == OmegaConf.to_container(_bare([]).model)
    assert _bare(["hardware=rtx4090", "pe=semi"]).model.pe.mode == "semi"


def test_composed_groups_hold_only_their_differences() -> None:
    """v3_tiny is v3 with smaller widths; synthetic is tusz with its generator keys."""
    v3, tiny = _bare([]).model, _bare(["model=v3_tiny"]).model
    assert set(tiny) == set(v3)
    assert tiny.tcn_strides == v3.tcn_strides and tiny.node_dim < v3.node_dim
    synthetic, tusz = _bare([]).data, _bare(["data=tusz"]).data
    assert set(synthetic) == set(tusz) | {"synthetic"}
    assert synthetic.preprocess == tusz.preprocess and synthetic.sampling == tusz.sampling


@pytest.mark.parametrize("logger", LOGGERS)
def test_logger_configs_compose(logger: str) -> None:
    cfg = _compose([f"logger={logger}"])
    if logger == "wandb":
        assert cfg.logger.wandb.offline is True  # no network unless asked
    assert set(cfg.logger) == ({logger} if logger != "none" else set())


def test_optuna_sweep_config_targets_the_logged_metric() -> None:
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=optuna"], return_hydra_config=True)
    assert cfg.optimized_metric == "val/sens_at_10fa"
    assert cfg.hydra.sweeper.direction == "maximize"
    assert set(cfg.hydra.sweeper.params) == {"optim.lr", "loss.alpha", "loss.gamma"}


# 2 epochs x 2 steps, last.ckpt also every 3 steps, a constant lr after one warm-up step (a
# wrong or repeated batch in a resumed run shows clearly). The uninterrupted run is shared:
# it is also the run whose logs, plots and checkpoints are checked.
RESUME = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=2",
    "callbacks.last_checkpoint_mid_epoch.every_n_train_steps=3",
    "optim.warmup_steps=1",
    "optim.lr=3e-3",
    "optim.min_lr_ratio=1.0",
    "data.sampling.hard_negative_share=0.5",  # epoch 1's draw depends on epoch 0's training
]


@pytest.fixture(scope="module")
def full_run(
    corpus: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[DictConfig, dict[str, Any]]:
    """One uninterrupted run with W&B (offline) and plots: its config and returned metrics."""
    out = tmp_path_factory.mktemp("full_run")
    cfg = _cfg(corpus, out, [*RESUME, "logger=wandb", "module.plots_dir=${paths.output_dir}/plots"])
    return cfg, train(cfg)


def test_monitored_key_is_logged_and_run_writes_checkpoints_logs_plots(
    full_run: tuple[DictConfig, dict[str, Any]],
) -> None:
    cfg, metrics = full_run
    out = Path(cfg.paths.output_dir)
    monitored = {c.monitor for c in cfg.callbacks.values() if c is not None and c.get("monitor")}
    assert monitored == {"val/sens_at_10fa"}
    # Experiments may monitor another key (experiment=demo: the AUROC-tie-broken one).
    for experiment in EXPERIMENTS:
        callbacks = _bare([f"experiment={experiment}"]).callbacks.values()
        monitored |= {c.monitor for c in callbacks if c is not None and c.get("monitor")}
    assert "val/sens_at_10fa_auroc" in monitored
    for key in (*monitored, "val/sens_at_10fa", "val/sens_at_2.5fa", "val/auroc", "val/loss",
                "val/fa_per_24h", "train/nonfinite_steps", "val/ovlp_fa_per_24h",
                "val/szcore_event_subject_fp_per_24h", "val/szcore_sample_pooled_fp_per_24h"):  # fmt: skip
        assert key in metrics, f"{key} not logged; logged: {sorted(metrics)}"
    assert 0.0 <= metrics["val/sens_at_10fa"] <= 1.0
    assert metrics["val/sens_at_10fa_auroc"] == pytest.approx(
        metrics["val/sens_at_10fa"] + 0.01 * metrics["val/auroc"]
    )
    assert metrics["val/n_records"] >= 1
    assert Path(metrics["best_ckpt_path"]).name == "best.ckpt"
    # Both last.ckpt writers overwrite one file (no last-v1.ckpt holding the newer state).
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert list((out / "wandb").glob("offline-run-*"))
    for epoch in ("epoch_000", "epoch_001"):
        assert list((out / "plots" / epoch).glob("trace_*.png")), epoch
        assert (out / "plots" / epoch / "sens_fa_curve.png").is_file(), epoch
    # Everything in the checkpoint loads without unpickling code.
    ckpt = torch.load(metrics["last_ckpt_path"], map_location="cpu", weights_only=True)
    # Saved at the end of the last epoch: 4 steps done, epoch counter already past epoch 1.
    assert (ckpt["global_step"], ckpt["epoch"]) == (4, 2)

    detector = load_detector(metrics["best_ckpt_path"])
    with torch.no_grad():
        probs = torch.sigmoid(detector(torch.zeros(1, 19, 4096)))
    assert probs.shape == (1, 4096)
    wrong = OmegaConf.to_container(cfg.model)
    assert isinstance(wrong, dict)
    wrong["node_dim"] = 16
    with pytest.raises(CheckpointMismatchError, match="shape differs"):
        load_detector(metrics["best_ckpt_path"], wrong)


class _Crash(L.Callback):
    """Kills the run after optimizer step ``at_step`` (before that step's checkpoint)."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.at_step:
            raise KeyboardInterrupt  # what Ctrl-C (or a preemption signal) raises


def test_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(
    corpus: dict[str, str],
    full_run: tuple[DictConfig, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Killed after step 4 (epoch 1, batch 1): the newest checkpoint is from step 3, mid-epoch,
    # so the resumed run must skip exactly the epoch's first batch and redo step 4.
    full = full_run[1]
    build = train_mod.build_callbacks
    monkeypatch.setattr(train_mod, "build_callbacks", lambda cfg: [*build(cfg), _Crash(4)])
    cfg = _cfg(corpus, tmp_path / "killed", RESUME)
    with pytest.raises(SystemExit):  # Lightning shuts down gracefully, then exits with 1
        train(cfg)
    monkeypatch.setattr(train_mod, "build_callbacks", build)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 3
    with pytest.raises(FileExistsError, match="ckpt_path=last"):
        train(cfg)  # a fresh start would overwrite the run's checkpoints
    resumed = train(_cfg(corpus, tmp_path / "killed", [*RESUME, "ckpt_path=last"]))

    ca = torch.load(full["last_ckpt_path"], weights_only=True)
    cb = torch.load(resumed["last_ckpt_path"], weights_only=True)
    assert (ca["global_step"], ca["epoch"]) == (cb["global_step"], cb["epoch"]) == (4, 2)
    assert ca["state_dict"].keys() == cb["state_dict"].keys()
    # The hard-negative memory came through the crash: what epoch 0 observed is identical.
    hard_a, hard_b = ca["TUSZDataModule"]["hard_negatives"], cb["TUSZDataModule"]["hard_negatives"]
    assert torch.isfinite(hard_a["score"]).sum() == 2  # the 2 windows of epoch 0
    torch.testing.assert_close(hard_a["score"], hard_b["score"], equal_nan=True)
    # Deterministic mode (the default): the resumed run is the uninterrupted one, bit for bit.
    for k, wa in ca["state_dict"].items():
        assert torch.equal(wa, cb["state_dict"][k]), k
    x = torch.randn(2, 19, 4096, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ya = load_detector(full["last_ckpt_path"])(x)
        yb = load_detector(resumed["last_ckpt_path"])(x)
    assert torch.equal(ya, yb)
    assert full["val/loss"] == resumed["val/loss"]


def test_same_seed_same_weights_and_metrics(
    corpus: dict[str, str], full_run: tuple[DictConfig, dict[str, Any]], tmp_path: Path
) -> None:
    """Two default runs with the same seed: identical checkpoints and logged metrics."""
    cfg, first = full_run
    again = train(
        _cfg(
            corpus,
            tmp_path / "again",
            [*RESUME, "logger=wandb", "module.plots_dir=${paths.output_dir}/plots"],
        )
    )
    assert cfg.trainer.deterministic is True
    a = torch.load(first["last_ckpt_path"], weights_only=True)["state_dict"]
    b = torch.load(again["last_ckpt_path"], weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    metrics = {k: v for k, v in first.items() if k.startswith(("val/", "train/"))}
    assert metrics == {k: v for k, v in again.items() if k.startswith(("val/", "train/"))}


class _NaNFirst(torch.nn.Module):
    """A linear per-sample detector whose output is NaN on batches marked by x[0, 0, 0] > 1e3."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.w * x.mean(dim=1)  # (B, T)
        return out * torch.where(x[:, :1, :1] > 1e3, torch.nan, 1.0)[:, 0]


def _batches(marks: list[bool]) -> DataLoader:
    out = []
    for bad in marks:
        x = torch.randn(2, 19, 32, generator=torch.Generator().manual_seed(len(out)))
        if bad:
            x[:, 0, 0] = 1e4
        out.append({"x": x.half(), "y": (x.mean(1) > 0).float()})
    return DataLoader(out, batch_size=None)


def test_nonfinite_loss_skips_the_update_and_many_in_a_row_stop_the_run() -> None:
    trainer_kw: dict[str, Any] = dict(
        accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    module = SeizureDetectorModule(_NaNFirst(), max_consecutive_nonfinite=3)
    before = module.detector.w.detach().clone()
    L.Trainer(max_epochs=1, **trainer_kw).fit(module, _batches([True, True]))
    assert module.nonfinite_steps == 2
    assert torch.equal(module.detector.w.detach(), before)  # no update from a NaN step
    L.Trainer(max_epochs=1, **trainer_kw).fit(module, _batches([False, True]))
    assert module.nonfinite_steps == 3
    assert not torch.equal(module.detector.w.detach(), before)

    module = SeizureDetectorModule(_NaNFirst(), max_consecutive_nonfinite=3)
    with pytest.raises(NonFiniteLossError, match="3 consecutive"):
        L.Trainer(max_epochs=1, **trainer_kw).fit(module, _batches([True] * 4))


def test_tusz_without_root_says_how_to_point_at_the_corpus(tmp_path: Path) -> None:
    cfg = _bare(["data=tusz", "hardware=cpu", f"paths.output_dir={tmp_path}"])
    with pytest.raises(Exception, match=r"data\.root"):
        train(cfg)


def _run_cli(
    corpus: dict[str, str], cwd: Path, overrides: list[str], multirun: bool = False
) -> None:
    """``python train.py`` on the tiny corpus (1 epoch of 2 steps, csv logs), as a user runs it."""
    args = [
        sys.executable, str(REPO / "train.py"), *(["-m"] if multirun else []), "hardware=cpu", "model=v3_tiny", "logger=csv",
        *(f"data.{k}={v}" for k, v in corpus.items()),
        "data.synthetic.n_patients=4", "data.synthetic.hours=0.25", "data.synthetic.seed=5",
        "data.window_s=16", "data.train_stride_s=8", "data.eval_stride_s=16",
        "data.batch_size=1", "data.eval_batch_size=16", "trainer.max_epochs=1",
        "trainer.limit_train_batches=2", "module.plots_dir=null", *overrides,
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _val_rows(run_dir: Path) -> list[dict[str, str]]:
    """The rows of a run's csv log that hold validation numbers."""
    with next((run_dir / "csv").glob("version_*/metrics.csv")).open() as f:
        return [r for r in csv.DictReader(f) if r["val/sens_at_10fa"]]


@pytest.mark.slow
def test_optuna_sweep_runs_trials_and_reports_the_best(
    corpus: dict[str, str], tmp_path: Path
) -> None:
    """``python train.py -m hparams_search=optuna``: two trials, each a run of its own."""
    sweep_dir = tmp_path / "sweep"
    _run_cli(
        corpus,
        tmp_path,
        ["hparams_search=optuna", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep_dir}"],
        multirun=True,
    )
    values, params = [], []
    for job in ("0", "1"):
        cfg = OmegaConf.load(sweep_dir / job / "config.yaml")
        params.append((cfg.optim.lr, cfg.loss.alpha, cfg.loss.gamma))
        assert 1e-4 <= cfg.optim.lr <= 3e-3 and 0.25 <= cfg.loss.alpha <= 0.9
        assert cfg.loss.gamma in (0.0, 1.0, 2.0, 3.0)
        assert (sweep_dir / job / "checkpoints" / "last.ckpt").is_file()
        values.append(float(_val_rows(sweep_dir / job)[-1]["val/sens_at_10fa"]))
    assert params[0] != params[1]  # the sampler proposed two different trials
    result = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert result.best_value == pytest.approx(max(values))  # what train.py returned
    assert (result.best_params["optim.lr"], result.best_params["loss.alpha"]) in [
        p[:2] for p, v in zip(params, values, strict=True) if v == max(values)
    ]


@pytest.mark.slow
def test_ddp_two_cpu_processes(corpus: dict[str, str], tmp_path: Path) -> None:
    """``trainer.devices=2 trainer.strategy=ddp`` through train.py: two processes over gloo.

    The corpus has one dev record, so rank 1 has no validation windows: it must still run
    the validation hooks and join the gather, or rank 0 waits on it forever.
    """
    args = ["trainer.devices=2", "trainer.strategy=ddp", f"paths.root={tmp_path}", "run_name=ddp"]
    _run_cli(corpus, tmp_path, args)
    val_rows = _val_rows(tmp_path / "ddp")
    assert len(val_rows) == 1  # one validation epoch, logged once (rank zero)
    assert float(val_rows[0]["val/n_records"]) == 1.0  # the dev record, gathered from rank 0
    assert math.isfinite(float(val_rows[0]["val/loss"]))
    ckpt = torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2  # each rank took 2 steps on its own half of the batches


@pytest.mark.slow
def test_seed_multirun_ends_with_a_seed_summary(corpus: dict[str, str], tmp_path: Path) -> None:
    """``python train.py -m seed=0,1``: each run's metrics.json, then one table of both."""
    sweep_dir = tmp_path / "seeds"
    _run_cli(corpus, tmp_path, ["seed=0,1", f"hydra.sweep.dir={sweep_dir}"], multirun=True)
    for job, seed in (("0", 0), ("1", 1)):
        run = json.loads((sweep_dir / job / "metrics.json").read_text())
        assert run["seed"] == seed and run["best"]["epoch"] == 0
        assert run["best"]["val/sens_at_10fa"] == run["final"]["val/sens_at_10fa"]
    summary = json.loads((sweep_dir / "seed_summary.json").read_text())
    assert summary["failed"] == [] and summary["figures"]["val/auroc"]["n"] == 2
    values = summary["figures"]["val/loss"]["values"]
    assert values[0] != values[1]  # two seeds, two models
    assert "| val/auroc |" in (sweep_dir / "seed_summary.md").read_text()
