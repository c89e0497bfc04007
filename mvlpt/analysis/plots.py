"""Figures of the transfer study (seaborn/matplotlib), one style, saved as PNG and PDF.

Every function returns the matplotlib ``Figure`` (tests read cells and labels back from it);
:func:`save_figure` writes ``<stem>.png`` and ``<stem>.pdf``. Gains are shown in percentage points.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mvlpt.errors import MvlptError
from mvlpt.study import settings, vocabulary

FORMATS = ("png", "pdf")
DPI = 200
ANNOTATE_MAX = 20  # annotate heatmap cells up to this many tasks
DIVERGING = "RdBu_r"  # gains: red = positive transfer, blue = negative, white = 0
SEQUENTIAL = "YlGnBu"  # similarities: dark = similar (distances use the reversed map)
STYLE_RC = {
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "pdf.fonttype": 42,  # editable text in the PDFs
}
LABELS = {
    "gain": "gain over baseline (points)",
    "gain_rel": "relative gain over baseline (%)",
    "mean": "target test metric (%)",
    "std": "std over seeds (points)",
    "interaction": "pair-specific gain: interaction (points)",
    "gain_ci_low": "gain, lower interval bound (points)",
    "gain_ci_high": "gain, upper interval bound (points)",
}
SCALE = {
    "gain": 100.0,
    "gain_rel": 100.0,
    "mean": 100.0,
    "std": 100.0,
    "interaction": 100.0,
    "gain_ci_low": 100.0,
    "gain_ci_high": 100.0,
}


def _quiet(fn):
    """Silence deprecation chatter that seaborn 0.13 triggers inside newer matplotlib."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module="seaborn")
            warnings.filterwarnings("ignore", message=".*vert: bool was deprecated.*")
            warnings.filterwarnings("ignore", message=".*set_bad function will be deprecated.*")
            return fn(*args, **kwargs)

    return wrapper


def set_style() -> None:
    """The one style of every figure (seaborn "ticks", paper context, fixed font sizes)."""
    sns.set_theme(context="paper", style="ticks", rc=STYLE_RC)


def method_palette(methods: Sequence[str]) -> dict[str, tuple]:
    """Fixed colours per method (the study's methods first, in their order), colour-blind safe."""
    known = list(vocabulary.METHODS)
    ordered = vocabulary.method_order(methods)
    colours = sns.color_palette("colorblind", max(len(ordered), len(known)))
    fixed = {m: colours[i] for i, m in enumerate(known)}
    extra = iter(colours[len(known) :] if len(colours) > len(known) else sns.color_palette("dark", 10))
    return {m: fixed.get(m) or next(extra) for m in ordered}


def save_figure(fig: plt.Figure, path: str | os.PathLike, formats: Sequence[str] = FORMATS, close: bool = True) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` (``path``'s own suffix is replaced)."""
    from mvlpt.io import atomic_path

    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in (".png", ".pdf", ".svg") else path
    out = []
    for fmt in formats:
        dest = stem.with_name(stem.name + "." + fmt)
        with atomic_path(dest) as tmp:
            fig.savefig(tmp, format=fmt)
        out.append(dest)
    if close:
        plt.close(fig)
    return out


def cluster_order(m: pd.DataFrame) -> list[str]:
    """One task order for both axes from average-linkage clustering of the rows+columns profile."""
    from scipy.cluster.hierarchy import leaves_list, linkage

    a = m.to_numpy(float)
    if len(a) < 3:
        return list(m.index)
    a = np.where(np.isfinite(a), a, np.nanmean(a) if np.isfinite(a).any() else 0.0)
    feats = np.hstack([a, a.T])  # a task's profile as a source and as a target
    z = linkage(feats, method="average", metric="euclidean", optimal_ordering=True)
    return [m.index[i] for i in leaves_list(z)]


@_quiet
def heatmap(
    m: pd.DataFrame,
    *,
    title: str = "",
    cbar_label: str = "",
    diverging: bool = True,
    cmap: str | None = None,
    annotate: bool | None = None,
    fmt: str = ".1f",
    cluster: bool = False,
    xlabel: str = "target",
    ylabel: str = "source",
    mask_diagonal: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    ax: plt.Axes | None = None,
) -> plt.Figure:
    """Heatmap of a square task x task matrix, task names on both axes.

    Diverging maps are centred at 0 with symmetric limits; cells are annotated when N <=
    :data:`ANNOTATE_MAX` (or as ``annotate`` says). ``cluster`` reorders both axes alike.
    """
    set_style()
    if list(m.index) != list(m.columns):
        raise MvlptError("heatmap needs a square matrix with the same tasks as rows and columns.")
    if cluster:
        order = cluster_order(m)
        m = m.reindex(index=order, columns=order)
    n = len(m)
    annotate = n <= ANNOTATE_MAX if annotate is None else annotate
    data = m.to_numpy(float).copy()
    mask = ~np.isfinite(data)
    if mask_diagonal:
        mask |= np.eye(n, dtype=bool)
    if ax is None:
        side = min(max(3.2, 0.42 * n + 2.2), 16)
        fig, ax = plt.subplots(figsize=(side + 1.0, side))
    else:
        fig = ax.figure
    finite = data[~mask]
    kw: dict = {}
    if diverging:
        lim = float(np.nanmax(np.abs(finite))) if finite.size else 1.0
        lim = lim if lim > 0 else 1.0
        kw.update(center=0.0, vmin=-lim if vmin is None else vmin, vmax=lim if vmax is None else vmax, cmap=cmap or DIVERGING)
    else:
        kw.update(cmap=cmap or SEQUENTIAL, vmin=vmin, vmax=vmax)
    annot_size = max(5.0, min(8.0, 110.0 / max(n, 1)))
    sns.heatmap(
        pd.DataFrame(data, index=m.index, columns=m.columns),
        mask=mask,
        annot=annotate,
        fmt=fmt,
        annot_kws={"size": annot_size},
        linewidths=0.4,
        linecolor="white",
        square=True,
        xticklabels=True,
        yticklabels=True,
        cbar_kws={"label": cbar_label, "shrink": 0.8},
        ax=ax,
        **kw,
    )
    ax.set_facecolor("#d9d9d9")  # masked cells (diagonal, missing) in light grey
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticklabels(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
    if title:
        ax.set_title(title)
    return fig


def gain_heatmap(
    gain: pd.DataFrame,
    method: str,
    *,
    stat: str = "gain",
    cluster: bool = False,
    annotate: bool | None = None,
    q: pd.DataFrame | None = None,
    level: float = 0.95,
    ax=None,
    reference: pd.DataFrame | None = None,
) -> plt.Figure:
    """Gain matrix (source rows x target columns) of one method, in points; diagonal = baseline, greyed.

    Given ``q``, the matrix of the cells' q-values (:func:`mvlpt.analysis.gainstats.cell_table`), the cells whose
    q-value is below ``1 - level`` (transfer distinguishable from noise, FDR-controlled) get a black frame,
    and the title says how many.

    ``reference`` (index: target; columns ``baseline``, ``zeroshot``, ``linear_probe``, fractions; e.g. one
    method's rows of the baselines table) adds a strip above the heatmap: per target column the
    prompt baseline, zero-shot CLIP and the linear probe in points, a baseline below zero-shot in red."""
    scale = SCALE.get(stat, 1.0)
    off = gain.to_numpy(float).copy()
    np.fill_diagonal(off, np.nan)
    mean_off = np.nanmean(off) * scale if np.isfinite(off).any() else np.nan
    what = {"gain": "transfer gain", "interaction": "pair-specific gain (interaction)"}.get(stat, stat.replace("_", " "))
    title = f"{method}: {what}"
    if np.isfinite(mean_off) and stat != "interaction":
        title += f" (mean off-diagonal {mean_off:+.1f})"
    order = cluster_order(gain) if cluster else list(gain.index)
    gain = gain.reindex(index=order, columns=order)
    sig = None
    if q is not None:
        qq = q.reindex(index=order, columns=order).to_numpy(float)
        sig = np.isfinite(qq) & (qq < 1 - level) & np.isfinite(gain.to_numpy(float))
        np.fill_diagonal(sig, False)
        n_cells = int(np.isfinite(off).sum())
        title += f"\nframed: q < {1 - level:.2g} ({int(sig.sum())} of {n_cells} cells)"
    if reference is None:
        fig = heatmap(
            gain * scale,
            title=title,
            cbar_label=LABELS.get(stat, stat),
            diverging=True,
            cluster=False,
            annotate=annotate,
            mask_diagonal=True,
            fmt=".1f",
            ax=ax,
        )
        axis = ax or fig.axes[0]
    else:  # the reference strip above the heatmap, its columns aligned with the heatmap's
        set_style()
        n = len(gain)
        side = min(max(3.2, 0.42 * n + 2.2), 16)
        fig, (strip_ax, axis) = plt.subplots(2, 1, figsize=(side + 1.0, side + 1.6), gridspec_kw={"height_ratios": [1.3, side]})
        heatmap(
            gain * scale,
            title="",
            cbar_label=LABELS.get(stat, stat),
            diverging=True,
            cluster=False,
            annotate=annotate,
            mask_diagonal=True,
            fmt=".1f",
            ax=axis,
        )
    if sig is not None and sig.any():
        for r, c in zip(*np.nonzero(sig)):
            axis.add_patch(plt.Rectangle((c + 0.04, r + 0.04), 0.92, 0.92, fill=False, edgecolor="black", lw=1.6))
    if reference is not None:
        flagged, known = reference_strip(strip_ax, list(gain.columns), reference, heat_ax=axis)
        if known:
            title += f"\nbaseline below zero-shot on {flagged} of {known} targets"
        strip_ax.set_title(title)
    return fig


def completed_heatmap(completed: pd.DataFrame, method: str, tasks: Sequence[str], *, level: float = 0.9) -> plt.Figure:
    """A budgeted study's completed gain matrix of one method (:mod:`mvlpt.transfer.budget_rounds`), in points:
    every off-diagonal cell's gain, measured or predicted, the measured cells framed; each cell annotated with
    its gain and, for a predicted cell, its interval's half-width (``±``), as :func:`gain_heatmap` draws a study."""
    order = list(tasks)
    gain = completed.pivot(index="source", columns="target", values="gain").reindex(index=order, columns=order)
    half = ((completed["hi"] - completed["lo"]) / 2).to_numpy(float)
    width = pd.DataFrame({"source": completed["source"], "target": completed["target"], "half": half})
    width = width.pivot(index="source", columns="target", values="half").reindex(index=order, columns=order)
    measured = completed.pivot(index="source", columns="target", values="measured").reindex(index=order, columns=order)
    is_measured = measured.fillna(False).to_numpy(bool)
    n = len(order)
    n_measured = int(is_measured.sum())
    title = (
        f"{method}: completed transfer gain, {n_measured} of {n * (n - 1)} cells measured (framed)\n"
        f"predicted cells: gain ± half its {100 * level:.0f} % interval"
    )
    annotate = n <= ANNOTATE_MAX
    fig = heatmap(gain * 100.0, title=title, cbar_label=LABELS["gain"], diverging=True, annotate=False, mask_diagonal=True)
    ax = fig.axes[0]
    g, w = gain.to_numpy(float) * 100.0, width.to_numpy(float) * 100.0
    size = max(4.0, min(7.0, 90.0 / max(n, 1)))
    lim = float(np.nanmax(np.abs(g))) if np.isfinite(g).any() else 1.0
    for r in range(n):
        for c in range(n):
            if r == c or not np.isfinite(g[r, c]):
                continue
            if is_measured[r, c]:
                ax.add_patch(plt.Rectangle((c + 0.04, r + 0.04), 0.92, 0.92, fill=False, edgecolor="black", lw=1.6))
            if annotate:
                text = f"{g[r, c]:.1f}" if is_measured[r, c] or not np.isfinite(w[r, c]) else f"{g[r, c]:.1f}\n±{w[r, c]:.1f}"
                colour = "white" if abs(g[r, c]) > 0.6 * lim else "black"  # readable on the map's dark ends
                ax.text(c + 0.5, r + 0.5, text, ha="center", va="center", fontsize=size, color=colour)
    return fig


@_quiet
def budget_progress(progress: pd.DataFrame, method: str, certain: float = 0.9) -> plt.Figure:
    """What a budgeted study's completion says after each round, against the share of pairs trained:
    the mean width of the predicted cells' intervals (points, left), and the share of targets whose best
    source is certain (probability >= ``certain``) and the share whose best source is the final round's
    (right)."""
    set_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.0, 3.2))
    x = 100.0 * progress["share"].to_numpy(float)
    left.plot(x, 100.0 * progress["mean_width"].to_numpy(float), marker="o", color="#2b6a99")
    left.set_xlabel("pairs trained (% of the study's)")
    left.set_ylabel("mean interval width, predicted cells (points)")
    right.plot(
        x,
        100.0 * progress["certain"].to_numpy(float),
        marker="o",
        color="#2b6a99",
        label=f"best source certain (p >= {certain:g})",
    )
    right.plot(x, 100.0 * progress["agree_final"].to_numpy(float), marker="s", color="0.45", label="best source = final round's")
    right.set_ylim(-3, 103)
    right.set_xlabel("pairs trained (% of the study's)")
    right.set_ylabel("targets (%)")
    right.legend(loc="best")
    ticks = [f"{xx:.0f}\nround {int(r)}" for r, xx in zip(progress["round"], x)]
    for ax in (left, right):
        ax.set_xticks(x, ticks)
    fig.suptitle(f"{method}: the budgeted study by round")
    fig.tight_layout()
    return fig


REFERENCE_STYLE = {  # the reference strip's markers: (label, marker, colour)
    "baseline": ("prompt baseline", "o", "#2b6a99"),
    "below": ("baseline below zero-shot", "o", "#c0392b"),
    "zeroshot": ("zero-shot CLIP", "_", "black"),
    "linear_probe": ("linear probe", "s", "0.55"),
}


def reference_strip(ax, targets: Sequence[str], reference: pd.DataFrame, *, heat_ax=None) -> tuple[int, int]:
    """Per target (x = 0.5, 1.5, ... as the heatmap's columns): baseline, zero-shot and linear probe in
    points; baselines below zero-shot in red. Aligned with ``heat_ax``'s columns when given. Returns
    (targets whose baseline is below zero-shot, targets with both values)."""
    ref = reference.reindex(list(targets))
    x = np.arange(len(targets)) + 0.5

    def col(name):
        return (ref[name].to_numpy(float) if name in ref.columns else np.full(len(x), np.nan)) * 100.0

    base, zs, lp = col("baseline"), col("zeroshot"), col("linear_probe")
    flag = np.isfinite(base) & np.isfinite(zs) & (base < zs)
    label, marker, colour = REFERENCE_STYLE["zeroshot"]
    ax.scatter(x, zs, marker=marker, s=260, linewidths=2.0, color=colour, label=label, zorder=3, gid="zeroshot")
    label, marker, colour = REFERENCE_STYLE["linear_probe"]
    ax.scatter(x, lp, marker=marker, s=22, color=colour, label=label, zorder=2, gid="linear_probe")
    for key, sel in (("baseline", ~flag), ("below", flag)):
        label, marker, colour = REFERENCE_STYLE[key]
        if sel.any() or key == "baseline":
            ax.scatter(x[sel], base[sel], marker=marker, s=26, color=colour, label=label, zorder=4, gid=key)
    for xi, b, z in zip(x[flag], base[flag], zs[flag]):
        ax.plot([xi, xi], [b, z], color=REFERENCE_STYLE["below"][2], lw=1.0, zorder=1)
    ax.set_xlim(0, len(targets))
    ax.set_xticks(x)
    ax.set_xticklabels([])
    ax.tick_params(axis="x", length=0)
    ax.set_ylabel("test (%)")
    ax.grid(axis="y", color="0.9", lw=0.6)
    ax.set_gid("reference")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=7, handletextpad=0.3)
    sns.despine(ax=ax)
    if heat_ax is not None:  # the heatmap is square (its axes shrink at draw time): the strip follows its columns
        heat_ax.apply_aspect()
        hp, sp = heat_ax.get_position(), ax.get_position()
        ax.set_position([hp.x0, sp.y0, hp.width, sp.height])
    return int(flag.sum()), int((np.isfinite(base) & np.isfinite(zs)).sum())


def similarity_heatmap(
    m: pd.DataFrame, measure: str, *, cluster: bool = False, annotate: bool | None = None, ax=None
) -> plt.Figure:
    """Similarity (or distance) matrix; dark = similar for both kinds."""
    meas = vocabulary.MEASURES.get(measure)
    is_dist = vocabulary.is_distance(measure)
    finite = m.to_numpy(float)[np.isfinite(m.to_numpy(float))]
    fmt = ".2f" if finite.size == 0 or np.nanmax(np.abs(finite)) < 10 else ".0f"
    return heatmap(
        m,
        title=f"task {'distance' if is_dist else 'similarity'}: {measure}",
        cbar_label=meas.label if meas else measure,
        diverging=False,
        cmap=SEQUENTIAL + ("_r" if is_dist else ""),
        cluster=cluster,
        annotate=annotate,
        fmt=fmt,
        xlabel="task",
        ylabel="task",
        ax=ax,
    )


@_quiet
def scatter_gain_vs_similarity(
    data: pd.DataFrame,
    method: str,
    measures: Sequence[str],
    *,
    y: str = "gain",
    correlations: pd.DataFrame | None = None,
    n_boot: int = settings.ANALYSIS_DEFAULTS["n_boot"],
    seed: int = settings.ANALYSIS_DEFAULTS["seed"],
) -> plt.Figure:
    """One panel per similarity: off-diagonal pairs, OLS fit with 95% band, Pearson r / Spearman rho in the title.

    The band is seaborn's bootstrap of the fit over the pairs, with the analysis's resamples ``n_boot``
    and ``seed`` (config ``analysis``), as every other interval of the study.

    ``data`` is :func:`mvlpt.analysis.tables.pairs_with_similarity` (raw similarity values; distances are
    plotted as they are, so their expected slope is negative, while r in the title is computed on
    the values shown).
    """
    from scipy import stats

    set_style()
    d = data[data["method"] == method]
    measures = [m for m in measures if m in d.columns]
    if not measures:
        raise MvlptError(f"no similarity columns to plot for {method}; pass similarity tables.")
    fig, axes = plt.subplots(1, len(measures), figsize=(3.2 * len(measures), 3.2), squeeze=False, sharey=True)
    colour = method_palette([method])[method]
    for ax, meas in zip(axes[0], measures):
        dd = d[[meas, y]].dropna()
        xs, ys = dd[meas].to_numpy(float), dd[y].to_numpy(float) * SCALE.get(y, 1.0)
        sns.regplot(
            x=xs,
            y=ys,
            ax=ax,
            color=colour,
            scatter_kws={"s": 14, "alpha": 0.7, "linewidths": 0},
            line_kws={"lw": 1.5},
            ci=95,
            truncate=True,
            n_boot=n_boot,
            seed=seed,
        )
        ax.axhline(0, color="0.5", lw=0.8, ls="--", zorder=0)
        if len(ys):  # keep the points in view when the fit's band is wide (few pairs)
            lo, hi = min(ys.min(), 0.0), max(ys.max(), 0.0)
            pad = 0.15 * (hi - lo) if hi > lo else 1.0
            ax.set_ylim(lo - pad, hi + pad)
        if len(xs) >= 3 and np.ptp(xs) > 0 and np.ptp(ys) > 0:
            r, p = stats.pearsonr(xs, ys)
            rho = stats.spearmanr(xs, ys).statistic
            ax.set_title(f"r = {r:+.2f} (p = {p:.2g}), \u03c1 = {rho:+.2f}")
        else:
            ax.set_title("r = n/a")
        ax.set_xlabel(vocabulary.MEASURES[meas].label if meas in vocabulary.MEASURES else meas, fontsize=8)
    axes[0][0].set_ylabel(LABELS.get(y, y))
    for ax in axes[0][1:]:
        ax.set_ylabel("")
    fig.suptitle(f"{method}: gain vs task similarity (n = {len(d)} pairs)", y=1.02)
    sns.despine(fig)
    fig.tight_layout()
    return fig


@_quiet
def summary_panel(
    pairs: pd.DataFrame, correlations: pd.DataFrame | None = None, analysis: str = "spearman", level: float = 0.95
) -> plt.Figure:
    """Methods side by side: off-diagonal gain distributions, share of significant transfers (or, for
    results without intervals, of positive gains), correlations, and the variance shares of the gain
    matrix (source effect, target effect, interaction)."""
    from mvlpt.analysis.tables import decomposition_table

    set_style()
    off = pairs[~pairs["is_baseline"] & pairs["gain"].notna()].copy()
    if off.empty:
        raise MvlptError("no off-diagonal results with a baseline to summarise; run the study first.")
    methods = vocabulary.method_order(off["method"].unique())
    pal = method_palette(methods)
    off["gain_pts"] = off["gain"] * 100
    has_corr = correlations is not None and not correlations.empty and (correlations["analysis"] == analysis).any()
    parts = decomposition_table(pairs)
    has_parts = not parts.empty
    widths = [1.0, 0.7] + ([1.3] if has_corr else []) + ([0.7] if has_parts else [])
    ncols = len(widths)
    fig, axes = plt.subplots(1, ncols, figsize=(3.3 * ncols + 0.6, 3.4), gridspec_kw={"width_ratios": widths})
    ax = axes[0]
    sns.boxplot(
        data=off,
        x="method",
        y="gain_pts",
        order=methods,
        hue="method",
        palette=pal,
        ax=ax,
        width=0.55,
        fliersize=0,
        boxprops={"alpha": 0.45},
        legend=False,
    )
    state = np.random.get_state()  # seaborn jitters with numpy's global generator: fix it, so a figure redraws alike
    np.random.seed(0)
    try:
        sns.stripplot(
            data=off,
            x="method",
            y="gain_pts",
            order=methods,
            hue="method",
            palette=pal,
            ax=ax,
            size=2.5,
            alpha=0.7,
            jitter=0.2,
            legend=False,
        )
    finally:
        np.random.set_state(state)
    ax.axhline(0, color="0.4", lw=0.8, ls="--")
    ax.set_ylabel(LABELS["gain"])
    ax.set_xlabel("")
    ax.set_title("transfer gain, off-diagonal pairs")
    ax = axes[1]
    if "gain_q" in off.columns and off["gain_q"].notna().any():  # only gains distinguishable from noise count
        alpha = 1 - level
        sig = off["gain_q"] < alpha
        pos = off.assign(v=sig & (off["gain"] > 0)).groupby("method")["v"].mean().reindex(methods) * 100
        neg = off.assign(v=sig & (off["gain"] < 0)).groupby("method")["v"].mean().reindex(methods) * 100
        ax.bar(range(len(methods)), pos.to_numpy(), color=[pal[m] for m in methods], label="positive")
        ax.bar(range(len(methods)), -neg.to_numpy(), color=[pal[m] for m in methods], alpha=0.4, hatch="//", label="negative")
        ax.set_ylim(-100, 100)
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_ylabel(f"pairs with q < {alpha:.2g} (%)")
        ax.set_title("significant transfers (FDR)")
        ax.legend(frameon=False, fontsize=7, loc="lower right")
    else:  # results without intervals: every gain > 0 counts, and the title says so
        share = off.groupby("method")["gain"].apply(lambda s: 100 * (s > 0).mean()).reindex(methods)
        ax.bar(range(len(methods)), share.to_numpy(), color=[pal[m] for m in methods])
        ax.set_ylim(0, 100)
        ax.axhline(50, color="0.4", lw=0.8, ls="--")
        ax.set_ylabel("pairs with positive gain (%)")
        ax.set_title("positive transfers (no intervals)")
    ax.set_xticks(range(len(methods)), methods)
    if has_parts:
        ax = axes[-1]
        bottom = np.zeros(len(methods))
        colours = {"source": "#4c72b0", "target": "#dd8452", "interaction": "#55a868"}
        for part, colour in colours.items():
            v = parts[parts["part"] == part].set_index("method")["share"].reindex(methods).to_numpy(float) * 100
            v = np.where(np.isfinite(v), v, 0.0)
            ax.bar(range(len(methods)), v, bottom=bottom, color=colour, label=part)
            bottom += v
        ax.set_xticks(range(len(methods)), methods)
        ax.set_ylim(0, max(100, float(np.nanmax(bottom)) + 5))
        ax.set_ylabel("share of the gain matrix's variance (%)")
        ax.set_title("what the gains are about")
        ax.legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if has_corr:
        ax = axes[2]
        c = correlations[(correlations["analysis"] == analysis) & correlations["method"].isin(methods)].copy()
        meas = list(dict.fromkeys(c["similarity"]))
        width = 0.8 / max(len(methods), 1)
        for k, m in enumerate(methods):
            cm = c[c["method"] == m].set_index("similarity").reindex(meas)
            x = np.arange(len(meas)) + (k - (len(methods) - 1) / 2) * width
            est = cm["estimate"].to_numpy(float)
            lo = est - cm["ci_low"].to_numpy(float)
            hi = cm["ci_high"].to_numpy(float) - est
            ax.bar(x, est, width=width * 0.95, color=pal[m], label=m)
            err = np.vstack([lo, hi])
            if np.isfinite(err).any():
                ax.errorbar(x, est, yerr=np.where(np.isfinite(err), err, 0), fmt="none", ecolor="0.2", lw=0.8, capsize=2)
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xticks(range(len(meas)), [s.replace("_", "\n") for s in meas])
        ax.set_ylim(-1, 1)
        ax.set_ylabel(f"{analysis.replace('_', ' ')} with gain")
        within = "within targets, " if analysis == "within_target_spearman" else ""
        ax.set_title(f"gain vs similarity ({within}{level:.0%} CI)")
        if has_parts:
            ax.legend(frameon=False, fontsize=7, loc="lower right", title="method")
        else:
            ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5), title="method")
    sns.despine(fig)
    fig.tight_layout()
    return fig


@_quiet
def predictor_ranking(scores: pd.DataFrame, order: Sequence[str], score_labels: Sequence[tuple[str, str]]) -> plt.Figure:
    """One panel per score (columns) and per ``against`` (rows: the gain, its interaction): the predictors
    (rows, in ``order``, best first, the null predictors last) with each method's estimate and interval.
    The nulls are also drawn across the panel: the random ranking's interval (grey band) and expectation
    (dashed), each method's ``source_quality`` estimate (dotted, in the method's colour). A filled marker is
    a *useful* predictor (its paired difference to source quality has an interval above 0), an open one not.

    ``scores`` is the long table of :func:`mvlpt.transfer.predictor_scores.score_predictors`; ``score_labels`` the
    (score, label) pairs to draw, in panel order."""
    set_style()
    if scores.empty:
        raise MvlptError("the predictor score table is empty; run `mvlpt predict score` on a study first.")
    scores = scores if "against" in scores.columns else scores.assign(against="gain")
    methods = vocabulary.method_order(scores["method"].unique())
    pal = method_palette(methods)
    panels = [(s, lab) for s, lab in score_labels if (scores["score"] == s).any()]
    rows = [a for a in ("gain", "interaction") if (scores["against"] == a).any()]
    n = len(order)
    fig, axes = plt.subplots(
        len(rows),
        len(panels),
        figsize=(2.5 * len(panels) + 1.2, (0.32 * n * max(len(methods), 1) / 2 + 1.2) * len(rows) + 0.4),
        squeeze=False,
        sharey=True,
    )
    height = 0.8 / max(len(methods), 1)
    for r, against in enumerate(rows):
        for ax, (score, label) in zip(axes[r], panels):
            s = scores[(scores["score"] == score) & (scores["against"] == against)]
            lo = s["chance_low"].astype(float).mean() if "chance_low" in s else np.nan
            hi = s["chance_high"].astype(float).mean() if "chance_high" in s else np.nan
            if np.isfinite(lo) and np.isfinite(hi):
                ax.axvspan(lo, hi, color="0.88", zorder=0, lw=0)
            for k, m in enumerate(methods):
                sm = s[s["method"] == m].set_index("predictor").reindex(order)
                y = np.arange(n) + (k - (len(methods) - 1) / 2) * height
                est = sm["estimate"].to_numpy(float)
                err = np.vstack([est - sm["ci_low"].to_numpy(float), sm["ci_high"].to_numpy(float) - est])
                useful = sm["useful"].fillna(False).to_numpy(bool) if "useful" in sm else np.zeros(n, bool)
                ax.errorbar(
                    est,
                    y,
                    xerr=np.where(np.isfinite(err), np.abs(err), 0),
                    fmt="none",
                    ecolor=pal[m],
                    elinewidth=0.9,
                    capsize=1.5,
                )
                ax.plot(est[~useful], y[~useful], "o", ms=3.5, mfc="white", mec=pal[m], mew=0.9, label=m if r == 0 else None)
                ax.plot(est[useful], y[useful], "o", ms=3.8, color=pal[m])
                if "source_quality" in sm.index and np.isfinite(sm.loc["source_quality", "estimate"]):
                    ax.axvline(sm.loc["source_quality", "estimate"], color=pal[m], lw=0.8, ls=":", zorder=1)
            chance = s["chance"].astype(float).mean()
            if np.isfinite(chance):
                ax.axvline(chance, color="0.45", lw=0.8, ls="--", zorder=0)
            if score.endswith("spearman"):
                ax.set_xlim(-1.05, 1.05)
            else:
                ax.set_xlim(-0.05, 1.05)
            tag = " (primary)" if score == "within_target_spearman" else " (secondary)" if score == "spearman" else ""
            ax.set_title(f"{label}{tag}\nagainst the {against}", fontsize="small")
            ax.grid(axis="x", color="0.9", lw=0.6)
        axes[r][0].set_yticks(range(n), order)
        axes[r][0].set_ylim(n - 0.5, -0.5)
    axes[0][-1].legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5), title="method")
    fig.suptitle(
        "transferability predictors against the measured gain and its interaction (two-level bootstrap "
        "interval: targets, then seeds)\nfilled: useful (interval of the difference to source quality above 0); "
        "dotted: source quality; dashed + grey band: random ranking",
        y=1.0,
        fontsize="small",
    )
    sns.despine(fig)
    fig.tight_layout()
    return fig


def shots_lines(table: pd.DataFrame) -> plt.Figure:
    """Two panels against the shot count (log scale, ticks at the study's counts), one line per method:
    the mean gain over the single-task baseline (points), and the mean baseline with zero-shot CLIP (black,
    dashed: it needs no shots) and the linear probe (grey, dotted) for scale. ``table``:
    :func:`mvlpt.analysis.tables.shots_table`."""
    set_style()
    methods = vocabulary.method_order(table["method"].unique())
    pal = method_palette(methods)
    counts = sorted(int(s) for s in table["shots"].unique())
    fig, (ax_gain, ax_base) = plt.subplots(1, 2, figsize=(8.4, 3.4))
    for m in methods:
        d = table[table["method"] == m].sort_values("shots")
        label = vocabulary.METHODS[m].label if m in vocabulary.METHODS else m
        ax_gain.plot(d["shots"], 100 * d["mean_gain"], marker="o", color=pal[m], label=label)
        ax_base.plot(d["shots"], 100 * d["baseline_mean"], marker="o", color=pal[m], label=f"{label} baseline")
    per_shot = table.groupby("shots")[["zeroshot_mean", "linear_probe_mean"]].mean().sort_index()
    if per_shot["zeroshot_mean"].notna().any():
        ax_base.plot(per_shot.index, 100 * per_shot["zeroshot_mean"], color="k", ls="--", lw=1, label="zero-shot CLIP")
    if per_shot["linear_probe_mean"].notna().any():
        ax_base.plot(per_shot.index, 100 * per_shot["linear_probe_mean"], color="0.5", ls=":", marker=".", label="linear probe")
    ax_gain.axhline(0, color="0.4", lw=0.8, ls="--")
    for ax in (ax_gain, ax_base):
        ax.set_xscale("log")
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.minorticks_off()
        ax.set_xlabel("shots per class")
    ax_gain.set_ylabel("mean gain over single-task (points)")
    ax_gain.set_title("transfer gain (off-diagonal mean)")
    ax_base.set_ylabel("mean test metric over targets (%)")
    ax_base.set_title("single-task baseline")
    ax_gain.legend(frameon=False, fontsize=8)
    ax_base.legend(frameon=False, fontsize=7)
    sns.despine(fig)
    fig.tight_layout()
    return fig
