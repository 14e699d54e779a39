"""``evaluate(cfg) -> metrics``: a checkpoint over whole recordings of a split, scored.

The config is ``conf/eval.yaml`` composed by Hydra (``python evaluate.py``); this module and
``evaluate.py`` are the only readers of it. Two modes:

* ``ckpt_path=...``: load the detector (:func:`brain_go_brr.inference.load_detector`,
  ``weights_only=True``), run it over every whole recording of ``split`` in overlapping
  60 s windows (``data.eval_stride_s``; the last window aligned to the record's end),
  stitch the windows (:func:`brain_go_brr.post.stitch_windows`) and cache each record's
  256 Hz probability track (:mod:`brain_go_brr.evaluation.probs`). Records already in the
  cache are skipped, so re-running into the same run folder (``hydra.run.dir=...``) resumes.
* ``probs_dir=RUN``: re-score the cached probabilities of an earlier run without the
  model (what ``-m post.tau_on=...`` sweeps and the Optuna sweeper use).

Then, for both: post-processing with ``post.*`` and scoring with the project's scorer
(:mod:`brain_go_brr.scoring.metrics`): NEDC OVLP and TAES, SzCORE, sample AUROC, and one
threshold sweep (``tau_on`` over ``threshold_sweep.tau_grid``, ``tau_off = tau_on -
tau_gap``) from which ``sens_at_fa`` is taken for each scorer: the best sensitivity whose
FA/24h is at or under the target, or null.

Run folder (``out_dir``)::

    metrics.json          the figures below; also what this function returns
    results.md            the results table (also printed)
    threshold_sweep.json  sensitivity and FA/24h of every scorer at every threshold pair
    per_record.json       per record: duration, reference/detected events, OVLP counts
    probs/                cached probability tracks (ckpt_path mode only)
    nedc/ref/*.csv_bi, nedc/hyp/*.csv_bi, nedc/ref.list, nedc/hyp.list
                          NEDC EEG Eval v6.0.0 input: nedc_eeg_eval nedc/ref.list nedc/hyp.list
    szcore/ref/*_events.tsv, szcore/hyp/*_events.tsv   BIDS events for SzCORE
    plots/sens_fa_curve.png, plots/trace_<record_id>.png

``metrics.json``::

    {"split", "n_records", "duration_s", "source", "post": {...}, "auroc",
     "ovlp":   {"targets", "hits", "misses", "false_alarms", "sensitivity", "fa_per_24h",
                "sens_at_fa": {"1": {"sensitivity", "fa_per_24h", "tau_on", "tau_off"} | null,
                               "2.5": ..., "5": ..., "10": ...}},
     "taes":   {same keys},
     "szcore": {"sensitivity", "precision", "f1", "fp_per_24h", "fa_per_24h", "sens_at_fa"},
     "szcore_evaluation": {"sample_results": {...}, "event_results": {...}},
     "szcore_evaluation_pooled": {...}, "objective",
     "operating_point": {"post", "fa_target", "scorer", "split", "figures", "saved_to"}}

``szcore_evaluation`` and ``szcore_evaluation_pooled`` are the official SzCORE figures in
szcore-evaluation's own structure (per-subject mean with ``*_std``, and pooled; sample- and
event-based; ``null`` where it gives NaN): what it prints for ``szcore/ref`` and
``szcore/hyp``. ``szcore`` is its pooled event-based block under the project's names, the
scorer of the results table and of ``sens_at_fa``.

Sensitivities are fractions; FA/24h counts seizure false alarms over the total reference
duration. ``objective`` (what ``evaluate.py`` returns to a sweeper) is the OVLP sensitivity
at the configured post-processing, minus 1 when its OVLP FA/24h exceeds
``objective.max_fa_per_24h``, so that every setting within the FA budget ranks above every
setting outside it.

``operating_point`` (``ckpt_path`` mode on the validation split only): the post-processing
of the ``sens @ operating_point.fa_target`` point of ``operating_point.scorer``, with the
figures it reached there, saved beside the checkpoint for ``detect`` and ``szcore``
(:mod:`brain_go_brr.inference`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from brain_go_brr.annotations import Event, format_csv_bi
from brain_go_brr.config import plain
from brain_go_brr.evaluation.probs import CachedRecord, ProbCache
from brain_go_brr.inference import device_and_autocast, load_detector, predict_record
from brain_go_brr.io import atomic_write_json, atomic_write_text
from brain_go_brr.post import PostConfig
from brain_go_brr.runtime import tune_cpu_allocator
from brain_go_brr.scoring import bootstrap, nedc
from brain_go_brr.scoring import metrics as scoring
from brain_go_brr.scoring.plots import plot_record_trace, plot_sens_fa_curve
from brain_go_brr.scoring.sweep import (
    SCORERS,
    SweepCounts,
    best_at_fa,
    runs_to_events,
    sens_at_fa_intervals,
    threshold_sweep,
)
from brain_go_brr.scoring.writers import write_events_tsv

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- inference


def _device_and_autocast(cfg: DictConfig) -> tuple[torch.device, torch.dtype | None]:
    """Device and autocast dtype from the hardware preset (``trainer.accelerator/precision``)."""
    trainer = cfg.get("trainer") or {}
    accelerator = str(trainer.get("accelerator", "auto"))
    return device_and_autocast(accelerator, str(trainer.get("precision", "32-true")))


def _ckpt_source(ckpt_path: Path) -> dict[str, Any]:
    stat = ckpt_path.stat()
    return {
        "ckpt_path": str(ckpt_path.resolve()),
        "ckpt_bytes": stat.st_size,
        "ckpt_mtime_ns": stat.st_mtime_ns,
    }


def predict_split(cfg: DictConfig, probs_root: Path) -> ProbCache:
    """Run ``cfg.ckpt_path`` over every record of ``cfg.split`` not yet in ``probs_root``."""
    from brain_go_brr.data.datamodule import TUSZDataModule
    from brain_go_brr.data.sampling import window_starts

    split = str(cfg.split)
    splits = list((cfg.data.get("splits") or {}).values())
    if split not in splits:
        raise ValueError(
            f"split={split!r} is not a split of this data config (data.splits: {splits}); "
            f"pass one of them, e.g. split={splits[1] if len(splits) > 1 else 'dev'}"
        )
    ckpt_path = Path(str(cfg.ckpt_path)).expanduser()
    if not ckpt_path.is_file():
        raise FileNotFoundError(
            f"ckpt_path={cfg.ckpt_path}: no such checkpoint; training writes "
            "runs/<run_name>/checkpoints/best.ckpt"
        )
    datamodule: TUSZDataModule = hydra.utils.instantiate(cfg.data, _convert_="all")
    split_cache = datamodule.cache(split)  # a missing split raises, naming prepare
    if len(split_cache) == 0:
        raise ValueError(
            f"split {split!r} of cache {datamodule.cache_dir} holds no record (all skipped? "
            "see prepare_report.json there)"
        )
    cache = ProbCache(probs_root, split=split, source=_ckpt_source(ckpt_path))
    todo = [i for i, r in enumerate(split_cache.records) if r.record_id not in cache]
    if not todo:
        log.info("all %d records of %s already cached in %s", len(split_cache), split, probs_root)
        return cache
    detector = load_detector(ckpt_path, cfg.model)
    device, autocast_dtype = _device_and_autocast(cfg)
    detector.to(device)
    batch_size = int(
        cfg.get("batch_size") or cfg.data.get("eval_batch_size") or cfg.data.batch_size
    )
    window, stride = datamodule.window_samples, datamodule.eval_stride_samples
    n_windows = sum(window_starts(int(split_cache.n_samples[i]), window, stride).size for i in todo)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("windows"),
        TimeRemainingColumn(),
    )
    skipped = len(split_cache) - len(todo)
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(
            f"{split}: {len(todo)} records" + (f" ({skipped} cached)" if skipped else ""),
            total=n_windows,
        )
        for i in todo:
            info = split_cache.records[i]
            prob = predict_record(
                detector,
                split_cache.signals(i),
                window,
                stride,
                batch_size,
                device,
                autocast_dtype,
                on_batch=lambda n: progress.advance(task, n),
            )
            record = CachedRecord(
                info.record_id, info.patient, info.path, info.n_samples, info.duration_s,
                list(info.seizures),
            )  # fmt: skip
            cache.add(record, prob)
    return cache


# ----------------------------------------------------------------------------- scoring


def score_cache(
    records: Sequence[scoring.RecordTrack],
    post: PostConfig,
    fa_targets: Sequence[float],
    tau_grid: Sequence[float],
    tau_gap: float,
    max_fa_per_24h: float,
    n_resamples: int = 1000,
    seed: int = 0,
    scorer: scoring.SweepScorer | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics as in the module docstring, threshold sweep rows) of cached tracks; with
    ``n_resamples`` > 0 every figure has its 95 % patient-level bootstrap interval.
    ``scorer``: a :class:`~brain_go_brr.scoring.sweep.SweepScorer` of these records and
    ``post`` (built here when not given); the tracks are packed once for every figure."""
    scorer = scoring.SweepScorer(records, post) if scorer is None else scorer
    # The scorer's own sweep is skipped (empty grid): one sweep below serves all three scorers.
    scored = scoring.score_tracks(
        records, post, fa_targets, (), tau_gap, n_resamples=n_resamples, seed=seed, scorer=scorer
    )
    result: dict[str, Any] = dict(scored)
    for unused in ("sens_at_fa", "curve"):
        result.pop(unused, None)
    counts = SweepCounts({}, {}) if n_resamples > 0 else None
    sweep = threshold_sweep(records, post, tau_grid, tau_gap, counts, sweeper=scorer)
    result["szcore"] = {**result["szcore"], "fa_per_24h": result["szcore"]["fp_per_24h"]}
    if "fp_per_24h_ci95" in result["szcore"]:
        result["szcore"]["fa_per_24h_ci95"] = result["szcore"]["fp_per_24h_ci95"]
    for name in SCORERS:
        result[name] = {**result[name], "sens_at_fa": best_at_fa(sweep, name, fa_targets)}
    if counts is not None:
        boot = bootstrap.Bootstrap([r.subject for r in records], n_resamples, seed)
        sens_at_fa_intervals(result, counts, boot)
    sens = float(result["ovlp"]["sensitivity"] or 0.0)
    fa = result["ovlp"]["fa_per_24h"]
    result["objective"] = sens if fa is not None and fa <= max_fa_per_24h else sens - 1.0
    return result, sweep


# ----------------------------------------------------------------------------- reports


def _ci(ci: list[float] | None, scale: float, digits: int) -> str:
    return "" if not ci else f" [{scale * ci[0]:.{digits}f}, {scale * ci[1]:.{digits}f}]"


def _pct(value: float | None, ci: list[float] | None = None) -> str:
    """``86.2 % [79.1, 92.0]``: a sensitivity and its 95 % interval, in percent."""
    return "-" if value is None else f"{100 * value:.1f} %{_ci(ci, 100, 1)}"


def _num(value: float | None, ci: list[float] | None = None) -> str:
    return "-" if value is None else f"{value:.2f}{_ci(ci, 1, 2)}"


def _auroc(value: float | None, ci: list[float] | None = None) -> str:
    return "- (one class only)" if value is None else f"{value:.4f}{_ci(ci, 1, 4)}"


def results_table(
    metrics: dict[str, Any], fa_targets: Sequence[float]
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the results table: per scorer, the operating point and sens@FA."""
    keys = [scoring.fa_key(t) for t in fa_targets]
    header = ["scorer", "sensitivity", "FA/24h", *(f"sens @ {k} FA/24h" for k in keys)]
    rows = []
    for name in SCORERS:
        m = metrics[name]
        at = [
            _pct(p["sensitivity"], p.get("sensitivity_ci95")) if (p := m["sens_at_fa"][k]) else "-"
            for k in keys
        ]
        rows.append([
            name.upper(), _pct(m["sensitivity"], m.get("sensitivity_ci95")),
            _num(m["fa_per_24h"], m.get("fa_per_24h_ci95")), *at,
        ])  # fmt: skip
    return header, rows


def _operating_points(scorer_metrics: dict[str, Any], fa_targets: Sequence[float]) -> str:
    parts = []
    for key in (scoring.fa_key(t) for t in fa_targets):
        point = scorer_metrics["sens_at_fa"][key]
        where = "-" if point is None else f"{point['tau_on']:.3g}/{point['tau_off']:.3g}"
        parts.append(f"@ {key}: {where}")
    return ", ".join(parts)


def _markdown(metrics: dict[str, Any], fa_targets: Sequence[float]) -> str:
    header, rows = results_table(metrics, fa_targets)
    post = metrics["post"]
    lines = [
        f"# Evaluation: {metrics['split']} split",
        "",
        f"- records: {metrics['n_records']}, {metrics['duration_s'] / 3600:.2f} h",
        f"- source: {metrics['source']}",
        f"- post-processing: tau_on {post['tau_on']}, tau_off {post['tau_off']}, "
        f"opening {post['opening_samples']}, closing {post['closing_samples']} samples, "
        f"min {post['min_duration_s']} s, max {post['max_duration_s']} s, merge gap "
        f"{post['merge_gap_s']} s",
        f"- sample AUROC: {_auroc(metrics['auroc'], metrics.get('auroc_ci95'))}",
        f"- {_interval_note(metrics)}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "Sensitivity and FA/24h at the configured post-processing; `sens @ k` is the best "
        "sensitivity of the threshold sweep whose FA/24h is at most k (`-`: not reached).",
        "",
        "SZCORE in this table is SzCORE's event-based figure pooled over records.",
        "",
        "Thresholds (tau_on/tau_off) of the `sens @ k` operating points:",
        "",
        *(f"- {name.upper()}: {_operating_points(metrics[name], fa_targets)}" for name in SCORERS),
        "",
        *_szcore_markdown(metrics),
    ]
    return "\n".join(lines) + "\n"


def _interval_note(metrics: dict[str, Any]) -> str:
    boot = metrics.get("bootstrap")
    if not boot:
        return "intervals: off (bootstrap=0)"
    return (
        f"[brackets]: 95 % intervals, patient-level bootstrap ({boot['n_resamples']} resamples "
        f"of {boot['n_subjects']} subjects, seed {boot['seed']})"
    )


def _frac(value: float | None, ci: list[float] | None = None) -> str:
    return "-" if value is None else f"{value:.4f}{_ci(ci, 1, 4)}"


def _szcore_markdown(metrics: dict[str, Any]) -> list[str]:
    """The official SzCORE figures (szcore-evaluation 0.0.7) at the configured post-processing."""
    lines = [
        "## SzCORE (the official scorer's figures, szcore-evaluation 0.0.7)",
        "",
        "At the configured post-processing, on the `szcore/ref` and `szcore/hyp` trees; "
        "subjects: mean ± standard deviation over subjects (the leaderboard's figure), "
        "pooled: every record's counts summed. Fractions; FP/24h per 24 h of recording; "
        "[brackets]: 95 % patient-level bootstrap intervals.",
        "",
        "| scoring | averaging | sensitivity | precision | F1 | FP/24h |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (("szcore_evaluation", "subjects"), ("szcore_evaluation_pooled", "pooled")):
        for mode in ("event", "sample"):
            block = metrics[key][f"{mode}_results"]
            cis = (metrics.get(f"{key}_ci95") or {}).get(f"{mode}_results") or {}
            cells = []
            for name in ("sensitivity", "precision", "f1", "fpRate"):
                cell = _frac(block[name])
                if f"{name}_std" in block and block[name] is not None:
                    cell += f" ± {_frac(block[f'{name}_std'])}"
                cells.append(cell + _ci(cis.get(name), 1, 4))
            lines.append(f"| {mode}-based | {label} | " + " | ".join(cells) + " |")
    return lines


def print_results(
    metrics: dict[str, Any], fa_targets: Sequence[float], console: Console | None = None
) -> None:
    header, rows = results_table(metrics, fa_targets)
    auroc = metrics["auroc"]
    table = Table(
        title=f"{metrics['split']}: {metrics['n_records']} records, "
        f"{metrics['duration_s'] / 3600:.2f} h, AUROC {_auroc(auroc, metrics.get('auroc_ci95'))}"
    )
    for col in header:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    from brain_go_brr.scoring.cli import szcore_table

    console = console or Console()
    console.print(table)
    console.print(szcore_table(metrics))


def write_nedc_files(
    out_dir: Path, records: Sequence[CachedRecord], hyps: Sequence[list[Event]]
) -> tuple[Path, Path]:
    """Reference and hypothesis csv_bi per record plus ``ref.list``/``hyp.list`` (absolute)."""
    ref_paths: list[str] = []
    hyp_paths: list[str] = []
    for rec, hyp in zip(records, hyps, strict=True):
        for kind, events, paths in (("ref", rec.seizures, ref_paths), ("hyp", hyp, hyp_paths)):
            path = out_dir / kind / f"{rec.record_id}.csv_bi"
            atomic_write_text(path, format_csv_bi(list(events), rec.duration_s, rec.record_id))
            paths.append(str(path.resolve()))
    ref_list, hyp_list = out_dir / "ref.list", out_dir / "hyp.list"
    atomic_write_text(ref_list, "\n".join(ref_paths) + "\n")
    atomic_write_text(hyp_list, "\n".join(hyp_paths) + "\n")
    return ref_list, hyp_list


def _trace_choice(per_record: Sequence[dict[str, Any]], n: int) -> list[int]:
    """Up to ``n`` records to plot: half with the most reference seizures, then most FAs."""
    order_sz = sorted(range(len(per_record)), key=lambda i: -per_record[i]["n_reference"])
    chosen = [i for i in order_sz[: (n + 1) // 2] if per_record[i]["n_reference"] > 0]
    order_fa = sorted(range(len(per_record)), key=lambda i: -per_record[i]["ovlp"]["false_alarms"])
    for i in order_fa:
        if len(chosen) >= n:
            break
        if i not in chosen and per_record[i]["ovlp"]["false_alarms"] > 0:
            chosen.append(i)
    for i in order_sz:
        if len(chosen) >= n:
            break
        if i not in chosen:
            chosen.append(i)
    return chosen


def _iter_probs(cache: ProbCache) -> Iterator[scoring.RecordTrack]:
    for rec, prob in cache.items():
        yield scoring.RecordTrack(rec.record_id, rec.patient, rec.duration_s, rec.seizures, prob)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate a checkpoint (``ckpt_path``) or re-score a cache (``probs_dir``); see above."""
    if not cfg.get("probs_dir"):
        tune_cpu_allocator()  # the model runs: see brain_go_brr/runtime.py (not for re-scoring)
    out_dir = Path(str(cfg.out_dir))
    post = PostConfig(**plain(cfg.post))
    fa_targets = tuple(float(t) for t in cfg.fa_targets)
    sweep_cfg = cfg.threshold_sweep
    tau_grid = (
        tuple(float(t) for t in sweep_cfg.tau_grid)
        if sweep_cfg.get("tau_grid")
        else scoring.DEFAULT_TAU_GRID
    )
    if cfg.get("probs_dir"):
        cache = ProbCache.open_existing(str(cfg.probs_dir))
        source: dict[str, Any] = {
            "probs_dir": str(Path(str(cfg.probs_dir)).resolve()),
            **(cache.source or {}),
        }
    elif cfg.get("ckpt_path"):
        cache = predict_split(cfg, out_dir / "probs")
        source = dict(cache.source or {})
    else:
        raise ValueError(
            "evaluate: pass ckpt_path=<training checkpoint> to run a model, or "
            "probs_dir=<earlier evaluation run> to re-score its cached probabilities"
        )
    if len(cache) == 0:
        raise ValueError(f"{cache.root}: no record was evaluated; the split is empty")

    cached = list(cache.records.values())
    records = list(_iter_probs(cache))
    sweeper = scoring.SweepScorer(records, post)
    result, sweep = score_cache(
        records,
        post,
        fa_targets,
        tau_grid,
        float(sweep_cfg.tau_gap),
        float(cfg.objective.max_fa_per_24h),
        n_resamples=int(cfg.get("bootstrap") or 0),
        seed=int(cfg.get("bootstrap_seed") or 0),
        scorer=sweeper,
    )
    metrics: dict[str, Any] = {
        "split": cache.split,
        "source": source,
        "post": plain(cfg.post),
        **result,
    }

    # Events at the configured post-processing, as NEDC reads them (split pieces joined).
    runs = sweeper.hypotheses(post.tau_on, post.tau_off)
    hyps = runs_to_events(runs, len(records), post.sfreq, sweeper.tracks.mean_probability(runs))
    if cfg.get("ckpt_path"):
        point = choose_operating_point(cfg, metrics, fa_targets)
        if point is not None:
            metrics["operating_point"] = point
    write_outputs(
        out_dir, cached, records, hyps, metrics, sweep, post, fa_targets, int(cfg.n_trace_plots)
    )
    return metrics


def choose_operating_point(
    cfg: DictConfig, metrics: dict[str, Any], fa_targets: Sequence[float]
) -> dict[str, Any] | None:
    """On the validation split, save the ``sens @ operating_point.fa_target`` point's
    post-processing beside the checkpoint (:func:`brain_go_brr.inference.save_operating_point`);
    returns what was saved, or None (another split, saving off, or no threshold gets there)."""
    from brain_go_brr.inference import save_operating_point

    op_cfg = cfg.get("operating_point") or {}
    val_split = str((cfg.data.get("splits") or {}).get("val", "dev"))
    if not op_cfg.get("save", True) or str(cfg.split) != val_split:
        return None
    target, scorer = float(op_cfg.get("fa_target", 5.0)), str(op_cfg.get("scorer", "ovlp"))
    if target not in fa_targets or scorer not in SCORERS:
        raise ValueError(
            f"operating_point.fa_target={target} / scorer={scorer}: the target must be one of "
            f"fa_targets {list(fa_targets)} and the scorer one of {list(SCORERS)}"
        )
    chosen = metrics[scorer]["sens_at_fa"][scoring.fa_key(target)]
    if chosen is None:
        log.warning(
            "no threshold of the sweep reaches %s FA/24h (%s) on %s: no operating point saved",
            target, scorer, val_split,
        )  # fmt: skip
        return None
    post = {**plain(cfg.post), "tau_on": chosen["tau_on"], "tau_off": chosen["tau_off"]}
    point = {
        "post": post,
        "fa_target": target,
        "scorer": scorer,
        "split": val_split,
        "figures": {
            "sensitivity": chosen["sensitivity"],
            "fa_per_24h": chosen["fa_per_24h"],
            "n_records": metrics["n_records"],
            "hours": metrics["duration_s"] / 3600,
            "auroc": metrics["auroc"],
        },
    }
    ckpt = Path(str(cfg.ckpt_path)).expanduser()
    try:
        saved = save_operating_point(ckpt, point)
    except OSError as exc:
        log.warning("could not save the operating point beside %s (%s)", ckpt, exc)
        return point
    log.info(
        "operating point (%s <= %s FA/24h on %s: tau_on %s, tau_off %s) saved to %s",
        scorer, target, val_split, chosen["tau_on"], chosen["tau_off"], saved,
    )  # fmt: skip
    return {**point, "saved_to": str(saved)}


def per_record_rows(
    records: Sequence[CachedRecord], hyps: Sequence[list[Event]]
) -> list[dict[str, Any]]:
    """Per record: id, patient, duration, reference and detected events, OVLP counts."""
    rows: list[dict[str, Any]] = []
    for rec, hyp in zip(records, hyps, strict=True):
        ovlp, _ = nedc.score_file(
            nedc.nedc_events(scoring.nonempty(rec.seizures), rec.duration_s),
            nedc.nedc_events(hyp, rec.duration_s),
        )
        rows.append(
            {
                "record_id": rec.record_id,
                "patient": rec.patient,
                "duration_s": rec.duration_s,
                "n_reference": len(rec.seizures),
                "n_detected": len(hyp),
                "reference": [[e.start_s, e.stop_s] for e in rec.seizures],
                "detected": [[e.start_s, e.stop_s, e.confidence] for e in hyp],
                "ovlp": vars(ovlp),
            }
        )
    return rows


def write_outputs(
    out_dir: Path,
    cached: Sequence[CachedRecord],
    records: Sequence[scoring.RecordTrack],
    hyps: Sequence[list[Event]],
    metrics: dict[str, Any],
    sweep: list[dict[str, Any]],
    post: PostConfig,
    fa_targets: Sequence[float],
    n_trace_plots: int,
) -> None:
    """Every file of the run folder but ``probs/`` (module docstring); prints the table."""
    per_record = per_record_rows(cached, hyps)
    write_nedc_files(out_dir / "nedc", cached, hyps)
    _write_szcore_files(out_dir / "szcore", cached, hyps)
    atomic_write_json(out_dir / "threshold_sweep.json", sweep)
    atomic_write_json(out_dir / "per_record.json", per_record)
    atomic_write_text(out_dir / "results.md", _markdown(metrics, fa_targets))
    plots = out_dir / "plots"
    curves = {
        s: [
            (r[s]["fa_per_24h"], r[s]["sensitivity"])
            for r in sweep
            if r[s]["sensitivity"] is not None
        ]
        for s in SCORERS
    }
    operating = {
        s: (metrics[s]["fa_per_24h"], metrics[s]["sensitivity"])
        for s in SCORERS
        if metrics[s]["sensitivity"] is not None and metrics[s]["fa_per_24h"] is not None
    }
    plot_sens_fa_curve(curves, plots / "sens_fa_curve.png", fa_targets, operating)
    for i in _trace_choice(per_record, n_trace_plots):
        rec, row = cached[i], per_record[i]
        plot_record_trace(
            records[i].prob,
            rec.seizures,
            hyps[i],
            plots / f"trace_{rec.record_id}.png",
            sfreq=post.sfreq,
            tau_on=post.tau_on,
            tau_off=post.tau_off,
            title=f"{rec.record_id} ({rec.patient}): {row['ovlp']['hits']:.0f} hits, "
            f"{row['ovlp']['false_alarms']:.0f} false alarms",
        )
    # metrics.json last: its presence marks a complete run (the sweep summary relies on it).
    atomic_write_json(out_dir / "metrics.json", metrics)
    print_results(metrics, fa_targets)
    print(f"results: {out_dir / 'results.md'}\nplots: {plots}")


def bids_events_name(record_id: str, path: str | None = None) -> str:
    """The relative path of a record's SzCORE ``*_events.tsv``.

    A record read from a BIDS dataset keeps its own place: ``sub-01/ses-01/eeg/
    sub-01_ses-01_task-szMonitoring_run-01_eeg.edf`` -> ``..._run-01_events.tsv``, so the
    hypothesis tree mirrors the dataset and scores against its own events files. A TUSZ id
    ``aaaaaasf_s001_t000`` -> ``sub-aaaaaasf/ses-s001/eeg/sub-aaaaaasf_ses-s001_task-
    szMonitoring_run-t000_events.tsv``; other names keep their id as the run label (letters
    and digits only, as BIDS labels must be) under a session ``ses-01``.
    """
    if path is not None and path.startswith("sub-") and path.endswith("_eeg.edf"):
        return path[: -len("_eeg.edf")] + "_events.tsv"
    parts = record_id.split("_")
    if len(parts) == 3 and parts[1].startswith("s") and parts[2].startswith("t"):
        sub, ses, run = parts
    else:
        sub, ses, run = parts[0], "01", "".join(ch for ch in record_id if ch.isalnum())
    sub = "".join(ch for ch in sub if ch.isalnum())
    stem = f"sub-{sub}_ses-{ses}_task-szMonitoring_run-{run}_events.tsv"
    return f"sub-{sub}/ses-{ses}/eeg/{stem}"


def _write_szcore_files(
    out_dir: Path, records: Sequence[CachedRecord], hyps: Sequence[list[Event]]
) -> None:
    """BIDS ``*_events.tsv`` of the reference and the hypothesis, same relative paths."""
    for rec, hyp in zip(records, hyps, strict=True):
        name = bids_events_name(rec.record_id, rec.path)
        write_events_tsv(out_dir / "ref" / name, rec.seizures, rec.duration_s)
        write_events_tsv(out_dir / "hyp" / name, hyp, rec.duration_s)
