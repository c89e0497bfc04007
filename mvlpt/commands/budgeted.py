"""CLI verbs of the budgeted study's workflow (`snakemake budgeted`, docs/budget.md): ``mvlpt budget select|complete``.

    mvlpt budget select --results-dir results --method coop --tasks A B C .. --seeds 1 2 --mode joint \\
        --round 2 --k 19 --earlier results/budget/coop/round0.csv results/budget/coop/round1.csv \\
        --rule uncertainty --seed 0 --level 0.9 --out results/budget/coop/round2.csv
    mvlpt budget complete --results-dir results --method coop --tasks A B C .. --seeds 1 2 --mode joint \\
        --rounds results/budget/coop/round{0,1,2}.csv --sizes 19 19 7 --level 0.9 --seed 0 \\
        --out-dir results/budget

``select`` is the checkpoint of one round: it reads the result files of the pairs the earlier rounds
chose (and the baselines), completes the gain matrix and writes the next round's pairs, ranked.
``complete`` writes the budgeted study's outputs: the completed matrix with intervals, the best source
per target with its probability, the completion's progress by round, and their figures.
"""

from __future__ import annotations

import sys

from mvlpt.commands.args import DefaultsHelpFormatter


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_select(args) -> int:
    from mvlpt.study import budget
    from mvlpt.transfer import budget_rounds

    pairs = budget_rounds.select_round(
        args.results_dir,
        args.method,
        args.tasks,
        args.seeds,
        args.round,
        args.k,
        args.earlier or [],
        symmetric=args.mode == "joint",
        rule=args.rule,
        seed=args.seed,
        level=args.level,
        side=budget_rounds.parse_side(args.side or [budget.BASELINE]),
    )
    budget.write_round(pairs, args.round, args.out)
    _say(
        f"{args.method} round {args.round}: {len(pairs)} pair(s) ({args.rule if args.round else 'initial design'}) -> {args.out}"
    )
    return 0


def run_complete(args) -> int:
    from mvlpt.study import budget
    from mvlpt.transfer import budget_rounds

    out = budget_rounds.complete_rounds(
        args.results_dir,
        args.method,
        args.tasks,
        args.seeds,
        args.rounds,
        args.sizes,
        symmetric=args.mode == "joint",
        level=args.level,
        seed=args.seed,
        draws=args.draws,
        certain=args.certain,
        side=budget_rounds.parse_side(args.side or [budget.BASELINE]),
    )
    written = budget_rounds.write_outputs(out, args.out_dir, args.method, args.tasks, args.level, args.certain)
    last = out["progress"].iloc[-1]
    _say(
        f"{args.method}: {int(last['pairs'])} pairs in {len(out['progress'])} round(s); mean interval width "
        f"{100 * last['mean_width']:.1f} points; best source certain for {100 * last['certain']:.0f} % of targets -> "
        + ", ".join(map(str, written))
    )
    return 0


def _common(q) -> None:
    from mvlpt.study.settings import DEFAULTS

    q.add_argument("--results-dir", default="results", help="the study's results folder (its result files)")
    q.add_argument("--method", required=True, help="the prompt method whose gain matrix is completed")
    q.add_argument("--tasks", nargs="+", required=True, help="the study's tasks, in config order")
    q.add_argument("--seeds", nargs="+", type=int, required=True, help="the study's seeds (a cell's gain: their mean)")
    q.add_argument(
        "--mode",
        choices=("joint", "sequential", "zero_epoch"),
        default=DEFAULTS["mode"],
        help="the study's mode: joint pairs are unordered and measure both directions",
    )
    q.add_argument("--level", type=float, default=0.9, help="level of the completed cells' intervals")
    q.add_argument("--seed", type=int, default=0, help="seed of the initial design, the random rule and the completion")
    q.add_argument(
        "--side",
        action="append",
        metavar="NAME[=FILE]",
        help="side information of the completion, repeatable: baseline (the baselines), MEASURE=FILE (a similarity "
        "table), PREDICTOR=FILE (a predictor matrix) (default: baseline)",
    )


def add_verbs(sub) -> None:
    """``select`` and ``complete``, the rounds' verbs, under ``mvlpt budget`` (:mod:`mvlpt.commands.budget`)."""
    from mvlpt.study.settings import BUDGET_DEFAULTS as B

    fmt = DefaultsHelpFormatter
    q = sub.add_parser(
        "select",
        help="one round's pairs, ranked -> round{r}.csv",
        formatter_class=fmt,
        description="Round 0: the initial design. A later round: read the results of the pairs the earlier rounds "
        "chose (every pair of their files) and the baselines, complete the gain matrix and choose the next "
        "--k pairs by --rule. Writes round, rank, source, target (joint: source before target in --tasks' order).",
    )
    _common(q)
    q.add_argument("--round", type=int, required=True, help="the round to choose (0: the initial design)")
    q.add_argument("--k", type=int, required=True, help="pairs to list (fewer when fewer are left untrained)")
    q.add_argument("--earlier", nargs="*", help="the files of rounds 0 .. round-1, in order")
    q.add_argument("--rule", default=B["rule"], help="selection rule of rounds after 0 (mvlpt.transfer.selection.RULES)")
    q.add_argument("--out", required=True, help="the round's file (results/budget/{method}/round{r}.csv)")
    q.set_defaults(func=run_select)

    q = sub.add_parser(
        "complete",
        help="completed matrix, best source per target, progress by round -> tables and figures",
        formatter_class=fmt,
        description="Complete the gain matrix after every round (each training the first --sizes of its file) and "
        "write, under --out-dir/{method}/, completed.csv (every off-diagonal cell: gain, sd, lo, hi, measured, "
        "round), best_source.csv (per target: best source, its probability of being the best, top 3), "
        "progress.csv (per round: pairs, interval width, share of targets whose best source is certain) as "
        "CSV and parquet, and figures/completed and figures/progress as PNG and PDF.",
    )
    _common(q)
    q.add_argument("--rounds", nargs="+", required=True, help="the round files, round 0 first")
    q.add_argument("--sizes", nargs="+", type=int, required=True, help="pairs each round trained (the first of its file)")
    q.add_argument("--draws", type=int, default=2000, help="draws of the probability that a source is a target's best")
    q.add_argument("--certain", type=float, default=0.9, help="probability at which a best source counts as certain")
    q.add_argument("--out-dir", default="results/budget", help="the budget folder (results/budget)")
    q.set_defaults(func=run_complete)
