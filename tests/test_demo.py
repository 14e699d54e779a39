"""``python -m brain_go_brr.demo`` end to end on the tiny corpus (a few steps, not the recipe)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_fixtures import tiny_corpus
from omegaconf import OmegaConf

from brain_go_brr import demo


def test_compose_eval_takes_the_training_groups_and_replaces_post_keys(tmp_path: Path) -> None:
    train_cfg = demo.compose_train(tmp_path, ["post.min_duration_s=4.0"])
    cfg = demo.compose_eval(train_cfg, "x.ckpt", tmp_path / "e", "eval", {"tau_on": 0.5})
    assert cfg.split == "eval" and cfg.ckpt_path == "x.ckpt"
    assert cfg.model.tcn_channels == train_cfg.model.tcn_channels  # v3_tiny, from the run
    assert cfg.post.tau_on == 0.5 and cfg.post.min_duration_s == 4.0
    assert cfg.post.tau_off == train_cfg.post.tau_off
    assert train_cfg.data.eval_stride_s == 60.0 and cfg.data.eval_stride_s == demo.EVAL_STRIDE_S
    with pytest.raises(KeyError, match=r"post\.tau_up"):
        demo.compose_eval(train_cfg, "x.ckpt", tmp_path / "e", "eval", {"tau_up": 0.5})


def _tiny_demo(corpus: Path, work: Path) -> list[str]:
    """The demo's overrides for the tiny corpus: a few steps, not the recipe."""
    return [
        "data=synthetic", f"data.root={corpus}", f"data.cache_dir={work / 'cache'}",
        "data.synthetic.n_patients=5", "data.synthetic.hours=0.3", "data.synthetic.seed=3",
        "data.eval_stride_s=60", "data.prepare_workers=1", "logger=none",
        "module.plots_dir=null", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
    ]  # fmt: skip


@pytest.mark.slow
def test_demo_trains_scores_dev_and_applies_the_dev_thresholds_to_eval(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpus = tiny_corpus(tmp_path_factory)
    work = tmp_path_factory.mktemp("demo")
    monkeypatch.chdir(work)
    status = demo.main(_tiny_demo(corpus, work))
    out = capsys.readouterr().out
    dev = json.loads((work / "runs/demo/eval_dev/metrics.json").read_text())
    test = json.loads((work / "runs/demo/eval_eval/metrics.json").read_text())
    point = dev["ovlp"]["sens_at_fa"]["5"]
    assert status == 0  # a quality miss is a verdict, not a crash
    # The sweep's highest thresholds detect nothing (0 FA/24h), so a point always exists here.
    assert point is not None
    assert (demo.TARGET_SENSITIVITY, demo.TARGET_FA_PER_24H, demo.TARGET_AUROC) == (0.75, 10, 0.95)
    met = (
        test["ovlp"]["sensitivity"] >= demo.TARGET_SENSITIVITY
        and test["ovlp"]["fa_per_24h"] <= demo.TARGET_FA_PER_24H
        and test["auroc"] is not None
        and test["auroc"] >= demo.TARGET_AUROC
    )
    assert f"demo: verdict: quality target {'met' if met else 'NOT met'}" in out
    assert "thresholds chosen at <= 5 FA/24h: tau_on" in out
    assert "demo: held out (eval split at those thresholds)" in out
    assert test["split"] == "eval"
    assert test["post"]["tau_on"] == pytest.approx(point["tau_on"])
    assert test["post"]["tau_off"] == pytest.approx(point["tau_off"])
    assert f"OVLP sensitivity {100 * test['ovlp']['sensitivity']:.1f} %" in out
    saved = OmegaConf.load(work / "runs/demo/config.yaml")
    assert saved.model.node_dim == 8  # v3_tiny: the demo's model, not the default v3


@pytest.mark.slow
def test_two_demo_runs_print_identical_figures(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Same seed, same demo: every figure line it prints (not its timings or paths)."""
    corpus = tiny_corpus(tmp_path_factory)

    def figures() -> tuple[list[str], dict]:
        work = tmp_path_factory.mktemp("demo_again")
        monkeypatch.chdir(work)
        demo.main(_tiny_demo(corpus, work))
        out = capsys.readouterr().out
        lines = [line for line in out.splitlines() if "sensitivity" in line or "verdict" in line]
        lines = [line.split(" (results ")[0] for line in lines]  # the run folder differs
        assert any("AUROC" in line for line in lines)
        metrics = json.loads((work / "runs/demo/eval_eval/metrics.json").read_text())
        metrics.pop("source")  # the checkpoint's path and mtime
        return lines, metrics

    first, second = figures(), figures()
    assert first[0] and first == second


def test_seed_table_gives_each_figure_per_seed_and_mean_sd() -> None:
    def result(sens: float, auroc: float, ok: bool) -> dict:
        return {
            "dev": {"auroc": auroc},
            "eval": {
                "ovlp": {"sensitivity": sens, "fa_per_24h": 2.0, "fa_per_24h_ci95": [0.0, 4.5]},
                "taes": {"sensitivity": sens / 2},
                "auroc": auroc,
            },
            "ok": ok,
        }

    table = demo.seed_table({1: result(0.8, 0.96, True), 0: result(0.6, None, False)})
    lines = table.splitlines()
    assert lines[0] == "| figure | seed 0 | seed 1 | mean ± sd |"
    # sd of (60, 80) with ddof=1 is 14.14
    assert "| eval OVLP sensitivity (%) | 60.0 | 80.0 | 70.0 ± 14.1 |" in lines
    assert "| eval AUROC | - | 0.960 | - |" in lines  # one known value: no spread
    # a figure's interval follows it in its cell
    assert "| eval OVLP FA/24h | 2.00 [0.00, 4.50] | 2.00 [0.00, 4.50] | 2.00 ± 0.00 |" in lines
    assert lines[-1] == "| quality target met | NOT met | met | 1 of 2 |"


def test_seeds_argument_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--seeds", "a,b"]) == 2
    assert "--seeds needs integers" in capsys.readouterr().err
