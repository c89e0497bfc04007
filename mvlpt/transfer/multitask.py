"""The multitask study's results: each target's multitask runs against its single-task baseline, per
method, mode and grouping strategy (docs/multitask.md).

Inputs, all on disk (nothing is trained here):

* the groups table of :mod:`mvlpt.transfer.grouping` (``{results}/multitask/groups.csv``): which group serves
  each (method, strategy, mode, target);
* the multitask result files, one per run, target and seed, at
  :data:`mvlpt.study.layout.MULTITASK_RESULT` (``{results}/multitask/{method}/{mode}/{group}/{target}/seed{seed}.json``):
  each is read with :func:`mvlpt.study.results.read_result` (the record schema, :func:`mvlpt.study.vocabulary.check_record`)
  and must hold the method, target and seed its place names, with the record mode of its multitask
  mode (:data:`RECORD_MODE`: ``init`` runs are sequential runs from the group's prompt, ``joint`` runs
  joint ones);
* the single-task baselines of the pairwise study: the diagonal cell
  ``{results}/{baseline method}/{t}__{t}/seed{seed}.json`` of each target ``t``, the baseline method
  being :attr:`mvlpt.study.vocabulary.Method.baseline` or the method itself (SoftCPT is compared with CoOp).

The seeds of a cell are averaged only when their records share one setting
(:data:`mvlpt.study.vocabulary.SETTING_FIELDS`), and a cell is compared with its baseline only when they agree
on shots, metric, epochs, model and weights (and, for the same method, its options and setting
hash): otherwise one sentence, or a warning with ``allow_mixed_settings``.

Tables (metric values are fractions in [0, 1] as in the result files, except the summary's ``_pts``
columns, which are percentage points):

* :func:`collect` -> ``multitask.csv``: one row per method, mode, strategy and target (:data:`TABLE_COLUMNS`):
  group, sources, seeds, test mean and std over seeds, the baseline's mean and std over the same
  seeds, and ``gain = test_mean - baseline_mean``;
* :func:`summarize` -> ``multitask_summary.csv``: per method, mode and strategy the means over targets
  of test, baseline and gain in points, the number of targets, a percentile bootstrap CI of the mean
  gain over targets (:mod:`mvlpt.analysis.stats`, i.e. :func:`scipy.stats.bootstrap`) and the ``paper`` column:
  the published averages a row corresponds to (:data:`PAPER`);
* :func:`gain_figure`: the mean gain per method x (mode, strategy) with its CI (PNG + PDF).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mvlpt.analysis import tables
from mvlpt.errors import MvlptError
from mvlpt.study import layout, results, settings, vocabulary

TABLE_COLUMNS = (
    "method",
    "mode",
    "strategy",
    "target",
    "group",
    "sources",
    "baseline_method",
    "metric",
    "n_seeds",
    "shots",
    "model",
    "test_mean",
    "test_std",
    "baseline_mean",
    "baseline_std",
    "gain",
)
SUMMARY_COLUMNS = (
    "method",
    "mode",
    "strategy",
    "shots",
    "n_targets",
    "test_mean_pts",
    "baseline_mean_pts",
    "gain_mean_pts",
    "gain_ci_low_pts",
    "gain_ci_high_pts",
    "paper",
)
# the record mode a multitask mode's result files carry (mvlpt.training.config.RunSpec.mode)
RECORD_MODE = {"init": "sequential", "joint": "joint"}
MULTITASK_HINT = "run the multitask study first: snakemake multitask"
PAIRWISE_HINT = "run the pairwise study first: snakemake analysis"

# The published numbers a summary row corresponds to: (method, mode, strategy) -> (text, paper gain in
# points or None). MVLPT (Shen et al., WACV 2024), Table 1: 12-task ELEVATER averages at ViT-B/16, 5
# shots, the source prompt trained on the 11 CoOp data sets (averaged over 3 seeds) initialising the
# target's (mode init, strategy fixed: `snakemake table1`); CLIP zero-shot 53.8. They stand beside a row
# only when its setting is that one (:func:`paper_setting`). SoftCPT (Ding et al.): RN50, other
# benchmarks, averages over 1-16 shots, SoftCPT vs CoOp (a note, never a match).
PAPER_MVLPT = "Table 1: 12-task ELEVATER avg, ViT-B/16, 5 shots; CLIP zero-shot 53.8"
PAPER: dict[tuple[str, str, str], tuple[str, float | None]] = {
    ("coop", "init", "fixed"): (f"MCoOp 61.5 (CoOp 55.5); {PAPER_MVLPT}", 61.5 - 55.5),
    ("vpt", "init", "fixed"): (f"MVPT 65.9 (VPT 60.1); {PAPER_MVLPT}", 65.9 - 60.1),
    ("upt", "init", "fixed"): (f"MUPT 65.8 (UPT 62.2); {PAPER_MVLPT}", 65.8 - 62.2),
    ("softcpt", "joint", "all"): (
        "SoftCPT paper, RN50, other benchmarks: General-10 67.12 vs CoOp 66.39, Plant-6 67.68 "
        "vs 62.59, RS-8 76.86 vs 73.23, Fashion-20 62.75 vs 59.95",
        None,
    ),
}


def baseline_method(method: str) -> str:
    """The method whose single-task baseline ``method``'s multitask results are compared with."""
    return vocabulary.method(method).baseline or method


PAPER_MODELS = ("ViT-B-16/openai", "ViT-B-16-quickgelu/openai")  # the paper's CLIP (model/pretrained of the records)
PAPER_SOURCE_PROMPT = "averaged"  # the seeds' source prompts averaged into one (the reference's avg_ckpt.py)


def paper_setting(rows: pd.DataFrame, source_prompt: str | None = None) -> bool:
    """Whether the multitask-table rows of one (method, mode, strategy) are the paper's Table 1 setting: strategy
    fixed with the sources of config ``table1`` (the 11 CoOp data sets) on exactly its targets (the 12 ELEVATER
    tasks that do not overlap with them), its shots (5), ViT-B/16 with OpenAI's weights, and the source prompt
    averaged over the seeds (``source_prompt``, the config's ``multitask.source_prompt``)."""
    t1 = settings.TABLE1_DEFAULTS
    if rows.empty or set(rows["strategy"]) != {"fixed"} or source_prompt != PAPER_SOURCE_PROMPT:
        return False
    sources = {frozenset(str(s).split("+")) for s in rows["sources"]}
    return (
        sources == {frozenset(t1["sources"])}
        and set(rows["target"]) == set(t1["targets"])
        and len(rows) == len(t1["targets"])
        and set(rows["shots"].astype("Int64")) == {int(t1["shots"])}
        and set(rows["model"]) <= set(PAPER_MODELS)
    )


def paper_reference(
    method: str, mode: str, strategy: str, rows: pd.DataFrame | None = None, source_prompt: str | None = None
) -> str:
    """The published averages of ``(method, mode, strategy)``: the Table 1 ones only where ``rows`` (its rows
    of the multitask table) are the paper's setting (:func:`paper_setting`); the SoftCPT note always."""
    text, gain = PAPER.get((method, mode, strategy), ("", None))
    if gain is not None and (rows is None or not paper_setting(rows, source_prompt)):
        return ""
    return text


# --------------------------------------------------------------------------------------------------
# Reading the result files
# --------------------------------------------------------------------------------------------------
def _read_multitask(path: Path, method: str, mode: str, target: str, seed: int) -> dict:
    rec = results.read_result(path)
    got = (rec["method"], rec["target"], int(rec["seed"]), rec["mode"])
    want = (method, target, int(seed), RECORD_MODE[mode])
    if got != want:
        raise MvlptError(
            f"result file {path} holds method/target/seed/mode {got} but its place says {want}; "
            f"move or delete the misplaced file."
        )
    return rec


def _check_sources(cell: list[tuple[Path, dict]], row) -> None:
    """The records of a cell carry their group's task set (their ``source``: the group's sources, "+"-
    joined); the table is built from them, and an index row that names other sources, or a group id
    that is not theirs, is refused (issue 24, class 3)."""
    for p, rec in cell:
        have = rec["source"].split("+")
        group = have if row.mode == "init" else [*have, rec["target"]]
        if set(have) != set(row.sources.split("+")) or vocabulary.group_id(group) != row.group:
            raise MvlptError(
                f"result file {p} was trained with the sources {rec['source']!r} (group "
                f"{vocabulary.group_id(group)}), but the groups table says {row.sources!r} (group {row.group}) "
                f"for {row.method} {row.mode} {row.strategy} target {row.target}; the table would label "
                f"one group's result with another's sources: remake groups.csv with `mvlpt multitask groups` "
                f"or move the misplaced result."
            )


def found_seeds(results_dir: str | os.PathLike, groups: pd.DataFrame) -> list[int]:
    """The seeds of the multitask result files of the ``groups``' cells that exist now."""
    seeds = set()
    for m, d, g, t in groups[["method", "mode", "group", "target"]].drop_duplicates().itertuples(index=False):
        for p in layout.MULTITASK_RESULT.path(results_dir, m, d, g, t, 0).parent.glob("seed*.json"):
            placed = layout.MULTITASK_RESULT.parse(p)
            if placed is not None:
                seeds.add(placed["seed"])
    return sorted(seeds)


def _check_setting(cell: list[tuple[Path, dict]], base: list[tuple[Path, dict]], same_method: bool, allow_mixed: bool) -> None:
    results.check_protocols([*cell, *base])  # never two protocols in one row
    problems = []
    (p0, r0), (bp, br) = cell[0], base[0]
    for p, r in cell[1:]:
        if results.setting_of(r, vocabulary.SETTING_FIELDS) != results.setting_of(r0, vocabulary.SETTING_FIELDS):
            problems.append(
                f"the seeds of {p0.parent} were made with different settings "
                f"({results.differing_fields(r0, r, vocabulary.SETTING_FIELDS)}: {p0} and {p})"
            )
            break
    fields = (
        results.GAIN_SETTING_FIELDS
        if same_method
        # another method (SoftCPT against CoOp's baseline) has its own options and may train its own number of
        # epochs (multitask.task_conditioned_train: SoftCPT's 50 under the reference protocol); its record says so
        else tuple(f for f in results.GAIN_SETTING_FIELDS if f not in ("method_options", "setting_hash", "epochs"))
    )
    if results.setting_of(r0, fields) != results.setting_of(br, fields):
        problems.append(
            f"{p0} and its baseline {bp} were made with different settings ({results.differing_fields(br, r0, fields)}), "
            f"so they make no gain"
        )
    results.refuse_mixed_settings(problems, allow_mixed=allow_mixed)


def collect(
    results_dir: str | os.PathLike,
    groups: pd.DataFrame,
    *,
    seeds: Sequence[int] | None = None,
    tasks: Sequence[str] | None = None,
    allow_mixed_settings: bool = False,
) -> pd.DataFrame:
    """The per-target table (:data:`TABLE_COLUMNS`) of every row of ``groups`` (the groups table of
    :mod:`mvlpt.transfer.grouping`) over ``seeds`` (default: the seeds of the multitask result files found).
    A missing result file, multitask or baseline, is one sentence naming the first one missing.
    Rows in method (registry), mode, strategy and target order (``tasks``, else natural order)."""
    results_dir = Path(results_dir)
    if groups.empty:
        raise MvlptError("the groups table is empty; make it with `mvlpt multitask groups` over the study's tasks.")
    from mvlpt.transfer.grouping import check_groups

    check_groups(groups)  # one row per target, each consistent with its group id (issue 24, class 3)
    seeds = sorted({int(s) for s in seeds}) if seeds else found_seeds(results_dir, groups)
    if not seeds:
        raise MvlptError(f"no multitask result files under {layout.MULTITASK_DIR.path(results_dir)}; {MULTITASK_HINT}.")
    cells: dict[tuple, list] = {}
    baselines: dict[tuple, list] = {}
    rows = []
    for r in groups.itertuples(index=False):
        key = (r.method, r.mode, r.group, r.target)
        if key not in cells:
            paths = [layout.MULTITASK_RESULT.path(results_dir, *key, s) for s in seeds]
            missing = [p for p in paths if not p.is_file()]
            if missing:
                more = f" (and {len(missing) - 1} more of this cell)" if len(missing) > 1 else ""
                raise MvlptError(
                    f"the {r.method} {r.mode} results of strategy {r.strategy} are incomplete: "
                    f"{missing[0]} is missing{more}; {MULTITASK_HINT}."
                )
            cells[key] = [(p, _read_multitask(p, r.method, r.mode, r.target, s)) for p, s in zip(paths, seeds)]
            _check_sources(cells[key], r)
        bm = baseline_method(r.method)
        if (bm, r.target) not in baselines:
            paths = [layout.RESULT.path(results_dir, bm, r.target, r.target, s) for s in seeds]
            missing = [p for p in paths if not p.is_file()]
            if missing:
                raise MvlptError(
                    f"the single-task baseline {missing[0]} of {r.method}'s target {r.target} is missing; {PAIRWISE_HINT}."
                )
            baselines[(bm, r.target)] = [(p, results.read_result(p)) for p in paths]
        cell, base = cells[key], baselines[(bm, r.target)]
        _check_setting(cell, base, bm == r.method, allow_mixed_settings)
        test = np.array([rec["test"] for _, rec in cell], float)
        ref = np.array([rec["test"] for _, rec in base], float)
        rows.append(
            {
                "method": r.method,
                "mode": r.mode,
                "strategy": r.strategy,
                "target": r.target,
                "group": r.group,
                "sources": cell[0][1]["source"],
                "baseline_method": bm,
                "metric": cell[0][1]["metric"],
                "n_seeds": len(test),
                "shots": cell[0][1]["shots"],
                "model": f"{cell[0][1]['model']}/{cell[0][1].get('pretrained') or 'none'}",
                "test_mean": test.mean(),
                "test_std": test.std(ddof=1) if len(test) > 1 else np.nan,
                "baseline_mean": ref.mean(),
                "baseline_std": ref.std(ddof=1) if len(ref) > 1 else np.nan,
                "gain": test.mean() - ref.mean(),
            }
        )
    out = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    out["n_seeds"] = out["n_seeds"].astype("int64")
    out["shots"] = out["shots"].astype("Int64")
    return _ordered(out, tasks)


def _ordered(df: pd.DataFrame, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows in method (registry), mode, strategy (study order) and target (``tasks``, else natural) order."""
    methods = vocabulary.method_order(df["method"].unique())
    targets = list(tasks) if tasks else tables.natural_sorted(df["target"].unique()) if "target" in df else []
    rank = {
        "method": {m: i for i, m in enumerate(methods)},
        "mode": {m: i for i, m in enumerate(vocabulary.MULTITASK_MODES)},
        "strategy": {s: i for i, s in enumerate(vocabulary.GROUPING_STRATEGIES)},
        "target": {t: i for i, t in enumerate(targets)},
    }
    by = [c for c in rank if c in df.columns]
    key = lambda col: col.map(rank[col.name]).fillna(len(rank[col.name]))  # noqa: E731
    return df.sort_values(by, key=key, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------
def mean_ci(values, *, n_boot: int, seed: int, level: float) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (:mod:`mvlpt.analysis.stats`); NaN under two values."""
    from mvlpt.analysis.stats import bootstrap_ci

    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if n_boot <= 0 or len(values) < 2:
        return np.nan, np.nan
    lo, hi = bootstrap_ci((values,), np.mean, paired=False, n_boot=n_boot, rng=np.random.default_rng(seed), level=level)
    return float(lo), float(hi)


def summarize(
    table: pd.DataFrame,
    *,
    n_boot: int = settings.ANALYSIS_DEFAULTS["n_boot"],
    seed: int = settings.ANALYSIS_DEFAULTS["seed"],
    level: float = settings.ANALYSIS_DEFAULTS["level"],
    source_prompt: str | None = None,
) -> pd.DataFrame:
    """Per method, mode and strategy: means over targets in percentage points, the bootstrap CI of the
    mean gain over targets, and the paper's reference where the rows are its setting (:data:`SUMMARY_COLUMNS`,
    :func:`paper_reference`; ``source_prompt``: the config's ``multitask.source_prompt``)."""
    from mvlpt.study.domains import check_level

    check_level(level, "level")
    dup = table.duplicated(["method", "mode", "strategy", "target"])
    if dup.any():
        r = table[dup].iloc[0]
        raise MvlptError(
            f"the multitask table has more than one row of {r['method']} {r['mode']} {r['strategy']} target "
            f"{r['target']}: a target would count twice in the means; remake it with `mvlpt multitask table`."
        )
    rows = []
    for (m, d, s), g in table.groupby(["method", "mode", "strategy"], sort=False):
        lo, hi = mean_ci(g["gain"], n_boot=n_boot, seed=seed, level=level)
        rows.append(
            {
                "method": m,
                "mode": d,
                "strategy": s,
                "shots": _one_shot_count(g),
                "n_targets": int(g["target"].nunique()),
                "test_mean_pts": 100 * g["test_mean"].mean(),
                "baseline_mean_pts": 100 * g["baseline_mean"].mean(),
                "gain_mean_pts": 100 * g["gain"].mean(),
                "gain_ci_low_pts": 100 * lo,
                "gain_ci_high_pts": 100 * hi,
                "paper": paper_reference(m, d, s, g, source_prompt),
            }
        )
    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    out["n_targets"] = out["n_targets"].astype("int64")
    out["shots"] = out["shots"].astype("Int64")
    return _ordered(out)


def _one_shot_count(rows: pd.DataFrame):
    """The shot count of a summary row's targets (NA where the table has none or they differ)."""
    found = set(rows["shots"].dropna().astype(int)) if "shots" in rows.columns else set()
    return found.pop() if len(found) == 1 else pd.NA


def write_tables(
    table: pd.DataFrame, summary: pd.DataFrame, table_out: str | os.PathLike, summary_out: str | os.PathLike
) -> list[Path]:
    """The per-target table at ``table_out`` and the summary at ``summary_out``, each as CSV + parquet
    (:func:`mvlpt.analysis.tables.write_table`), all four files or none."""
    from mvlpt.io import write_together

    with write_together():
        return tables.write_table(table, table_out) + tables.write_table(summary, summary_out)


# --------------------------------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------------------------------
def gain_figure(summary: pd.DataFrame):
    """One panel per method: the mean gain over its single-task baseline (points) of each (mode,
    strategy), with the bootstrap CI over targets; a star marks the paper's gain where a row has one."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from mvlpt.analysis import plots

    if summary.empty:
        raise MvlptError(f"the multitask summary is empty; {MULTITASK_HINT}.")
    plots.set_style()
    summary = _ordered(summary)
    methods = vocabulary.method_order(summary["method"].unique())
    pal = plots.method_palette(methods)
    widths = [max(len(summary[summary["method"] == m]), 1) for m in methods]
    fig, axes = plt.subplots(
        1,
        len(methods),
        figsize=(0.55 * sum(widths) + 1.2 * len(methods) + 0.8, 3.4),
        gridspec_kw={"width_ratios": widths},
        squeeze=False,
        sharey=True,
    )
    starred = False
    for ax, m in zip(axes[0], methods):
        s = summary[summary["method"] == m].reset_index(drop=True)
        x = np.arange(len(s))
        est = s["gain_mean_pts"].to_numpy(float)
        err = np.vstack([est - s["gain_ci_low_pts"].to_numpy(float), s["gain_ci_high_pts"].to_numpy(float) - est])
        bars = ax.bar(x, est, width=0.7, color=pal[m], edgecolor="0.25", linewidth=0.6)
        for bar, mode in zip(bars, s["mode"]):
            if mode == "joint":
                bar.set_hatch("///")
                bar.set_alpha(0.75)
        if np.isfinite(err).any():
            ax.errorbar(x, est, yerr=np.where(np.isfinite(err), np.abs(err), 0), fmt="none", ecolor="0.15", lw=0.9, capsize=2.5)
        for i, r in s.iterrows():
            # the paper's gain only where the summary row stands beside its numbers (its setting: paper_setting)
            paper = (
                PAPER.get((r["method"], r["mode"], r["strategy"]), ("", None))[1]
                if isinstance(r.get("paper"), str) and r.get("paper")
                else None
            )
            if paper is not None:
                ax.plot(i, paper, marker="*", color="k", ms=9, ls="none", label=None if starred else "paper (12 ELEVATER tasks)")
                starred = True
        ax.axhline(0, color="0.4", lw=0.8, ls="--")
        ax.set_xticks(x, [f"{d}\n{st}" for d, st in zip(s["mode"], s["strategy"])])
        base = baseline_method(m)
        ax.set_title(vocabulary.METHODS[m].label if m in vocabulary.METHODS else m)
        ax.set_xlabel(f"vs {vocabulary.METHODS[base].label if base in vocabulary.METHODS else base} single-task", fontsize=8)
    axes[0][0].set_ylabel("gain over single-task baseline (points)")
    if starred:
        fig.legend(frameon=False, loc="upper right")
    fig.suptitle("multitask prompts: mean gain over targets (bootstrap CI over targets; hatched: joint)", y=1.02)
    sns.despine(fig)
    fig.tight_layout()
    return fig
