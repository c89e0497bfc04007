"""The figure of a budgeted study's replay: accuracy against budget (issue 26; docs/budget.md).

One column per method, one row per score; a line per selection rule (colour) and completion model
(dash), its band the spread (one standard deviation) over the replay's repetitions. Drawn in the
study's one style (:func:`mvlpt.analysis.plots.set_style`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from mvlpt.analysis import plots
from mvlpt.errors import MvlptError

PANELS = {
    "spearman": ("Spearman (all cells)", (0.9, None)),
    "within_target": ("within-target Spearman", None),
    "top3": ("top-3 recall", (0.8, None)),
    "regret": ("regret (points)", None),
    "coverage": ("interval coverage", "level"),
}
RULE_ORDER = ("uncertainty", "improvement", "random")


@plots._quiet
def accuracy_vs_budget(reps: pd.DataFrame, *, level: float = 0.9, title: str = "", panels=tuple(PANELS)) -> plt.Figure:
    """``reps``: the per-repetition rows of :func:`mvlpt.transfer.replay.replay` (method, model, rule,
    rep, budget and the scores). The issue's targets are drawn as dotted lines (Spearman 0.9, top-3
    recall 0.8, coverage at ``level``)."""
    need = {"method", "model", "rule", "budget", *panels}
    missing = need - set(reps.columns)
    if missing:
        raise MvlptError(f"the replay table lacks the column(s) {', '.join(sorted(missing))}.")
    plots.set_style()
    df = reps.copy()
    df["budget %"] = 100 * df["budget"]
    if "regret" in df.columns:
        df["regret"] = 100 * df["regret"]
    methods = list(dict.fromkeys(df["method"]))
    rules = [r for r in RULE_ORDER if r in set(df["rule"])] + sorted(set(df["rule"]) - set(RULE_ORDER))
    models = list(dict.fromkeys(df["model"]))
    palette = dict(zip(rules, sns.color_palette("colorblind", len(rules))))
    fig, axes = plt.subplots(
        len(panels), len(methods), figsize=(2.6 * len(methods) + 1.2, 1.9 * len(panels)), sharex=True, squeeze=False
    )
    for col, method in enumerate(methods):
        sub = df[df["method"] == method]
        for row, metric in enumerate(panels):
            ax = axes[row, col]
            sns.lineplot(
                data=sub,
                x="budget %",
                y=metric,
                hue="rule",
                hue_order=rules,
                style="model",
                style_order=models,
                palette=palette,
                errorbar="sd",
                marker="o",
                markersize=3,
                ax=ax,
                legend=(row == 0 and col == len(methods) - 1),
            )
            label, target = PANELS.get(metric, (metric, None))
            line = level if target == "level" else (target[0] if target else None)
            if line is not None:
                ax.axhline(line, color="0.4", lw=0.8, ls=":")
            ax.axvline(100 / 3, color="0.8", lw=0.8, zorder=0)
            ax.set_ylabel(label if col == 0 else "")
            ax.set_xlabel("budget (% of pairs trained)" if row == len(panels) - 1 else "")
            if row == 0:
                ax.set_title(str(method))
    leg = axes[0, -1].get_legend()
    if leg is not None:
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
