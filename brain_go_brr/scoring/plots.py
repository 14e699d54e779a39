"""PNG figures of an evaluation run: the sensitivity vs FA/24h curve and probability traces.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot state, no GUI
backend), so they work in worker processes and on machines without a display.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from brain_go_brr.annotations import Event
from brain_go_brr.io import atomic_open

# Plotting every 256 Hz sample of an hour-long record is slow and invisible at screen
# resolution; the per-bin maximum keeps every peak that could cross a threshold.
_MAX_TRACE_POINTS = 20_000


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_sens_fa_curve(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    path: str | os.PathLike[str],
    fa_targets: Sequence[float] = (1.0, 2.5, 5.0, 10.0),
    operating_points: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """Sensitivity (%) against false alarms per 24 h, one line per scorer.

    Args:
        curves: scorer name (``"ovlp"``, ``"taes"``, ``"szcore"``) -> ``(fa_per_24h,
            sensitivity)`` points from the threshold sweep, sensitivity as a fraction.
        path: the PNG to write.
        fa_targets: FA/24h rates marked with vertical lines.
        operating_points: scorer -> ``(fa_per_24h, sensitivity)`` at the configured
            post-processing, drawn as markers.
    """
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for name, points in curves.items():
        pts = sorted((fa, sens) for fa, sens in points if np.isfinite(fa))
        if pts:
            fa, sens = np.array(pts).T
            ax.plot(np.maximum(fa, 0.05), 100 * sens, marker=".", label=name.upper())
    for name, (fa_op, sens_op) in (operating_points or {}).items():
        ax.plot(max(fa_op, 0.05), 100 * sens_op, "k*", markersize=9)
        ax.annotate(name.upper(), (max(fa_op, 0.05), 100 * sens_op), fontsize=7)
    for target in fa_targets:
        ax.axvline(target, color="0.7", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("false alarms per 24 h (log; 0 drawn at 0.05)")
    ax.set_ylabel("sensitivity (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Sensitivity vs false alarms (threshold sweep)")
    return _save(fig, path)


def _downsample_max(prob: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """(n,) track -> (times_s, values) with at most ``_MAX_TRACE_POINTS`` bin maxima."""
    step = max(1, int(np.ceil(prob.size / _MAX_TRACE_POINTS)))
    n_bins = prob.size // step
    head = prob[: n_bins * step].reshape(n_bins, step).max(axis=1)  # (n_bins,)
    values = (
        np.concatenate([head, prob[n_bins * step :].max(keepdims=True)])
        if prob.size % step
        else head
    )
    times_s = np.arange(values.size) * step / sfreq
    return times_s, values


def plot_record_trace(
    prob: np.ndarray,
    reference: Sequence[Event],
    detected: Sequence[Event],
    path: str | os.PathLike[str],
    *,
    sfreq: float = 256.0,
    tau_on: float | None = None,
    tau_off: float | None = None,
    title: str = "",
) -> Path:
    """One recording: probability track with reference (green) and detected (red) events.

    Args:
        prob: (n_samples,) seizure probability at ``sfreq``.
        reference, detected: events in seconds.
        tau_on, tau_off: hysteresis thresholds, drawn as horizontal lines when given.
    """
    times_s, values = _downsample_max(np.asarray(prob, dtype=np.float32), sfreq)
    fig = Figure(figsize=(10, 3.0))
    ax = fig.add_subplot()
    for i, e in enumerate(reference):
        ax.axvspan(e.start_s, e.stop_s, ymin=0.5, ymax=1.0, color="tab:green", alpha=0.3,
                   label="reference" if i == 0 else None)  # fmt: skip
    for i, e in enumerate(detected):
        ax.axvspan(e.start_s, e.stop_s, ymin=0.0, ymax=0.5, color="tab:red", alpha=0.3,
                   label="detected" if i == 0 else None)  # fmt: skip
    ax.plot(times_s, values, color="k", lw=0.7, label="p(seizure)")
    for tau, name in ((tau_on, "tau_on"), (tau_off, "tau_off")):
        if tau is not None:
            ax.axhline(tau, color="tab:blue", lw=0.8, ls=":", label=f"{name} {tau:.2f}")
    ax.set_xlim(0, prob.size / sfreq)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7, ncols=5)
    return _save(fig, path)
