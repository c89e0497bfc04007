"""CLI verbs of the budgeted, adaptive study (docs/budget.md): ``mvlpt budget replay``.

    mvlpt budget replay --pairs results/tables/pairs.parquet --out replay.csv --figure replay.png
    mvlpt budget replay --synthetic lowrank --tasks 20 --out replay.csv --figure replay.png
        [--methods coop vpt] [--rules uncertainty improvement random] [--models effects completion]
        [--budgets 0.1 0.2 ...] [--reps 5] [--round-size N] [--symmetric] [--no-side] [--level 0.9] [--seed 0]

The replay hides the cells of a fully measured study, runs the selection and the completion at each
budget and scores the completed matrix against the full study; it trains nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mvlpt.commands.args import DefaultsHelpFormatter
from mvlpt.errors import MvlptError


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_replay(args) -> int:
    import pandas as pd

    from mvlpt import io
    from mvlpt.transfer import planted, replay

    if bool(args.pairs) == bool(args.synthetic):
        raise MvlptError("give either --pairs (a measured study's tables/pairs.parquet) or --synthetic effects|lowrank|noise.")
    reps_path = Path(args.out).with_name(Path(args.out).stem + "_reps.csv")
    outputs = [Path(args.out), reps_path] + ([Path(args.figure).with_suffix(s) for s in (".png", ".pdf")] if args.figure else [])
    io.check_distinct(outputs, [args.pairs] if args.pairs else [])
    io.check_writable(outputs)
    if args.pairs:
        pairs = replay.read_pairs(args.pairs)
        study = Path(args.pairs).parent.parent.name or str(args.pairs)
        results_dir = Path(args.pairs).parent.parent
        methods = args.methods or list(dict.fromkeys(pairs["method"]))
        side = {} if args.no_side else {m: replay.side_information(results_dir, m, pairs[pairs["method"] == m]) for m in methods}
    else:
        pairs = planted.planted_pairs(args.synthetic, args.tasks, seed=args.seed)
        study = f"synthetic-{args.synthetic}"
        methods = None
        side = {} if args.no_side else {"synthetic": planted.planted_side(args.synthetic, args.tasks, seed=args.seed)}
    for m, s in side.items():
        _say(f"{study} {m}: side information {', '.join(s) if s else 'none'}")

    def progress(method, model, rule, rep):
        _say(f"{study} {method}: {model} / {rule} / repetition {rep + 1} of {args.reps} done")

    reps = replay.replay(
        pairs,
        methods=methods,
        rules=args.rules,
        models=args.models,
        budgets=args.budgets,
        reps=args.reps,
        round_size=args.round_size,
        symmetric=args.symmetric,
        side=side,
        level=args.level,
        seed=args.seed,
        progress=progress,
    )
    reps.insert(0, "study", study)
    table = replay.summary(reps)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        cols = [
            "method",
            "model",
            "rule",
            "budget",
            "trained",
            "spearman",
            "within_target",
            "top1",
            "top3",
            "regret",
            "coverage",
            "width",
        ]
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    with io.write_together():
        with io.atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False)
        with io.atomic_path(reps_path) as tmp:
            reps.to_csv(tmp, index=False)
        if args.figure:
            from mvlpt.analysis import budget_plots, plots

            fig = budget_plots.accuracy_vs_budget(reps, level=args.level, title=f"replay of a budgeted study: {study}")
            plots.save_figure(fig, args.figure)
    return 0


def add_parser(subparsers) -> None:
    from mvlpt.commands import budgeted
    from mvlpt.study.budget import LEVEL, REPLAY_BUDGETS, REPLAY_MODELS, RULES, SYNTHETIC_KINDS

    fmt = DefaultsHelpFormatter
    p = subparsers.add_parser(
        "budget",
        help="the budgeted, adaptive study: its rounds (select, complete) and its replay on a measured one",
        description="A study that trains a share of the pairs, chosen round by round, and completes the rest of the "
        "gain matrix with intervals (docs/budget.md).",
    )
    sub = p.add_subparsers(dest="budget_verb", required=True, metavar="VERB")
    q = sub.add_parser(
        "replay",
        help="hide cells of a measured study, select and complete, score against the full study",
        formatter_class=fmt,
        description="Replay a budgeted study with no training: from a fully measured study's pair table (or a "
        "synthetic matrix of known structure), reveal the pairs each selection rule picks, round by round, "
        "complete the matrix at each budget and score it against the full study (Spearman over all cells, "
        "within-target Spearman, top-1/top-3 recall of the best source, regret, interval coverage), per method, "
        "completion model and rule, over several repetitions. Writes the summary table (--out), the "
        "per-repetition rows (<out stem>_reps.csv) and the accuracy-vs-budget figure (--figure, .png and .pdf).",
    )
    q.add_argument("--pairs", default=None, help="a measured study's tables/pairs.parquet (or .csv)")
    q.add_argument(
        "--synthetic", default=None, choices=SYNTHETIC_KINDS, help="replay a synthetic matrix of known structure instead"
    )
    q.add_argument("--tasks", type=int, default=20, help="tasks of the synthetic matrix")
    q.add_argument("--methods", nargs="+", default=None, help="methods of the pair table to replay (default: all)")
    q.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES, help="selection rules")
    q.add_argument("--models", nargs="+", default=list(REPLAY_MODELS), choices=list(REPLAY_MODELS), help="completion models")
    q.add_argument("--budgets", nargs="+", type=float, default=list(REPLAY_BUDGETS), help="shares of the pairs trained")
    q.add_argument("--reps", type=int, default=5, help="repetitions (seeds) of every trajectory")
    q.add_argument("--round-size", type=int, default=None, help="pairs per round (default: 5 %% of the pairs, at least 1)")
    q.add_argument("--symmetric", action="store_true", help="joint runs: a training is an unordered pair, both directions")
    q.add_argument("--no-side", action="store_true", help="leave out the side information (similarities, predictors, baselines)")
    q.add_argument("--level", type=float, default=LEVEL, help="level of the completed intervals")
    q.add_argument("--seed", type=int, default=0, help="first seed (repetition r uses seed + r; also the synthetic matrix's)")
    q.add_argument("--out", required=True, help="the summary table (CSV); the repetitions go to <stem>_reps.csv")
    q.add_argument("--figure", default=None, help="the accuracy-vs-budget figure (.png and .pdf)")
    q.set_defaults(func=run_replay)
    budgeted.add_verbs(sub)  # select, complete: the rounds of `snakemake budgeted`
