"""The notebooks in notebooks/ run top to bottom against a results folder, and are committed without outputs.

The results folder is a small fabricated study built here (``MVLPT_RESULTS`` points the notebooks at it);
set ``MVLPT_TEST_RESULTS`` to run them against another one (e.g. the demo results) instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from fakes import write_fake_multitask_study, write_fake_study  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
NAMES = ["01-transfer-results.ipynb", "02-similarity-vs-gain.ipynb", "03-multitask.ipynb"]


def test_the_notebooks_exist():
    assert [p.name for p in NOTEBOOKS if p.name in NAMES] == NAMES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs before committing"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "MVLPT_RESULTS" in tagged[0].source


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    given = os.environ.get("MVLPT_TEST_RESULTS")
    if given:
        return Path(given).resolve()
    root = tmp_path_factory.mktemp("nb") / "results"
    write_fake_study(root, tasks=("shapes", "textures", "glyph-digits", "orientation"), methods=("coop", "vpt"), seeds=(1, 2))
    return root


@pytest.fixture(scope="module")
def results_dir_with_tables(results_dir, tmp_path_factory):
    """The same study plus the correlations table the workflow writes (notebook 02 reads it when present)."""
    import shutil

    from mvlpt.analysis import stats, tables

    if os.environ.get("MVLPT_TEST_RESULTS"):
        return results_dir
    root = tmp_path_factory.mktemp("nb2") / "results"
    shutil.copytree(results_dir, root)
    pairs = tables.pair_table(tables.load_results(root))
    sims = tables.read_similarities(tables.similarity_files(root / "similarity"))
    tables.write_table(stats.correlate(pairs, sims, n_boot=100, n_perm=100), root / "tables" / "correlations")
    return root


@pytest.fixture(scope="module")
def results_dir_multitask(results_dir, tmp_path_factory):
    """A fabricated multitask study (groups, multitask results, SoftCPT) over a pairwise one: notebook 03's input."""
    if os.environ.get("MVLPT_TEST_RESULTS"):
        return results_dir
    root = tmp_path_factory.mktemp("nb3") / "results"
    write_fake_multitask_study(
        root, tasks=("shapes", "textures", "glyph-digits", "orientation"), methods=("coop", "vpt"), seeds=(1, 2), k=2
    )
    return root


def _execute(path, results_dir, monkeypatch) -> str:
    """Run the notebook against ``results_dir``; its printed and displayed text."""
    monkeypatch.setenv("MVLPT_RESULTS", str(results_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    return "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, results_dir, results_dir_with_tables, results_dir_multitask, monkeypatch):
    if path.name.startswith("02") and not os.environ.get("MVLPT_TEST_RESULTS"):
        results_dir = results_dir_with_tables
    if path.name.startswith("03"):
        results_dir = results_dir_multitask
    text = _execute(path, results_dir, monkeypatch)
    assert str(results_dir) in text  # it read the folder it was pointed at
    if path.name.startswith("02") and not os.environ.get("MVLPT_TEST_RESULTS"):
        assert "scored here from the similarity tables" in text  # no predictors table: the section scores them
    if path.name.startswith("03") and not os.environ.get("MVLPT_TEST_RESULTS"):
        assert "computed from the result files" in text  # no multitask tables: computed here
        assert "coop init: strategy gain beats random on" in text and "SoftCPT vs CoOp single-task:" in text


@pytest.mark.slow  # a notebook run per table set; the fast lane runs each notebook once (above)
def test_notebook_03_reads_the_workflow_tables(results_dir_multitask, tmp_path, monkeypatch):
    """With the tables `mvlpt multitask table` writes, notebook 03 reads them instead of recomputing."""
    import shutil

    from mvlpt.transfer import grouping, multitask

    root = tmp_path / "results"
    shutil.copytree(results_dir_multitask, root)
    table = multitask.collect(root, grouping.read_groups(grouping.groups_path(root)))
    multitask.write_tables(
        table, multitask.summarize(table, n_boot=50), root / "tables" / "multitask", root / "tables" / "multitask_summary"
    )
    text = _execute(NOTEBOOKS[[p.name for p in NOTEBOOKS].index(NAMES[2])], root, monkeypatch)
    assert f"read {root / 'tables' / 'multitask.parquet'}" in text


@pytest.mark.slow  # a notebook run per table set; the fast lane runs each notebook once (above)
def test_notebook_02_predictor_section_reads_the_workflow_tables(results_dir_with_tables, tmp_path, monkeypatch):
    """With the predictor matrices and scores the workflow writes (`mvlpt predict compute/score`), the
    section reads them and lists, per target, the best predictor's pick next to the measured best source."""
    import shutil

    from mvlpt.analysis import tables
    from mvlpt.analysis.similarity import long_to_matrix
    from mvlpt.study import vocabulary
    from mvlpt.transfer import predictor_scores, predictors

    root = tmp_path / "results"
    shutil.copytree(results_dir_with_tables, root)
    pairs = tables.pair_table(tables.load_results(root))
    sims = tables.read_similarities(tables.similarity_files(root / "similarity"))
    preds = {}
    for m in ("visual_cosine", "label_match"):
        matrix = long_to_matrix(sims, m) * (-1.0 if vocabulary.is_distance(m) else 1.0)
        predictors.write_predictor(matrix, m, 0.25, root / "predictors" / m)
        preds[m] = predictors.read_predictor(root / "predictors" / f"{m}.parquet")
    tables.write_table(predictor_scores.score_predictors(pairs, preds, n_boot=50), root / "tables" / "predictors")
    text = _execute(NOTEBOOKS[[p.name for p in NOTEBOOKS].index(NAMES[1])], root, monkeypatch)
    assert f"read {root / 'tables' / 'predictors.parquet'}" in text
    assert "measured best source" in text and "picks" in text
