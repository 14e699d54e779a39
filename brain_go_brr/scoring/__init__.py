"""Scoring the field trusts: NEDC v6.0.0 OVLP/TAES, SzCORE, AUROC, sensitivity at FA/24h.

Torch-free: events and probability tracks in, figures out. One implementation serves
training validation, ``evaluate.py`` and ``brain-go-brr score``:

* :func:`score_tracks` (records with probability tracks -> every figure, threshold sweep
  included) and :func:`score_events` (records with reference/hypothesis events), both in
  :mod:`brain_go_brr.scoring.metrics`, which documents the result dict;
* :mod:`~brain_go_brr.scoring.nedc` (the NEDC rules), :mod:`~brain_go_brr.scoring.szcore`
  (the official SzCORE figures), :mod:`~brain_go_brr.scoring.bootstrap` (patient-level
  95 % intervals), :mod:`~brain_go_brr.scoring.writers` (csv_bi and BIDS
  ``*_events.tsv``), :mod:`~brain_go_brr.scoring.plots` (traces and curves),
  :mod:`~brain_go_brr.scoring.cli` (the ``score`` command).
"""

from brain_go_brr.scoring.metrics import (
    DEFAULT_TAU_GRID,
    FA_TARGETS,
    RecordEvents,
    RecordTrack,
    auroc,
    fa_key,
    flatten,
    score_events,
    score_tracks,
)

__all__ = [
    "DEFAULT_TAU_GRID",
    "FA_TARGETS",
    "RecordEvents",
    "RecordTrack",
    "auroc",
    "fa_key",
    "flatten",
    "score_events",
    "score_tracks",
]
