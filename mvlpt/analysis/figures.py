"""The study's figures: which figure is drawn from which tables, for ``mvlpt plot``, ``mvlpt figures``
and the Snakemake figure rules alike.

Each ``*_figure`` function takes the tables (pairs, matrices, similarities, correlations) and returns
the matplotlib figure; :func:`make_all_figures` draws every figure from the result files and
similarity tables that exist now, with the same functions, and saves them as
``{out_dir}/{gain,similarity,scatter}_<name>.{png,pdf}``, ``summary.{png,pdf}`` and, given the
predictor scores table, ``predictors.{png,pdf}`` (the names the workflow's rules write). Drawing itself (style, heatmaps, scatters) is :mod:`mvlpt.analysis.plots`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mvlpt.analysis import plots, stats, tables
from mvlpt.analysis.similarity import long_to_matrix
from mvlpt.errors import MvlptError
from mvlpt.study import layout, settings, vocabulary

log = logging.getLogger(__name__)
DEFAULTS = settings.ANALYSIS_DEFAULTS


def gain_figure(
    gain: pd.DataFrame,
    method: str,
    *,
    stat: str = "gain",
    tasks: Sequence[str] | None = None,
    cluster: bool = DEFAULTS["cluster"],
    q: pd.DataFrame | None = None,
    level: float = DEFAULTS["level"],
    reference: pd.DataFrame | None = None,
):
    """Source x target heatmap of one method's ``stat`` matrix (:func:`mvlpt.analysis.tables.matrix`); given the
    matching q-value matrix (``{stat}_q``), the cells that are distinguishable from noise are framed; given
    the baselines table (:func:`mvlpt.analysis.reference.baselines_table`), the strip of the method's baseline,
    zero-shot and linear probe per target is drawn above it."""
    if tasks:
        gain = gain.reindex(index=list(tasks), columns=list(tasks))
    return plots.gain_heatmap(
        gain, method, stat=stat, cluster=cluster, q=q, level=level, reference=reference_of(reference, method)
    )


def reference_of(baselines: pd.DataFrame | None, method: str) -> pd.DataFrame | None:
    """One method's rows of the baselines table as the heatmap's strip wants them (index target; columns
    baseline, zeroshot, linear_probe); None without a table or without a zero-shot or linear-probe value."""
    if baselines is None or baselines.empty:
        return None
    rows = baselines[baselines["method"] == method]
    if rows.empty or rows[["zeroshot", "linear_probe"]].isna().all().all():
        return None
    out = rows.set_index(rows["target"].astype(str))[["baseline_mean", "zeroshot", "linear_probe"]]
    return out.rename(columns={"baseline_mean": "baseline"}).astype("float64")


def similarity_figure(
    similarities: pd.DataFrame, measure: str, *, tasks: Sequence[str] | None = None, cluster: bool = DEFAULTS["cluster"]
):
    """Task x task heatmap of one measure from the long similarity table."""
    return plots.similarity_heatmap(long_to_matrix(similarities, measure, tasks), measure, cluster=cluster)


def scatter_figure(
    pairs: pd.DataFrame,
    similarities: pd.DataFrame,
    method: str,
    *,
    measures: Sequence[str] | None = None,
    y: str = "gain",
    n_boot: int = DEFAULTS["n_boot"],
    seed: int = DEFAULTS["seed"],
):
    """Gain vs every similarity measure (or ``measures``) for one method; the fit's band drawn from
    ``n_boot`` bootstrap resamples with ``seed`` (the analysis's settings)."""
    data = tables.pairs_with_similarity(pairs, similarities)
    measures = (
        list(measures)
        if measures
        else vocabulary.measure_order(c for c in data.columns if c not in ("method", "source", "target", "gain", "gain_rel"))
    )
    return plots.scatter_gain_vs_similarity(data, method, measures, y=y, n_boot=n_boot, seed=seed)


def summary_figure(
    pairs: pd.DataFrame,
    correlations: pd.DataFrame | None = None,
    *,
    analysis: str = "within_target_spearman",
    level: float = DEFAULTS["level"],
):
    """Methods compared: gains, significant transfers, (given the correlations) gain vs similarity (the
    primary, within-target statistic by default, against the gain) and the variance shares."""
    if correlations is not None and "against" in correlations.columns:
        correlations = correlations[correlations["against"] == "gain"]
    return plots.summary_panel(pairs, correlations, analysis=analysis, level=level)


def shots_figure(table: pd.DataFrame):
    """Gain, baseline and zero-shot against the shot count (:func:`mvlpt.analysis.plots.shots_lines`) from the
    table across shot counts (:func:`mvlpt.analysis.tables.shots_table`); it needs at least two counts."""
    counts = sorted({int(s) for s in table["shots"].dropna()}) if "shots" in table.columns else []
    if len(counts) < 2:
        raise MvlptError(
            f"the shots figure needs a study over at least two shot counts (`shots: [1, 5, 20]`), got "
            f"{', '.join(map(str, counts)) or 'none'}."
        )
    return plots.shots_lines(table)


def make_all_figures(
    results_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    similarity_dir: str | os.PathLike | None = None,
    methods: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    cluster: bool = DEFAULTS["cluster"],
    n_boot: int = DEFAULTS["n_boot"],
    n_perm: int = DEFAULTS["n_perm"],
    seed: int = DEFAULTS["seed"],
    level: float = DEFAULTS["level"],
    model_measures: Sequence[str] | None = tuple(DEFAULTS["model_measures"]),
    allow_mixed_settings: bool = False,
    fdr: str = DEFAULTS["fdr"],
) -> list[Path]:
    """Every figure from the result files (and similarity tables) that exist now; returns the files written.

    The correlations of the summary panel are computed as ``mvlpt correlate`` does, with the same
    resampling settings (defaults: :data:`mvlpt.study.settings.ANALYSIS_DEFAULTS`).
    """
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir else layout.FIGURES_DIR.path(results_dir)
    sim_dir = Path(similarity_dir) if similarity_dir else layout.SIMILARITY_DIR.path(results_dir)
    runs, replicates = tables.load_study(results_dir, methods, tasks, seeds, allow_mixed_settings=allow_mixed_settings)
    if runs.empty:
        raise MvlptError(f"no result files found under {results_dir}; run the study first or check --results-dir.")
    pairs = tables.with_cell_statistics(tables.pair_table(runs), runs, replicates, level=level, fdr=fdr, tasks=tasks)
    order = tables.task_order(pairs, tasks)
    found_methods = vocabulary.method_order(pairs["method"].unique())
    written: list[Path] = []
    from mvlpt.analysis.reference import (
        baselines_table,
        load_reference,
        reference_dir,
    )  # the strip beside every gain heatmap

    reference = load_reference(reference_dir(results_dir), tasks, seeds)
    baselines = baselines_table(pairs, reference) if not reference.empty else None
    for method in found_methods:
        for stat in ("gain", "interaction"):
            fig = gain_figure(
                tables.matrix(pairs, method, stat, order),
                method,
                stat=stat,
                cluster=cluster,
                q=tables.matrix(pairs, method, f"{stat}_q", order),
                level=level,
                reference=baselines,
            )
            written += plots.save_figure(fig, layout.HEATMAP_FIGURE.path(out_dir, stat, method, "png"))
    sim_files = tables.similarity_files(sim_dir)
    corr = pd.DataFrame()
    if sim_files:
        sims = tables.read_similarities(sim_files)
        sim_tasks = [t for t in order if t in set(sims["task_a"])]
        for m in sims["measure"].unique():
            written += plots.save_figure(
                similarity_figure(sims, m, tasks=sim_tasks, cluster=cluster), layout.SIMILARITY_FIGURE.path(out_dir, m, "png")
            )
        measures = vocabulary.measure_order(sims["measure"].unique())
        for method in found_methods:
            written += plots.save_figure(
                scatter_figure(pairs, sims, method, measures=measures, n_boot=n_boot, seed=seed),
                layout.SCATTER_FIGURE.path(out_dir, method, "png"),
            )
        model = list(model_measures or [])
        corr = stats.correlate(
            pairs,
            sims,
            measures=measures,
            model_measures=model if model and set(model) <= set(measures) else None,
            n_boot=n_boot,
            n_perm=n_perm,
            seed=seed,
            level=level,
            runs=runs,
        )
    else:
        log.warning("no similarity tables in %s: similarity heatmaps and scatters skipped", sim_dir)
    if (~pairs["is_baseline"] & pairs["gain"].notna()).any():
        written += plots.save_figure(summary_figure(pairs, corr, level=level), layout.FIGURE.path(out_dir, "summary", "png"))
    predictor_scores = layout.TABLE.path(
        layout.TABLES_DIR.path(results_dir), "predictors", "parquet"
    )  # `mvlpt predict score` made it
    if predictor_scores.exists():
        written += plots.save_figure(
            predictors_figure(tables.read_table(predictor_scores)), layout.FIGURE.path(out_dir, "predictors", "png")
        )
    return written


def predictors_figure(scores: pd.DataFrame, *, by: str = "within_target_spearman"):
    """The transferability predictors ranked (best first by their mean ``by`` over methods), every score
    of :func:`mvlpt.transfer.predictor_scores.score_predictors` per method."""
    from mvlpt.transfer.predictor_scores import SCORES, predictor_order

    panels = sorted(SCORES, key=lambda x: x[0] != by)  # the primary score first
    return plots.predictor_ranking(scores, predictor_order(scores, by), [(s, label) for s, label, _ in panels])
