"""Evaluation runs: a checkpoint over whole recordings of a split, scored and written.

* :mod:`~brain_go_brr.evaluation.evaluate`: ``evaluate(cfg)``, what ``evaluate.py`` runs
  (prediction through :mod:`brain_go_brr.inference`, figures through
  :mod:`brain_go_brr.scoring`, the run folder's files);
* :mod:`~brain_go_brr.evaluation.probs`: the per-record probability cache of a run;
* :mod:`~brain_go_brr.evaluation.sweep`: the Hydra callbacks that summarise sweeps over
  ``post.*`` and over seeds.
"""
