"""``make demo`` (``python -m brain_go_brr.demo``): the whole pipeline on a CPU, end to end.

1. ``conf/train.yaml`` with ``experiment=demo``: the synthetic corpus (20 patients, 8 h,
   TUSZ layout) is generated and prepared into the window cache on first use, then
   ``model=v3_tiny`` trains on the CPU with W&B offline (:func:`brain_go_brr.training.train`).
2. ``conf/eval.yaml``: the best checkpoint (``val/sens_at_10fa_auroc``) runs over every whole
   recording of the synthetic dev split and is scored (:func:`brain_go_brr.evaluation.evaluate`).
3. The results table is printed, with where the plots are, and whether the run learnt what
   the demo promises: OVLP sensitivity >= 90 % at <= 5 false alarms per 24 h on dev.
4. A held-out check: the thresholds of that dev operating point (chosen on dev, so the dev
   number is optimistic) are applied unchanged to the synthetic eval split, whose patients
   neither training nor the choice saw (``runs/demo/eval_eval/``).

Outputs go to ``runs/demo/`` (training), ``runs/demo/eval_dev/`` and ``runs/demo/eval_eval/``
(evaluation), relative to
the working directory. Running it again continues the training run from its last checkpoint
(a finished run returns at once) and evaluates afresh. Extra arguments are Hydra overrides of
the training config, e.g. ``python -m brain_go_brr.demo trainer.max_epochs=4``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from brain_go_brr.paths import conf_dir

#: What the demo must show: OVLP sensitivity at this FA/24h rate, at least this fraction.
TARGET_FA_PER_24H = 5.0
TARGET_SENSITIVITY = 0.90


def compose_train(run_root: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/train.yaml`` with ``experiment=demo``, run folder ``run_root/demo``.

    When that folder already holds ``last.ckpt`` the run continues from it.
    """
    train_dir = run_root / "demo"
    resume = ["ckpt_path=last"] if (train_dir / "checkpoints" / "last.ckpt").exists() else []
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                "experiment=demo",
                f"paths.root={run_root}",
                f"paths.output_dir={train_dir}",
                *resume,
                *overrides,
            ],
        )


def compose_eval(
    train_cfg: DictConfig,
    ckpt_path: str,
    out_dir: Path,
    split: str,
    post: Mapping[str, float] | None = None,
) -> DictConfig:
    """``conf/eval.yaml`` for ``ckpt_path`` with the training run's data, model and post.

    Copying the resolved groups (rather than naming the same options again) keeps every
    override of the training run, so the checkpoint fits the model and ``split`` is the
    split validation used. ``post`` (e.g. ``{"tau_on": 0.5}``) replaces those post-processing keys.
    """
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose(
            "eval",
            overrides=[
                "hardware=cpu",
                f"ckpt_path={ckpt_path}",
                f"out_dir={out_dir}",
                f"split={split}",
            ],
        )
    for group in ("data", "model", "post"):
        cfg[group] = OmegaConf.create(OmegaConf.to_container(train_cfg[group], resolve=True))
    for key, value in (post or {}).items():
        if key not in cfg.post:
            raise KeyError(f"post.{key}: not a post-processing setting ({sorted(cfg.post)})")
        cfg.post[key] = float(value)
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("WANDB_MODE", "offline")  # the demo never touches the network
    from brain_go_brr.evaluation.evaluate import evaluate
    from brain_go_brr.training import train

    overrides = list(sys.argv[1:] if argv is None else argv)
    run_root = Path("runs")
    t0 = time.perf_counter()
    train_cfg = compose_train(run_root, overrides)
    train_metrics: dict[str, Any] = train(train_cfg)
    t_train = time.perf_counter() - t0
    ckpt = train_metrics.get("best_ckpt_path") or train_metrics.get("last_ckpt_path")
    if not ckpt:
        print("demo: training wrote no checkpoint; see the log above", file=sys.stderr)
        return 1

    split = str(train_cfg.data.splits.val)
    eval_dir = Path(str(train_cfg.paths.output_dir)) / f"eval_{split}"
    if eval_dir.exists():
        shutil.rmtree(eval_dir)  # its cached probabilities belong to an earlier checkpoint
    metrics = evaluate(compose_eval(train_cfg, str(ckpt), eval_dir, split))

    at_target = metrics["ovlp"]["sens_at_fa"][f"{TARGET_FA_PER_24H:g}"]
    sens = at_target["sensitivity"] if at_target else None
    ok = sens is not None and sens >= TARGET_SENSITIVITY

    # Held out: the dev operating point's thresholds, unchanged, on the eval split's patients.
    held_out = "not run (no dev operating point at the target)"
    test_split = str(train_cfg.data.splits.test)
    test_dir = Path(str(train_cfg.paths.output_dir)) / f"eval_{test_split}"
    if test_dir.exists():
        shutil.rmtree(test_dir)
    if at_target is not None:
        thresholds = {"tau_on": at_target["tau_on"], "tau_off": at_target["tau_off"]}
        test = evaluate(compose_eval(train_cfg, str(ckpt), test_dir, test_split, thresholds))
        held_out = (
            f"OVLP sensitivity {_pct(test['ovlp'], 'sensitivity')} at "
            f"{_rate(test['ovlp'])} FA/24h, TAES {_pct(test['taes'], 'sensitivity')}, AUROC "
            f"{_auroc(test)} (results {test_dir / 'results.md'})"
        )
    t_total = time.perf_counter() - t0

    print(
        f"\ndemo: trained in {t_train / 60:.1f} min, total {t_total / 60:.1f} min; "
        f"checkpoint {ckpt}\n"
        f"demo: dev OVLP sensitivity at <= {TARGET_FA_PER_24H:g} FA/24h: "
        + (
            "not reached"
            if sens is None
            else f"{_pct(at_target, 'sensitivity')} (FA/24h {at_target['fa_per_24h']:.2f}, "
            f"threshold sweep at tau_on {at_target['tau_on']:.3g}, tau_off "
            f"{at_target['tau_off']:.3g}; dev AUROC {_auroc(metrics)})"
        )
        + f" -> target >= {100 * TARGET_SENSITIVITY:.0f} %: {'met' if ok else 'NOT met'}\n"
        f"demo: results {eval_dir / 'results.md'}, plots {eval_dir / 'plots'}\n"
        f"demo: held out ({test_split} split at those thresholds): {held_out}\n"
        "demo: [brackets] are 95 % patient-level bootstrap intervals\n"
        f"demo: verdict: quality target {'met' if ok else 'NOT met'} (the pipeline ran; "
        "exit status 0 either way)"
    )
    return 0


def _ci(ci: list[float] | None, scale: float, digits: int) -> str:
    return "" if not ci else f" [{scale * ci[0]:.{digits}f}, {scale * ci[1]:.{digits}f}]"


def _pct(figures: Mapping[str, Any], key: str) -> str:
    """``86.2 % [79.1, 92.0]``."""
    value = figures.get(key)
    if value is None:
        return "-"
    return f"{100 * value:.1f} %{_ci(figures.get(f'{key}_ci95'), 100, 1)}"


def _rate(figures: Mapping[str, Any]) -> str:
    return f"{figures['fa_per_24h']:.2f}{_ci(figures.get('fa_per_24h_ci95'), 1, 2)}"


def _auroc(metrics: Mapping[str, Any]) -> str:
    value = metrics.get("auroc")
    return "-" if value is None else f"{value:.3f}{_ci(metrics.get('auroc_ci95'), 1, 3)}"


if __name__ == "__main__":
    raise SystemExit(main())
