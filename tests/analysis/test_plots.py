"""Figures of mvlpt.analysis.plots, checked from the matplotlib objects (cells, tick labels, titles), not pixels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402

from fakes import write_fake_study  # noqa: E402
from mvlpt.analysis import plots, stats, tables  # noqa: E402


def _matrix(n, seed=0, names=None):
    rng = np.random.default_rng(seed)
    names = names or [f"task-{i}" for i in range(n)]
    return pd.DataFrame(rng.normal(0, 0.05, size=(n, n)), index=names, columns=names)


def _mesh(ax) -> QuadMesh:
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    return meshes[0]


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.mark.parametrize("n", [3, 7, 22])
def test_gain_heatmap_has_n_by_n_cells_and_task_names_on_both_axes(n):
    m = _matrix(n)
    fig = plots.gain_heatmap(m, "coop")
    ax = fig.axes[0]
    mesh = _mesh(ax)
    assert mesh.get_array().size == n * n
    assert mesh.get_coordinates().shape[:2] == (n + 1, n + 1)
    names = list(m.index)
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert ax.get_xlabel() == "target" and ax.get_ylabel() == "source"
    # diverging, centred at 0 (symmetric limits), values in points
    lo, hi = mesh.norm.vmin, mesh.norm.vmax
    mid, low, high = (np.array(mesh.cmap(mesh.norm(v))[:3]) for v in (0.0, lo, hi))
    assert (mid > 0.9).all()  # 0 is white
    assert low[2] > low[0] + 0.2 and high[0] > high[2] + 0.2  # negative blue, positive red
    assert lo == pytest.approx(-hi) and hi == pytest.approx(
        np.nanmax(np.abs(m.to_numpy() * 100 - np.diag(np.diag(m.to_numpy() * 100)))), rel=0.2
    )
    arr = np.ma.getmaskarray(mesh.get_array()).reshape(n, n)
    assert arr.diagonal().all() and not arr[~np.eye(n, dtype=bool)].any()  # diagonal (baseline) masked
    # annotated up to 20 tasks: one text per unmasked cell, matching the value in points
    texts = [t for t in ax.texts if t.get_text()]
    if n <= plots.ANNOTATE_MAX:
        assert len(texts) == n * n - n
        assert float(texts[0].get_text()) == pytest.approx(100 * m.iloc[0, 1], abs=0.051)
    else:
        assert texts == []


def test_clustered_order_is_the_same_on_both_axes_and_groups_blocks():
    names = ["a1", "b1", "a2", "b2", "a3", "b3"]
    grp = np.array([n[0] == "a" for n in names])
    m = pd.DataFrame(np.where(grp[:, None] == grp[None, :], 0.1, -0.1), index=names, columns=names)
    fig = plots.gain_heatmap(m, "vpt", cluster=True)
    ax = fig.axes[0]
    xs = [t.get_text() for t in ax.get_xticklabels()]
    ys = [t.get_text() for t in ax.get_yticklabels()]
    assert xs == ys and sorted(xs) == sorted(names)
    first = [n[0] for n in xs]
    assert first in (list("aaabbb"), list("bbbaaa"))  # the two blocks are contiguous


def test_similarity_heatmap_sequential_and_reversed_for_distances():
    m = _matrix(4).abs()
    ax = plots.similarity_heatmap(m, "visual_cosine").axes[0]
    assert _mesh(ax).cmap.name == plots.SEQUENTIAL
    assert [t.get_text() for t in ax.get_yticklabels()] == list(m.index)
    ax = plots.similarity_heatmap(m, "visual_frechet").axes[0]
    assert _mesh(ax).cmap.name == plots.SEQUENTIAL + "_r"


def test_scatter_has_one_panel_per_similarity_with_r_in_the_title():
    from scipy import stats

    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        for j in range(6):
            if i != j:
                s = rng.uniform()
                rows.append(("coop", f"t{i}", f"t{j}", 0.2 * s + rng.normal(0, 0.01), 0.0, s, 1 - s))
    data = pd.DataFrame(rows, columns=["method", "source", "target", "gain", "gain_rel", "visual_cosine", "visual_frechet"])
    fig = plots.scatter_gain_vs_similarity(data, "coop", ["visual_cosine", "visual_frechet"])
    axes = fig.axes
    assert len(axes) == 2
    r = stats.pearsonr(data["visual_cosine"], data["gain"]).statistic
    assert f"r = {r:+.2f}" in axes[0].get_title()
    assert f"r = {-r:+.2f}" in axes[1].get_title()  # plotted as a distance: opposite sign


def test_summary_panel_and_save_figure_write_png_and_pdf(tmp_path):
    root = tmp_path / "results"
    write_fake_study(root, tasks=("a", "b", "c", "d"), methods=("coop", "vpt", "upt"), seeds=(1,))
    pairs = tables.pair_table(tables.load_results(root))
    sims = tables.similarity_long(tables.read_table(p) for p in sorted((root / "similarity").glob("*.csv")))
    corr = stats.correlate(pairs, sims, n_boot=50, n_perm=50)
    fig = plots.summary_panel(pairs, corr)
    assert len(fig.axes) == 4  # gains, transfers, correlations, variance shares of the gain matrix
    assert fig.axes[1].get_title() == "positive transfers (no intervals)"  # pairs without cell statistics
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["coop", "vpt", "upt"]
    written = plots.save_figure(fig, tmp_path / "fig" / "summary.png")
    assert [p.name for p in written] == ["summary.png", "summary.pdf"]
    assert written[0].read_bytes()[:4] == b"\x89PNG" and written[1].read_bytes()[:4] == b"%PDF"
    assert len(plots.summary_panel(pairs).axes) == 3  # without correlations


def test_plot_verbs(tmp_path, run_mvlpt):
    root = tmp_path / "results"
    write_fake_study(root, tasks=("a", "b", "c"), methods=("coop",), seeds=(1,))
    assert run_mvlpt("collect", "--results-dir", root, "--out-dir", root / "tables").rc == 0
    assert (
        run_mvlpt(
            "plot",
            "gain-heatmap",
            "--matrix",
            root / "tables/matrices/coop_gain.parquet",
            "--method",
            "coop",
            "--out",
            tmp_path / "f/gain_coop.png",
        ).rc
        == 0
    )
    assert (
        run_mvlpt(
            "plot", "similarity-heatmap", "--similarity", root / "similarity/label_match.parquet", "--out", tmp_path / "f/sim.png"
        ).rc
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["gain_coop.pdf", "gain_coop.png", "sim.pdf", "sim.png"]


@pytest.mark.slow
def test_figures_verb_draws_what_the_rules_draw(tmp_path, run_mvlpt):
    """`mvlpt figures` (one call) and the workflow's steps (collect, correlate, one `mvlpt plot` per figure), both with
    their default settings, write the same files with the same pixels."""
    root = tmp_path / "results"
    tasks = ["a", "b", "c", "d"]
    write_fake_study(root, tasks=tasks, methods=("coop", "vpt"), seeds=(1, 2))
    rules, verb = tmp_path / "rules", tmp_path / "verb"
    assert run_mvlpt("figures", "--results-dir", root, "--out-dir", verb, "--tasks", *tasks).rc == 0
    tab = root / "tables"
    sims = [root / "similarity" / f"{m}.parquet" for m in ("visual_cosine", "visual_frechet", "label_match", "label_cosine")]
    assert run_mvlpt("collect", "--results-dir", root, "--out-dir", tab, "--tasks", *tasks).rc == 0
    assert (
        run_mvlpt(
            "correlate",
            "--pairs",
            tab / "pairs.parquet",
            "--runs",
            tab / "runs.parquet",
            "--similarity",
            *sims,
            "--out",
            tab / "correlations.csv",
        ).rc
        == 0
    )
    for method in ("coop", "vpt"):
        for stat in ("gain", "interaction"):
            assert (
                run_mvlpt(
                    "plot",
                    "gain-heatmap",
                    "--matrix",
                    tab / f"matrices/{method}_{stat}.parquet",
                    "--q-matrix",
                    tab / f"matrices/{method}_{stat}_q.parquet",
                    "--stat",
                    stat,
                    "--method",
                    method,
                    "--tasks",
                    *tasks,
                    "--out",
                    rules / f"{stat}_{method}.png",
                ).rc
                == 0
            )
        assert (
            run_mvlpt(
                "plot",
                "scatter",
                "--pairs",
                tab / "pairs.parquet",
                "--similarity",
                *sims,
                "--method",
                method,
                "--out",
                rules / f"scatter_{method}.png",
            ).rc
            == 0
        )
    for s in sims:
        assert (
            run_mvlpt(
                "plot",
                "similarity-heatmap",
                "--similarity",
                s,
                "--measure",
                s.stem,
                "--tasks",
                *tasks,
                "--out",
                rules / f"similarity_{s.stem}.png",
            ).rc
            == 0
        )
    assert (
        run_mvlpt(
            "plot",
            "summary",
            "--pairs",
            tab / "pairs.parquet",
            "--correlations",
            tab / "correlations.parquet",
            "--out",
            rules / "summary.png",
        ).rc
        == 0
    )
    names = sorted(p.name for p in verb.iterdir())
    assert names == sorted(p.name for p in rules.iterdir()) and len(names) == 2 * (2 + 2 + 4 + 2 + 1)
    for name in names:
        if name.endswith(".png"):
            assert (verb / name).read_bytes() == (rules / name).read_bytes(), name
