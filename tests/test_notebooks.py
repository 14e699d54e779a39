"""Both notebooks run top to bottom on the outputs of a tiny run, so they never rot.

The notebooks read their inputs from environment variables (``BGB_NB_CORPUS``,
``BGB_NB_CACHE``, ``BGB_NB_EVAL_RUN``); here they point at the session's tiny synthetic
corpus, its cache and the evaluation run of ``test_evaluate.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from data_fixtures import tiny_cache, tiny_corpus
from test_evaluate import evaluated_run

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _execute(
    name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{name}: outputs must be stripped before committing"
    )
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.slow
def test_data_tour_runs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {
        "BGB_NB_CORPUS": str(tiny_corpus(tmp_path_factory)),
        "BGB_NB_CACHE": str(tiny_cache(tmp_path_factory)),
    }
    _execute("01_data_tour.ipynb", env, monkeypatch, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("post", ["operating_point", "configured"])
def test_predictions_runs(
    post: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    run, metrics = evaluated_run(tmp_path_factory)
    if post == "operating_point":  # the notebook's default branch needs a 5 FA/24h point
        assert metrics["ovlp"]["sens_at_fa"]["5"] is not None
    env = {"BGB_NB_EVAL_RUN": str(run), "BGB_NB_POST": post}
    _execute("02_predictions.ipynb", env, monkeypatch, tmp_path)
