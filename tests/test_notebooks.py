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

from fakes import write_fake_study  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
NAMES = ["01-transfer-results.ipynb", "02-similarity-vs-gain.ipynb"]


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

    from mvlpt import stats, tables as T

    if os.environ.get("MVLPT_TEST_RESULTS"):
        return results_dir
    root = tmp_path_factory.mktemp("nb2") / "results"
    shutil.copytree(results_dir, root)
    pairs = T.pair_table(T.load_results(root))
    sims = T.read_similarities(T.similarity_files(root / "similarity"))
    T.write_table(stats.correlate(pairs, sims, n_boot=100, n_perm=100), root / "tables" / "correlations")
    return root


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, results_dir, results_dir_with_tables, monkeypatch):
    if path.name.startswith("02") and not os.environ.get("MVLPT_TEST_RESULTS"):
        results_dir = results_dir_with_tables
    monkeypatch.setenv("MVLPT_RESULTS", str(results_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert str(results_dir) in text  # it read the folder it was pointed at
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
