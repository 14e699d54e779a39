"""evaluate(cfg): a tiny trained checkpoint over a tiny synthetic corpus, the probability
cache, re-scoring, the files NEDC and SzCORE read, the sweep summary and the errors.

The expensive pieces (a v3_tiny checkpoint trained for a few steps, one full evaluation) are
built once per session by :func:`trained_checkpoint` and :func:`evaluated_run`, which
``test_notebooks.py`` reuses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from data_fixtures import tiny_corpus
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from brain_go_brr.annotations import Event
from brain_go_brr.evaluation.evaluate import bids_events_name, evaluate
from brain_go_brr.evaluation.probs import CachedRecord, ProbCache, ProbCacheError
from brain_go_brr.evaluation.sweep import format_sweep_summary, write_sweep_summary
from brain_go_brr.inference import predict_record
from brain_go_brr.paths import conf_dir
from brain_go_brr.post import PostConfig
from brain_go_brr.scoring import metrics as scoring
from brain_go_brr.scoring.sweep import best_at_fa, threshold_sweep

_SESSION: dict[str, Any] = {}
FA_KEYS = ("1", "2.5", "5", "10")
TAU_GRID = [round(float(t), 2) for t in np.linspace(0.05, 0.95, 10)]


def _data_overrides(corpus: Path, cache: Path) -> list[str]:
    return [
        "data=synthetic",
        f"data.root={corpus}",
        f"data.cache_dir={cache}",
        "data.synthetic.n_patients=5",
        "data.synthetic.hours=0.3",
        "data.synthetic.seed=3",
        "data.eval_stride_s=60",
        "data.prepare_workers=1",
    ]


def trained_checkpoint(factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """(checkpoint of v3_tiny trained 4 steps, data overrides), once per session."""
    if "ckpt" not in _SESSION:
        from brain_go_brr.training import train

        corpus = tiny_corpus(factory)
        base = factory.mktemp("eval_train")
        data = _data_overrides(corpus, base / "cache")
        with initialize_config_dir(str(conf_dir()), version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[
                    *data,
                    "model=v3_tiny",
                    "hardware=cpu",
                    "logger=none",
                    f"paths.output_dir={base / 'run'}",
                    "trainer.max_epochs=1",
                    "trainer.limit_train_batches=4",
                    "module.plots_dir=null",
                ],
            )
        metrics = train(cfg)
        _SESSION["ckpt"] = (Path(metrics["best_ckpt_path"] or metrics["last_ckpt_path"]), data)
    return _SESSION["ckpt"]


def eval_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return compose(
            "eval",
            overrides=[
                "hardware=cpu",
                "model=v3_tiny",
                f"threshold_sweep.tau_grid={TAU_GRID}",
                "n_trace_plots=2",
                *overrides,
            ],
        )


def evaluated_run(factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """(run folder, metrics) of evaluate() on the dev split, once per session."""
    if "run" not in _SESSION:
        ckpt, data = trained_checkpoint(factory)
        out = factory.mktemp("eval_run")
        cfg = eval_config([*data, f"ckpt_path={ckpt}", f"out_dir={out}", "split=dev"])
        _SESSION["run"] = (out, evaluate(cfg))
    return _SESSION["run"]


# ----------------------------------------------------------------------------- no model


def test_prob_cache_round_trip_quantises_and_resumes(tmp_path: Path) -> None:
    prob = np.array([0.0, 0.5, 0.86, 1.0, 0.001], dtype=np.float32)
    rec = CachedRecord("p_s001_t000", "p", "edf/dev/p.edf", 5, 5 / 256, [Event(0.0, 0.01)])
    cache = ProbCache(tmp_path, split="dev", source={"ckpt_path": "a"})
    cache.add(rec, prob)
    again = ProbCache(tmp_path, split="dev", source={"ckpt_path": "a"})
    assert "p_s001_t000" in again
    np.testing.assert_allclose(again.load("p_s001_t000"), prob, atol=0.5 / 255)
    assert again.records["p_s001_t000"].seizures == [Event(0.0, 0.01)]
    with pytest.raises(ProbCacheError, match="not from"):
        ProbCache(tmp_path, split="dev", source={"ckpt_path": "b"})
    with pytest.raises(ProbCacheError, match="split 'dev'"):
        ProbCache(tmp_path, split="eval", source={"ckpt_path": "a"})
    with pytest.raises(ValueError, match="shape"):
        cache.add(rec, prob[:3])


def test_empty_or_missing_cache_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProbCacheError, match="no cached probabilities"):
        ProbCache.open_existing(tmp_path)
    ProbCache(tmp_path / "probs", split="dev", source={})._write_index()
    with pytest.raises(ProbCacheError, match="empty"):
        ProbCache.open_existing(tmp_path)


class _FirstChannel(torch.nn.Module):
    """Logits = channel 0: the stitched probability must be sigmoid(channel 0) everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, :]


@pytest.mark.parametrize("n_samples", [1000, 15360, 15360 * 3 + 777])
def test_predict_record_covers_every_sample_in_place(n_samples: int) -> None:
    rng = np.random.default_rng(n_samples)
    signals = rng.standard_normal((19, n_samples)).astype(np.float16)
    prob = predict_record(_FirstChannel(), signals, 15360, 7680, 2, torch.device("cpu"))
    expected = 1 / (1 + np.exp(-signals[0].astype(np.float64)))
    assert prob.shape == (n_samples,)
    np.testing.assert_allclose(prob, expected, atol=1e-6)


def _toy_tracks() -> list[scoring.RecordTrack]:
    """Three 10-minute records: seizures with strong/weak peaks, and false-alarm bumps."""
    sfreq, n = 256, 600 * 256
    out = []
    for i, (peaks, seizures) in enumerate(
        [
            ([(100, 130, 0.97), (400, 405, 0.6)], [Event(100.0, 130.0)]),
            ([(200, 260, 0.7), (500, 520, 0.9)], [Event(200.0, 260.0)]),
            ([(50, 60, 0.8), (300, 306, 0.55)], []),
        ]
    ):
        prob = np.full(n, 0.02, dtype=np.float32)
        for a, b, p in peaks:
            prob[a * sfreq : b * sfreq] = p
        out.append(scoring.RecordTrack(f"r{i}_s001_t000", f"r{i}", n / sfreq, seizures, prob))
    return out


def test_sweep_ovlp_sens_at_fa_matches_the_scorer() -> None:
    records = _toy_tracks()
    post = PostConfig()
    grid = [0.5, 0.58, 0.65, 0.75, 0.85, 0.95]
    sweep = threshold_sweep(records, post, grid, 0.08)
    ours = best_at_fa(sweep, "ovlp", (1.0, 2.5, 5.0, 10.0, 1000.0))
    theirs = scoring.score_tracks(records, post, (1.0, 2.5, 5.0, 10.0, 1000.0), grid, 0.08, 0)
    assert ours == theirs["sens_at_fa"]
    # 30 min in total: one false alarm is 48 FA/24h, so only a sweep point without any
    # false alarm counts at <= 10 FA/24h; tau_on 0.95 finds seizure 1 only.
    assert ours["10"] == pytest.approx(
        {"sensitivity": 0.5, "fa_per_24h": 0.0, "tau_on": 0.95, "tau_off": 0.87}
    )
    assert ours["1000"]["sensitivity"] == 1.0
    for scorer in ("taes", "szcore"):
        assert set(best_at_fa(sweep, scorer, (1.0, 10.0))) == {"1", "10"}


def test_bids_names_follow_the_szcore_layout() -> None:
    assert bids_events_name("aaaaaasf_s001_t000") == (
        "sub-aaaaaasf/ses-s001/eeg/sub-aaaaaasf_ses-s001_task-szMonitoring_run-t000_events.tsv"
    )
    assert bids_events_name("odd-name").endswith("_run-oddname_events.tsv")


def _fake_job(
    sweep_dir: Path, num: int, overrides: list[str], ovlp: tuple[float, float] | None
) -> None:
    job = sweep_dir / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if ovlp is not None:
        figures = {"sensitivity": ovlp[0], "fa_per_24h": ovlp[1]}
        (job / "metrics.json").write_text(
            json.dumps({"ovlp": figures, "taes": figures, "szcore": figures})
        )


def test_sweep_summary_lists_every_job_and_the_best_per_target(tmp_path: Path) -> None:
    _fake_job(tmp_path, 0, ["probs_dir=run", "post.tau_on=0.8"], (0.9, 12.0))
    _fake_job(tmp_path, 1, ["probs_dir=run", "post.tau_on=0.85"], (0.8, 4.0))
    _fake_job(tmp_path, 2, ["probs_dir=run", "post.tau_on=0.9"], (0.7, 0.5))
    _fake_job(tmp_path, 10, ["probs_dir=run", "post.tau_on=0.95"], None)  # crashed: no metrics.json
    md = write_sweep_summary(tmp_path).read_text()
    summary = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert [j["job"] for j in summary["jobs"]] == ["0", "1", "2", "10"]
    assert summary["best_per_fa_target"] == {"1": "2", "2.5": "2", "5": "1", "10": "1"}
    assert "| 10 | post.tau_on=0.95 | failed |" in md
    assert "probs_dir" not in md  # shared by every job: not a swept setting
    assert "| 5 | 1 | post.tau_on=0.85 | 80.00 | 4.00 |" in format_sweep_summary(summary["jobs"])


def test_eval_config_registers_the_sweep_summary_callback() -> None:
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("eval", overrides=["hardware=cpu"], return_hydra_config=True)
    assert cfg.hydra.callbacks.sweep_summary._target_.endswith("SweepSummaryCallback")


# ----------------------------------------------------------------------------- full path


def test_evaluate_writes_metrics_files_and_plots(tmp_path_factory: pytest.TempPathFactory) -> None:
    out, metrics = evaluated_run(tmp_path_factory)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    index = json.loads((out / "probs" / "index.json").read_text())
    n = len(index["records"])
    assert n == metrics["n_records"] > 0
    assert metrics["duration_s"] == pytest.approx(sum(r["duration_s"] for r in index["records"]))
    assert metrics["auroc"] is None or 0.0 <= metrics["auroc"] <= 1.0
    for scorer in ("ovlp", "taes", "szcore"):
        m = metrics[scorer]
        assert set(m["sens_at_fa"]) == set(FA_KEYS)
        assert m["fa_per_24h"] >= 0 and (m["sensitivity"] is None or 0 <= m["sensitivity"] <= 1)
        for point in m["sens_at_fa"].values():
            assert point is None or point["fa_per_24h"] <= 10.0 + 1e-9
            if point is not None:  # every operating point carries its interval
                low, high = point["sensitivity_ci95"]
                assert low <= point["sensitivity"] <= high
        low, high = m["fa_per_24h_ci95"]
        assert low <= m["fa_per_24h"] <= high
    assert metrics["bootstrap"]["n_resamples"] == 1000 and metrics["bootstrap"]["unit"] == "subject"
    assert metrics["auroc"] is None or (
        metrics["auroc_ci95"][0] <= metrics["auroc"] <= metrics["auroc_ci95"][1]
    )
    assert set(metrics["szcore_evaluation_ci95"]) == {"sample_results", "event_results"}
    assert len((out / "nedc" / "ref.list").read_text().split()) == n
    assert len(list((out / "szcore" / "hyp").rglob("*_events.tsv"))) == n
    assert len(json.loads((out / "threshold_sweep.json").read_text())) == len(TAU_GRID)
    results = (out / "results.md").read_text()
    assert "| OVLP |" in results
    assert "95 % intervals, patient-level bootstrap (1000 resamples" in results
    fa = metrics["ovlp"]["fa_per_24h_ci95"]
    assert f"{metrics['ovlp']['fa_per_24h']:.2f} [{fa[0]:.2f}, {fa[1]:.2f}]" in results
    point = metrics["ovlp"]["sens_at_fa"]["10"]  # its thresholds are listed under the table
    where = "-" if point is None else f"{point['tau_on']:.3g}/{point['tau_off']:.3g}"
    assert f"@ 10: {where}" in results.split("- OVLP:")[1].splitlines()[0]
    pngs = sorted((out / "plots").glob("*.png"))
    assert out / "plots" / "sens_fa_curve.png" in pngs and len(pngs) >= 2
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_rescoring_cached_probabilities_gives_the_same_numbers(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    out, metrics = evaluated_run(tmp_path_factory)
    cfg = eval_config([f"probs_dir={out}", f"out_dir={tmp_path}"])
    again = evaluate(cfg)
    for key in ("auroc", "ovlp", "taes", "szcore", "szcore_evaluation", "objective"):
        assert again[key] == metrics[key], key
    assert not (tmp_path / "probs").exists()  # re-scoring never runs or caches the model


def test_rescoring_with_other_thresholds_changes_the_operating_point_only(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    out, metrics = evaluated_run(tmp_path_factory)
    cfg = eval_config(
        [f"probs_dir={out}", f"out_dir={tmp_path}", "post.tau_on=0.05", "post.tau_off=0.01"]
    )
    low = evaluate(cfg)
    assert low["ovlp"]["sens_at_fa"] == metrics["ovlp"]["sens_at_fa"]  # the sweep ignores tau
    assert low["post"]["tau_on"] == 0.05

    def detected_s(run: Path) -> float:
        rows = json.loads((run / "per_record.json").read_text())
        return sum(b - a for r in rows for a, b, _ in r["detected"])

    # Lower hysteresis thresholds detect a superset of samples.
    assert detected_s(tmp_path) >= detected_s(out)


def test_rerun_resumes_from_the_cache(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import brain_go_brr.evaluation.evaluate as ev

    out, metrics = evaluated_run(tmp_path_factory)
    ckpt, data = trained_checkpoint(tmp_path_factory)
    shutil.copytree(out / "probs", tmp_path / "probs")
    dropped = sorted((tmp_path / "probs").glob("*.npz"))[0]
    dropped.unlink()
    calls: list[int] = []
    real = ev.predict_record

    def counting(*args: Any, **kwargs: Any) -> np.ndarray:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "predict_record", counting)
    cfg = eval_config([*data, f"ckpt_path={ckpt}", f"out_dir={tmp_path}", "split=dev"])
    again = evaluate(cfg)
    assert len(calls) == 1 and dropped.exists()
    assert again["ovlp"] == metrics["ovlp"] and again["auroc"] == metrics["auroc"]


def test_hypothesis_files_score_the_same_with_the_score_command(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from brain_go_brr.cli import main as cli_main

    out, metrics = evaluated_run(tmp_path_factory)
    report = tmp_path / "score.json"
    nedc = out / "nedc"
    assert (
        cli_main(["score", str(nedc / "ref.list"), str(nedc / "hyp.list"), "--json", str(report)])
        == 0
    )
    scored = json.loads(report.read_text())
    for key in ("targets", "hits", "misses", "false_alarms", "sensitivity"):
        assert scored["ovlp"][key] == metrics["ovlp"][key], key
    assert scored["ovlp"]["fa_per_24h"] == pytest.approx(metrics["ovlp"]["fa_per_24h"], abs=1e-6)
    for key in ("hits", "misses", "false_alarms"):  # csv_bi keeps 4 decimals of each time
        assert scored["taes"][key] == pytest.approx(metrics["taes"][key], abs=1e-3), key
    for key in ("sensitivity", "precision", "f1", "fp_per_24h"):
        assert scored["szcore"][key] == pytest.approx(metrics["szcore"][key], abs=1e-9), key
    # the events.tsv trees give the official SzCORE figures of metrics.json, every digit
    tsv_report = tmp_path / "tsv.json"
    sz = out / "szcore"
    assert cli_main(["score", str(sz / "ref"), str(sz / "hyp"), "--json", str(tsv_report)]) == 0
    from_tsv = json.loads(tsv_report.read_text())
    for key in ("szcore_evaluation", "szcore_evaluation_pooled"):
        assert from_tsv[key] == metrics[key], key
    assert from_tsv["szcore"].items() <= metrics["szcore"].items()


# ----------------------------------------------------------------------------- errors


def test_checkpoint_of_another_model_names_the_differing_keys(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from brain_go_brr.training.train import CheckpointMismatchError

    ckpt, data = trained_checkpoint(tmp_path_factory)
    cfg = eval_config(
        [*data, f"ckpt_path={ckpt}", f"out_dir={tmp_path}", "split=dev", "model.node_dim=16"]
    )
    with pytest.raises(CheckpointMismatchError, match=r"shape differs [1-9]"):
        evaluate(cfg)


def test_missing_split_and_missing_inputs_are_clear_errors(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    ckpt, data = trained_checkpoint(tmp_path_factory)
    with pytest.raises(ValueError, match=r"split='nosuch' is not a split"):
        evaluate(eval_config([*data, f"ckpt_path={ckpt}", f"out_dir={tmp_path}", "split=nosuch"]))
    with pytest.raises(ValueError, match="pass ckpt_path="):
        evaluate(eval_config([f"out_dir={tmp_path}"]))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        evaluate(eval_config([*data, f"ckpt_path={tmp_path / 'x.ckpt'}", f"out_dir={tmp_path}"]))
    with pytest.raises(ProbCacheError, match="no cached probabilities"):
        evaluate(eval_config([f"probs_dir={tmp_path}", f"out_dir={tmp_path / 'o'}"]))


def test_detect_command_reproduces_the_evaluation_track(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from brain_go_brr.annotations import read_csv_bi
    from brain_go_brr.cli import main as cli_main

    out, _ = evaluated_run(tmp_path_factory)
    ckpt, _ = trained_checkpoint(tmp_path_factory)
    cache = ProbCache.open_existing(out)
    rec = next(iter(cache.records.values()))
    edf = tiny_corpus(tmp_path_factory) / rec.path
    hyp, probs = tmp_path / "hyp.csv_bi", tmp_path / f"{edf.stem}.probs.npy"
    argv = ["detect", str(edf), "--ckpt", str(ckpt), "--stride-s", "60"]
    assert cli_main([*argv, "--out", str(hyp), "--probs"]) == 0
    np.testing.assert_allclose(np.load(probs), cache.load(rec.record_id), atol=0.5 / 255 + 1e-6)
    assert read_csv_bi(hyp).duration_s == pytest.approx(rec.duration_s)


@pytest.mark.slow
def test_optuna_sweep_over_post_rescores_the_cache(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """The README's ``python evaluate.py probs_dir=... -m hydra/sweeper=optuna ...``."""
    import os
    import subprocess
    import sys

    out, _ = evaluated_run(tmp_path_factory)
    sweep_dir = tmp_path / "sweep"
    args = [
        sys.executable, str(Path(__file__).resolve().parents[1] / "evaluate.py"), "-m",
        f"probs_dir={out}", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
        "hydra.sweeper.n_trials=3", "post.tau_on=interval(0.8,0.99)",
        "post.tau_off=interval(0.5,0.8)", "post.closing_samples=range(11,101,10)",
        f"hydra.sweep.dir={sweep_dir}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert len(jobs) == 3
    objectives = [json.loads((job / "metrics.json").read_text())["objective"] for job in jobs]
    for job in jobs:
        assert not (job / "probs").exists()  # re-scoring only: the model never ran
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        tau_on = float(overrides.split("post.tau_on=")[1].split()[0])
        assert 0.8 <= tau_on <= 0.99
    best = (sweep_dir / "optimization_results.yaml").read_text()
    assert f"best_value: {max(objectives)}" in best
    assert (sweep_dir / "sweep_summary.md").is_file()


def test_seed_summary_gives_mean_and_sd_and_lists_failed_jobs(tmp_path: Path) -> None:
    from brain_go_brr.evaluation.sweep import SeedSummaryCallback, write_seed_summary

    def job(name: str, overrides: list[str], metrics: dict[str, Any] | None) -> None:
        folder = tmp_path / name
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        if metrics is not None:
            (folder / "metrics.json").write_text(json.dumps(metrics))

    def run(auroc: float, sens: float) -> dict[str, Any]:  # what train.py writes
        best = {"epoch": 3, "val/auroc": auroc, "val/sens_at_10fa": sens}
        return {"best": best, "final": {"val/auroc": 0.5}, "best_ckpt_path": "", "seed": 0}

    job("0", ["seed=0"], run(0.90, 0.6))
    job("1", ["seed=1"], run(0.80, 0.8))
    job("2", ["seed=2"], run(0.85, 0.7))
    job("3", ["seed=3"], None)
    md = write_seed_summary(tmp_path)
    summary = json.loads((tmp_path / "seed_summary.json").read_text())
    auroc = summary["figures"]["val/auroc"]
    assert auroc["mean"] == pytest.approx(0.85) and auroc["sd"] == pytest.approx(0.05)
    assert auroc["n"] == 3 and "epoch" not in summary["figures"]
    assert summary["failed"] == ["3"]
    text = md.read_text()
    assert "| val/auroc | 0.8500 ± 0.0500 | 3 |" in text and "3 (seed=3)" in text
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    (tmp_path / "seed_summary.md").unlink()
    SeedSummaryCallback(when_varying=("ckpt_path",)).on_multirun_end(cfg)
    assert not (tmp_path / "seed_summary.md").exists()  # seeds vary, not checkpoints
    SeedSummaryCallback(when_varying=("seed",)).on_multirun_end(cfg)
    assert (tmp_path / "seed_summary.md").exists()


def test_job_figures_of_an_evaluation_are_named_by_path(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from brain_go_brr.evaluation.sweep import job_figures

    _, metrics = evaluated_run(tmp_path_factory)
    figures = job_figures(json.loads(json.dumps(metrics)))
    assert figures["ovlp/fa_per_24h"] == metrics["ovlp"]["fa_per_24h"]
    assert "szcore_evaluation/event_results/fpRate" in figures
    assert not [k for k in figures if "ci95" in k or k.startswith(("post/", "bootstrap/"))]
