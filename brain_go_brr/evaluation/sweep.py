"""The summary table of a post-processing sweep over cached probabilities.

``python evaluate.py probs_dir=RUN -m post.tau_on=0.80,0.84 post.tau_off=0.70,0.74`` runs
one job per combination; each job writes ``metrics.json`` into its own folder of the sweep
directory. When the multirun ends, :class:`SweepSummaryCallback` (registered in
``conf/eval.yaml`` under ``hydra.callbacks``) reads every job folder and writes
``sweep_summary.md`` and ``sweep_summary.json`` to the sweep directory: all combinations,
then the best combination per FA/24h target (highest OVLP sensitivity with OVLP FA/24h at or
under the target). The summary is built from the files on disk, so it is the same whichever
launcher or sweeper (basic, Optuna, submitit) ran the jobs, and a job that crashed shows up
as ``failed`` instead of vanishing. It can be rebuilt at any time with
:func:`write_sweep_summary`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from brain_go_brr.io import atomic_write_json, atomic_write_text

SCORERS = ("ovlp", "taes", "szcore")


def collect_jobs(sweep_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One row per job folder of ``sweep_dir``: its overrides and metrics (None if failed)."""
    rows: list[dict[str, Any]] = []
    job_dirs = sorted(
        (p for p in Path(sweep_dir).iterdir() if (p / ".hydra").is_dir()),
        key=lambda p: (len(p.name), p.name),  # job 10 after job 9
    )
    for job_dir in job_dirs:
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = _read_overrides(overrides_file) if overrides_file.exists() else []
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
        rows.append({"job": job_dir.name, "overrides": overrides, "metrics": metrics})
    return rows


def _read_overrides(path: Path) -> list[str]:
    # Hydra writes a YAML list of "key=value" strings; one line each, prefixed by "- ".
    return [
        line[2:].strip().strip("'\"")
        for line in path.read_text().splitlines()
        if line.startswith("- ")
    ]


def _fmt(
    value: float | None, scale: float = 1.0, digits: int = 2, ci: list[float] | None = None
) -> str:
    """A figure, and its 95 % interval in brackets when there is one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value * scale:.{digits}f}"
    if ci:
        text += f" [{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"
    return text


def _cells(m: dict[str, Any]) -> str:
    """Sensitivity % and FA/24h of one scorer, with their intervals."""
    return (
        _fmt(m["sensitivity"], 100, 2, m.get("sensitivity_ci95"))
        + " | "
        + _fmt(m["fa_per_24h"], ci=m.get("fa_per_24h_ci95"))
    )


def best_per_target(
    rows: list[dict[str, Any]], fa_targets: tuple[float, ...]
) -> dict[str, dict[str, Any] | None]:
    """FA target -> the row with the highest OVLP sensitivity at FA/24h <= target (or None).

    Ties go to the lower false-alarm rate, then to the earlier job.
    """
    best: dict[str, dict[str, Any] | None] = {}
    done = [r for r in rows if r["metrics"] is not None]
    for target in fa_targets:
        ok = [r for r in done if r["metrics"]["ovlp"]["fa_per_24h"] <= target]
        best[f"{target:g}"] = (
            max(
                ok,
                key=lambda r: (
                    r["metrics"]["ovlp"]["sensitivity"],
                    -r["metrics"]["ovlp"]["fa_per_24h"],
                ),
            )
            if ok
            else None
        )
    return best


def varying_overrides(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Per row, only the overrides whose value differs between jobs (the swept ones).

    Settings every job shares (``probs_dir=...``) would repeat on every line of the table.
    """
    values: dict[str, set[str]] = {}
    for r in rows:
        for o in r["overrides"]:
            key, _, value = o.partition("=")
            values.setdefault(key, set()).add(value)
    swept = {k for k, v in values.items() if len(v) > 1 or len(rows) == 1}
    return [[o for o in r["overrides"] if o.partition("=")[0] in swept] for r in rows]


def format_sweep_summary(
    rows: list[dict[str, Any]], fa_targets: tuple[float, ...] = (1.0, 2.5, 5.0, 10.0)
) -> str:
    """Markdown: every job (sensitivity in %, FA per 24 h), then the best per FA target."""
    head = "| job | overrides | OVLP sens % | OVLP FA/24h | TAES sens % | TAES FA/24h | SzCORE sens % | SzCORE FP/24h |"
    lines = [
        "## All combinations (overrides that differ between jobs)",
        "",
        "SzCORE: the official event-based figures, pooled over records. [brackets]: 95 % "
        "patient-level bootstrap intervals.",
        "",
        head,
        "|" + "---|" * 8,
    ]
    shown = {
        r["job"]: " ".join(o) or "(none)"
        for r, o in zip(rows, varying_overrides(rows), strict=True)
    }
    for r in rows:
        over = shown[r["job"]]
        m = r["metrics"]
        if m is None:
            lines.append(f"| {r['job']} | {over} | failed | | | | | |")
            continue
        cells = [_cells(m[s]) for s in SCORERS]
        lines.append(f"| {r['job']} | {over} | " + " | ".join(cells) + " |")
    lines += ["", "## Best per FA target (highest OVLP sensitivity at OVLP FA/24h <= target)", ""]
    lines += [
        "| FA/24h target | job | overrides | OVLP sens % | OVLP FA/24h |",
        "|---|---|---|---|---|",
    ]
    for target, best in best_per_target(rows, fa_targets).items():
        if best is None:
            lines.append(f"| {target} | - | no combination reaches this rate | - | - |")
        else:
            m = best["metrics"]["ovlp"]
            lines.append(f"| {target} | {best['job']} | {shown[best['job']]} | {_cells(m)} |")
    return "\n".join(lines) + "\n"


def write_sweep_summary(
    sweep_dir: str | os.PathLike[str], fa_targets: tuple[float, ...] = (1.0, 2.5, 5.0, 10.0)
) -> Path:
    """Write ``sweep_summary.md`` and ``sweep_summary.json`` into ``sweep_dir``; returns the .md."""
    sweep_dir = Path(sweep_dir)
    rows = collect_jobs(sweep_dir)
    best = best_per_target(rows, fa_targets)
    atomic_write_json(
        sweep_dir / "sweep_summary.json",
        {
            "jobs": rows,
            "best_per_fa_target": {t: (r["job"] if r else None) for t, r in best.items()},
        },
    )
    md_path = sweep_dir / "sweep_summary.md"
    atomic_write_text(
        md_path, "# Post-processing sweep\n\n" + format_sweep_summary(rows, fa_targets)
    )
    return md_path


class SweepSummaryCallback(Callback):
    """Hydra callback: after a multirun, summarise its jobs into the sweep directory."""

    def __init__(self, fa_targets: tuple[float, ...] = (1.0, 2.5, 5.0, 10.0)) -> None:
        self.fa_targets = tuple(float(t) for t in fa_targets)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        path = write_sweep_summary(sweep_dir, self.fa_targets)
        print(f"sweep summary: {path}")


# ----------------------------------------------------------------------------- seeds

#: Parts of an evaluation's metrics.json that are settings or provenance, not figures.
_NOT_FIGURES = {"post", "source", "bootstrap", "operating_point", "split", "n_records",
                "duration_s", "tau_on", "tau_off"}  # fmt: skip


def job_figures(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric figures of one job's ``metrics.json``, flat: a training run's ``best``
    (the validation figures of its best checkpoint), or an evaluation's figures named by
    path (``ovlp/sensitivity``, ``ovlp/sens_at_fa/10/sensitivity``, ``szcore_evaluation/
    event_results/f1``, ...). Intervals and settings are left out."""
    if "best" in metrics and "final" in metrics:  # a training run (train.py)
        best = metrics["best"] or {}
        return {k: float(v) for k, v in best.items() if k.startswith(("val/", "test/"))
                and isinstance(v, int | float) and k != "epoch"}  # fmt: skip
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key not in _NOT_FIGURES and not str(key).endswith("_ci95"):
                    walk(f"{prefix}/{key}" if prefix else str(key), inner)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[prefix] = float(value)

    walk("", metrics)
    return out


def seed_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and (sample) standard deviation over the finished jobs of every figure."""
    done = [r for r in rows if r["metrics"] is not None]
    per_job = [job_figures(r["metrics"]) for r in done]
    names = sorted({name for figures in per_job for name in figures})
    table: dict[str, dict[str, Any]] = {}
    for name in names:
        values = [f[name] for f in per_job if name in f and math.isfinite(f[name])]
        if not values:
            continue
        mean = sum(values) / len(values)
        sd = (
            math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            if len(values) > 1
            else None
        )
        table[name] = {"mean": mean, "sd": sd, "n": len(values), "values": values}
    return {
        "jobs": [{"job": r["job"], "overrides": r["overrides"],
                  "status": "ok" if r["metrics"] is not None else "failed"} for r in rows],
        "failed": [r["job"] for r in rows if r["metrics"] is None],
        "figures": table,
    }  # fmt: skip


def format_seed_summary(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    shown = {
        r["job"]: " ".join(o) or "(none)"
        for r, o in zip(rows, varying_overrides(rows), strict=True)
    }
    n_ok = len(rows) - len(summary["failed"])
    lines = [
        f"{n_ok} finished job(s): {', '.join(shown[r['job']] for r in rows if r['metrics'])}",
        "",
        "| figure | mean ± sd | n | per job |",
        "|---|---|---|---|",
    ]
    for name, row in summary["figures"].items():
        sd = "" if row["sd"] is None else f" ± {row['sd']:.4f}"
        per_job = ", ".join(f"{v:.4f}" for v in row["values"])
        lines.append(f"| {name} | {row['mean']:.4f}{sd} | {row['n']} | {per_job} |")
    if summary["failed"]:
        lines += ["", "Failed jobs (no metrics.json): " + ", ".join(
            f"{job} ({shown[job]})" for job in summary["failed"])]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_seed_summary(sweep_dir: str | os.PathLike[str]) -> Path:
    """Write ``seed_summary.md`` and ``seed_summary.json`` into ``sweep_dir``; returns the .md."""
    sweep_dir = Path(sweep_dir)
    rows = collect_jobs(sweep_dir)
    summary = seed_summary(rows)
    atomic_write_json(sweep_dir / "seed_summary.json", summary)
    md_path = sweep_dir / "seed_summary.md"
    title = "# Several runs, one table: mean ± standard deviation over jobs\n\n"
    atomic_write_text(md_path, title + format_seed_summary(summary, rows))
    return md_path


class SeedSummaryCallback(Callback):
    """Hydra callback: after a multirun that varies one of ``when_varying`` (``seed``,
    ``ckpt_path``), write the seed summary into the sweep directory."""

    def __init__(self, when_varying: tuple[str, ...] = ("seed",)) -> None:
        self.when_varying = tuple(str(k) for k in when_varying)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = collect_jobs(sweep_dir)
        varied = {o.split("=", 1)[0].lstrip("+~") for os_ in varying_overrides(rows) for o in os_}
        if not varied & set(self.when_varying):
            return
        path = write_seed_summary(sweep_dir)
        print(f"seed summary: {path}")
