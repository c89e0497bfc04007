"""CLI verbs of the multitask study (docs/multitask.md): ``mvlpt multitask groups|table|figure``.

    mvlpt multitask groups --tasks A B C .. --methods coop vpt softcpt --strategies all gain similarity random \\
        --modes init joint --k 3 --seed 0 --gain results/tables/matrices/{coop,vpt}_gain.csv \\
        --similarity results/similarity/label_match.csv --measure label_match \\
        [--predictor results/predictors/{coop,vpt}/prompt_accuracy.csv --predictor-name prompt_accuracy] \\
        --out results/multitask/groups.csv
    mvlpt multitask table  --results-dir results --groups results/multitask/groups.csv \\
        --out results/tables/multitask.csv --summary-out results/tables/multitask_summary.csv \\
        [--seeds 1 2 3] [--tasks A B C ..]      (each table as CSV + parquet)
    mvlpt multitask figure --summary results/tables/multitask_summary.csv --out results/figures/multitask.png
"""

from __future__ import annotations

import sys

from mvlpt.commands.args import DefaultsHelpFormatter
from mvlpt.errors import MvlptError


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_groups(args) -> int:
    from mvlpt.study import vocabulary
    from mvlpt.transfer import grouping

    strategies = list(dict.fromkeys(args.strategies))
    for s in strategies:
        if s not in vocabulary.GROUPING_STRATEGIES:
            raise MvlptError(f"unknown grouping strategy {s!r}; choose from {', '.join(vocabulary.GROUPING_STRATEGIES)}.")
    methods = list(dict.fromkeys(args.methods))
    for m in methods:
        vocabulary.method(m)
    # read only what the asked strategies need, for the methods that offer them
    ranked = [m for m in methods if not vocabulary.method(m).multitask_only]
    gain = similarity = predicted = None
    if "gain" in strategies and ranked:
        if not args.gain:
            raise MvlptError("strategy gain needs --gain, the pairwise gain matrices (tables/matrices/{method}_gain.csv).")
        gain = grouping.read_gain_matrices(args.gain)
    if "similarity" in strategies and ranked:
        vocabulary.measure(args.measure)
        if not args.similarity:
            raise MvlptError(f"strategy similarity needs --similarity, the {args.measure} similarity table.")
        similarity = grouping.read_similarity_matrix(args.similarity, args.measure, args.tasks)
    if "predictor" in strategies and ranked:
        vocabulary.predictor(args.predictor_name)
        if not args.predictor:
            raise MvlptError(f"strategy predictor needs --predictor, the {args.predictor_name} predictor matrix file(s).")
        predicted = grouping.read_predictor_matrices(args.predictor, args.predictor_name)
    groups = grouping.choose_groups(
        args.tasks,
        methods,
        strategies,
        args.modes,
        k=args.k,
        seed=args.seed,
        gain=gain,
        similarity=similarity,
        measure=args.measure,
        predicted=predicted,
        predictor=args.predictor_name,
        sources=args.sources,
    )
    grouping.write_groups(groups, args.out)
    _say(f"{len(groups)} (method, strategy, mode, target) rows in {groups['group'].nunique()} groups -> {args.out}")
    return 0


def run_table(args) -> int:
    from mvlpt.transfer import grouping, multitask

    groups = grouping.read_groups(args.groups)
    for col in ("methods", "strategies", "modes"):
        chosen = getattr(args, col)
        if chosen:
            name = {"methods": "method", "strategies": "strategy", "modes": "mode"}[col]
            groups = groups[groups[name].isin(chosen)]
    table = multitask.collect(
        args.results_dir, groups, seeds=args.seeds, tasks=args.tasks, allow_mixed_settings=args.allow_mixed_settings
    )
    summary = multitask.summarize(
        table, n_boot=args.n_boot, seed=args.boot_seed, level=args.level, source_prompt=args.source_prompt
    )
    written = multitask.write_tables(table, summary, args.out, args.summary_out)
    _say(f"{len(table)} targets, {len(summary)} (method, mode, strategy) rows -> {', '.join(map(str, written))}")
    return 0


def run_figure(args) -> int:
    from mvlpt.analysis import plots, tables
    from mvlpt.transfer import multitask

    written = plots.save_figure(multitask.gain_figure(tables.read_table(args.summary)), args.out)
    _say("wrote " + ", ".join(map(str, written)))
    return 0


def run_average(args) -> int:
    from mvlpt.training.checkpoints import average_prompts

    prov = average_prompts(args.prompt, args.out)
    _say(f"the {prov['task']} source prompts of seeds {', '.join(map(str, prov['averaged_seeds']))} averaged -> {args.out}")
    return 0


def add_parser(subparsers) -> None:
    from mvlpt.study.settings import ANALYSIS_DEFAULTS as A, MULTITASK_DEFAULTS as D
    from mvlpt.study.vocabulary import GROUPING_STRATEGIES, MULTITASK_MODES

    fmt = DefaultsHelpFormatter
    p = subparsers.add_parser(
        "multitask",
        help="the multitask study: choose the groups, tabulate and plot its results",
        description="Multitask source prompts and joint groups (docs/multitask.md): `groups` decides each target's "
        "source group from the pairwise tables, `table` compares the multitask results with the "
        "single-task baselines, `figure` draws the gains.",
    )
    sub = p.add_subparsers(dest="multitask_verb", required=True, metavar="VERB")

    q = sub.add_parser(
        "groups",
        help="each target's group per method, strategy and mode -> groups.csv",
        formatter_class=fmt,
        description="Choose every target's sources (strategies: all other tasks; the top-k by the method's measured "
        "pairwise gain, by a similarity measure, by a transferability predictor; k random ones) and write "
        "the groups table (method, strategy, mode, target, group, tasks, sources, k). Only the files the "
        "asked strategies need are read. Unchanged inputs give a byte-identical file.",
    )
    q.add_argument("--tasks", nargs="+", required=True, help="the study's tasks, in config order (ties and output order)")
    q.add_argument(
        "--methods", nargs="+", required=True, help="methods of the multitask study (softcpt: strategy all, mode joint only)"
    )
    q.add_argument("--strategies", nargs="+", default=list(D["strategies"]), help=f"of {', '.join(GROUPING_STRATEGIES)}")
    q.add_argument("--modes", nargs="+", choices=MULTITASK_MODES, default=list(D["modes"]))
    q.add_argument("--k", type=int, default=D["k"], help="sources per group (strategies other than all)")
    q.add_argument("--seed", type=int, default=D["seed"], help="seed of strategy random")
    q.add_argument("--gain", nargs="+", help="the pairwise gain matrices of the methods, tables/matrices/{method}_gain.csv")
    q.add_argument("--similarity", help="the similarity table of --measure (results/similarity/{measure}.csv)")
    q.add_argument("--measure", default=D["similarity"], help="the similarity measure of strategy similarity")
    q.add_argument(
        "--predictor",
        nargs="+",
        help="the predictor's matrix file(s): predictors/{name}.csv, or predictors/{method}/{name}.csv per method",
    )
    q.add_argument("--predictor-name", default=D["predictor"], help="the transferability predictor of strategy predictor")
    q.add_argument("--sources", nargs="+", help="strategy fixed: every target's sources (the other tasks are the targets)")
    q.add_argument("--out", required=True, help="the groups CSV (results/multitask/groups.csv)")
    q.set_defaults(func=run_groups)

    q = sub.add_parser(
        "table",
        help="multitask results vs single-task baselines -> multitask.csv, multitask_summary.csv",
        formatter_class=fmt,
        description="Read the multitask result files of every row of the groups table and the targets' single-task "
        "baselines; write multitask.csv (per method, mode, strategy and target: seeds' mean and std, "
        "baseline, gain) and multitask_summary.csv (means over targets in points, bootstrap CI of the "
        "mean gain, the papers' reference numbers), as CSV and parquet.",
    )
    q.add_argument("--results-dir", default="results")
    q.add_argument("--groups", required=True, help="groups table of `mvlpt multitask groups`")
    q.add_argument(
        "--out", default="results/tables/multitask.csv", help="the per-target table (a .parquet is written next to it)"
    )
    q.add_argument(
        "--summary-out",
        default="results/tables/multitask_summary.csv",
        help="the summary table (a .parquet is written next to it)",
    )
    q.add_argument("--seeds", nargs="+", type=int, help="seeds (default: those of the multitask result files found)")
    q.add_argument("--tasks", nargs="+", help="target order of the tables (default: natural order)")
    q.add_argument("--methods", nargs="+", help="only these methods of the groups table")
    q.add_argument("--strategies", nargs="+", help="only these strategies")
    q.add_argument("--modes", nargs="+", help="only these modes")
    q.add_argument("--n-boot", type=int, default=A["n_boot"], help="bootstrap resamples of the CI of the mean gain")
    q.add_argument("--boot-seed", type=int, default=A["seed"], help="seed of the bootstrap resampling")
    q.add_argument("--level", type=float, default=A["level"], help="confidence level")
    q.add_argument(
        "--allow-mixed-settings",
        action="store_true",
        help="average seeds, and compare with baselines, even when their settings differ",
    )
    q.add_argument(
        "--source-prompt",
        help="how the group source prompts were made (config multitask.source_prompt; the paper's Table 1 "
        "numbers stand beside a row only for `averaged`, with the rest of its setting)",
    )
    q.set_defaults(func=run_table)

    q = sub.add_parser(
        "figure",
        help="gain over the single-task baseline per method x (mode, strategy)",
        formatter_class=fmt,
        description="Draw the summary's mean gains with their bootstrap CIs; writes <out>.png and <out>.pdf.",
    )
    q.add_argument("--summary", required=True, help="multitask_summary.csv (or .parquet) of `mvlpt multitask table`")
    q.add_argument("--out", required=True)
    q.set_defaults(func=run_figure)

    q = sub.add_parser(
        "average",
        help="the seeds' source prompts of a group averaged into one (multitask.source_prompt: averaged)",
        formatter_class=fmt,
        description="Average the source prompt files of several seeds of one group, tensor by tensor, into one prompt "
        "file that initialises the target runs of every seed (the MVLPT reference code's scripts/avg_ckpt.py; "
        "mvlpt.training.checkpoints.average_prompts).",
    )
    q.add_argument("--prompt", nargs="+", required=True, help="the seeds' prompt files (safetensors) of one source group")
    q.add_argument("--out", required=True, help="the averaged prompt file")
    q.set_defaults(func=run_average)
