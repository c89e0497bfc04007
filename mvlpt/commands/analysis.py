"""CLI verbs of the analysis: collect, embed, similarity, correlate, plot, figures.

Each verb reads files and writes files (paths on the command line), so Snakemake rules can call it:

    mvlpt collect    --results-dir results --out-dir results/tables [--methods ..] [--tasks ..] [--seeds ..] [--reference-dir results/reference]
    mvlpt embed      --task NAME --kind images|labels --out CACHE/similarity/NAME.images.npz [model/selection options]
    mvlpt similarity --measure visual_cosine --embeddings A.images.npz B.images.npz ... --out results/similarity/visual_cosine.csv
    mvlpt correlate  --pairs results/tables/pairs.parquet --similarity results/similarity/*.csv --out results/tables/correlations.csv
    mvlpt plot gain-heatmap|similarity-heatmap|scatter|summary ... --out results/figures/NAME.png   (writes .png and .pdf)
    mvlpt figures    --results-dir results [--out-dir results/figures]   (every figure from the results that exist)
"""

from __future__ import annotations

import sys

from mvlpt.commands.args import DefaultsHelpFormatter, add_model_args, pretrained_arg
from mvlpt.errors import MvlptError


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_level(level: float) -> None:
    """A confidence level is a number strictly between 0 and 1 (the rule: :func:`mvlpt.study.domains.check_level`)."""
    from mvlpt.study.domains import check_level as check

    check(level)


def _int_list(values):
    try:
        return [int(v) for v in values] if values else None
    except ValueError:
        raise MvlptError(f"seeds must be integers, got {' '.join(values)}.") from None


# --------------------------------------------------------------------------------------------------
# collect
# --------------------------------------------------------------------------------------------------
def run_collect(args) -> int:
    from mvlpt.analysis import tables

    seeds = _int_list(args.seeds)
    check_level(args.level)
    runs, replicates = tables.load_study(
        args.results_dir, args.methods, args.tasks, seeds, allow_mixed_settings=args.allow_mixed_settings
    )
    if runs.empty:
        raise MvlptError(f"no result files found under {args.results_dir}; run the study first or check --results-dir.")
    if args.strict or (args.methods and args.tasks and seeds):
        # --strict: the selection is the complete study: every method x source x target x seed of the
        # given selection, and where an option is not given, of what is on disk (issue 24, class 5)
        methods, tasks, want_seeds, told = _strict_selection(runs, args.methods, args.tasks, seeds)
        missing = tables.expected_missing(runs, methods, tasks, want_seeds)
        n = len(methods) * len(tasks) ** 2 * len(want_seeds)
        if missing:
            msg = f"{len(missing)} of {n} expected results are missing, e.g. {missing[0]}"
            if args.strict:
                raise MvlptError(msg + f" ({told}); finish those runs or drop --strict.")
            _say("warning: " + msg)
        elif args.strict:
            _say(f"--strict: all {n} results present ({told})")
    without = len(runs) - len(replicates)
    if without:
        _say(
            f"note: {without} of {len(runs)} results carry no test-set replicates (written by an older mvlpt): the "
            f"intervals of their cells hold the seed variation only (column `interval`)"
        )
    reference, reference_reps = _collect_reference(args, runs, seeds, replicates)
    from mvlpt.io import write_together

    with write_together():  # every table or none: a collect that fails (a full disk) leaves no runs.csv behind
        written = tables.write_collected(
            runs,
            args.out_dir,
            args.methods,
            args.tasks,
            replicates,
            level=args.level,
            fdr=args.fdr,
            reference=reference,
            reference_replicates=reference_reps,
        )
    _say(f"collected {len(runs)} results into {len(written)} files under {args.out_dir}")
    return 0


def _strict_selection(runs, methods, tasks, seeds):
    """The study ``--strict`` checks: the given methods, tasks and seeds, and for each one not given,
    those of the result files found (a task with no result file at all is seen only through --tasks);
    and a clause saying which is which."""
    from mvlpt.analysis import tables

    found_tasks = set(runs["target"]) | {s for s in runs["source"] if "+" not in s}
    out = (
        list(methods) if methods else sorted(runs["method"].unique()),
        list(tasks) if tasks else tables.natural_sorted(found_tasks),
        list(seeds) if seeds else sorted(int(k) for k in runs["seed"].unique()),
    )
    parts = [
        f"{len(v)} {name} {'given' if given else 'found on disk'}"
        for name, v, given in zip(("methods", "tasks", "seeds"), out, (methods, tasks, seeds))
    ]
    return (*out, "checked every source x target pair of " + ", ".join(parts))


def _collect_reference(args, runs, seeds, replicates):
    """The reference rows of the selected tasks and seeds (mvlpt.analysis.reference), checked against the runs'
    setting, and their test-set replicates; an empty table, said in the log, when there are none (an older study)."""
    from pathlib import Path

    from mvlpt.analysis import reference, tables
    from mvlpt.study import results

    ref_dir = Path(args.reference_dir) if args.reference_dir else reference.reference_dir(args.results_dir)
    records = reference.read_references(ref_dir, args.tasks, seeds)
    ref_rows, reps = reference.reference_table(records), reference.reference_replicates(records)
    results.refuse_mixed_settings(reference.settings_problems(runs, ref_rows), allow_mixed=args.allow_mixed_settings)
    if ref_rows.empty:
        _say(
            f"note: no reference results under {ref_dir}: the zeroshot and linear_probe columns are NaN and "
            f"baseline_below_zeroshot is NA (make them with `mvlpt reference`)"
        )
    else:
        table = reference.baselines_table(
            tables.pair_table(runs), ref_rows, runs=runs, replicates=replicates, reference_reps=reps, level=args.level
        )
        _say(f"reference rows: {len(ref_rows)} under {ref_dir}; " + reference.flagged_sentence(table))
    return ref_rows, reps


# --------------------------------------------------------------------------------------------------
# embed
# --------------------------------------------------------------------------------------------------
def run_embed(args) -> int:
    from mvlpt.analysis import similarity
    from mvlpt.models.clip import load_clip
    from mvlpt.running.devices import describe_lease, lease_device
    from mvlpt.tasks import get_task

    task = get_task(args.task)
    with lease_device(args.device, label=f"embed {args.task} {args.kind}") as lease:
        _say(f"device: {describe_lease(lease)}")
        clip = load_clip(
            args.model,
            pretrained_arg(args.model, args.pretrained),
            cache_dir=args.weights_cache_dir,
            device=lease.device,
            init_seed=args.init_seed,
        )
        if args.kind == "images":
            sel = similarity.ImageSelection(
                fewshot_seeds=tuple(_int_list(args.fewshot_seeds) or ()),
                shots=args.shots,
                sample_size=args.sample_size,
                sample_seed=args.sample_seed,
                split_files=tuple(args.split_files or ()),
            )
            emb = similarity.encode_task_images(clip, task, sel, data_dir=args.data_dir, batch_size=args.batch_size)
        else:
            emb = similarity.encode_task_labels(clip, task, args.templates)
    similarity.save_embeddings(emb, args.out)
    _say(f"{args.task}: {len(emb.names)} {args.kind} embeddings of dim {emb.features.shape[1]} -> {args.out}")
    return 0


# --------------------------------------------------------------------------------------------------
# similarity
# --------------------------------------------------------------------------------------------------
def run_similarity(args) -> int:
    from mvlpt.analysis import similarity
    from mvlpt.analysis.tables import write_table

    embs = [similarity.load_embeddings(p) for p in args.embeddings]
    if args.tasks:
        by = {e.task: e for e in embs}
        missing = [t for t in args.tasks if t not in by]
        if missing:
            raise MvlptError(f"no embeddings given for task(s) {', '.join(missing)}; pass their .npz files.")
        embs = [by[t] for t in args.tasks]
    m = similarity.similarity_matrix(embs, args.measure, shrinkage=args.shrinkage, ridge=args.ridge)
    written = write_table(similarity.matrix_to_long(m, args.measure), args.out)
    _say(f"{args.measure} over {len(embs)} tasks -> {', '.join(map(str, written))}")
    return 0


# --------------------------------------------------------------------------------------------------
# correlate
# --------------------------------------------------------------------------------------------------
def run_correlate(args) -> int:
    from mvlpt.analysis import stats, tables

    check_level(args.level)
    pairs = tables.read_table(args.pairs)
    runs = tables.read_table(args.runs) if args.runs else None
    sims = tables.read_similarities(args.similarity)
    model = None if args.model_measures == ["none"] else args.model_measures
    corr = stats.correlate(
        pairs,
        sims,
        measures=args.measures,
        model_measures=model,
        methods=args.methods,
        y=args.y,
        n_boot=args.n_boot,
        n_perm=args.n_perm,
        seed=args.seed,
        level=args.level,
        runs=runs,
    )
    corr = tables.with_shots(corr, tables.study_shots(runs if runs is not None else pairs))  # the study's shot count
    written = tables.write_table(corr, args.out)
    _say(f"{len(corr)} correlation rows -> {', '.join(map(str, written))}")
    return 0


# --------------------------------------------------------------------------------------------------
# power
# --------------------------------------------------------------------------------------------------
def run_power(args) -> int:
    from mvlpt.analysis import gainstats, tables
    from mvlpt.study import layout

    check_level(args.level)
    if not 0 < args.power < 1:
        raise MvlptError(f"--power must be a probability strictly between 0 and 1, got {args.power}.")
    if any(not (g > 0) for g in args.gains):
        raise MvlptError(f"--gains must be positive fractions (0.02 = 2 points), got {' '.join(map(str, args.gains))}.")
    runs = None
    if args.tables:
        runs = tables.read_table(layout.TABLE.path(args.tables, "runs", "parquet"))
        noises = gainstats.noise_from(tables.read_table(layout.TABLE.path(args.tables, "pairs", "parquet")), runs)
    else:
        noises = gainstats.SHIPPED_NOISE
    if not noises:
        raise MvlptError("no noise figures: the study's cells have no standard errors (one seed and no test replicates?).")
    seeds = (
        args.seeds
        if args.seeds is not None
        else (int(runs.groupby(["method", "source", "target"])["seed"].nunique().median()) if runs is not None else 3)
    )
    n_test = (
        args.n_test
        if args.n_test is not None
        else (float(runs.groupby("target")["n_test"].max().median()) if runs is not None else 1000.0)
    )
    if seeds < 1 or n_test < 1:
        raise MvlptError(f"--seeds and --n-test must be >= 1, got {seeds} and {n_test}.")
    table = gainstats.power_table(noises, seeds, n_test, gains=tuple(args.gains), alpha=1 - args.level, power=args.power)
    for r in table.itertuples(index=False):
        _say(
            f"{r.method}: with {seeds} seeds and {n_test:.0f} test images the smallest gain detected with power "
            f"{args.power:g} is {100 * r.min_detectable_gain:.1f} points ({100 * r.min_detectable_gain_any_seeds:.1f} "
            f"with unlimited seeds: the test set's error)"
        )
    if runs is not None:  # a study's noise: its shot count
        table = tables.with_shots(table, tables.study_shots(runs))
    if args.out:
        written = tables.write_table(table, args.out)
        _say(f"-> {', '.join(map(str, written))}")
    else:
        print(table.to_string(index=False))
    return 0


# --------------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------------
def run_plot_gain(args) -> int:
    from mvlpt.analysis import figures, plots, tables

    if args.matrix:
        m = tables.read_matrix(args.matrix)
    elif args.pairs:
        m = tables.matrix(tables.read_table(args.pairs), args.method, args.stat, args.tasks)
    else:
        raise MvlptError("give --matrix (a matrix table) or --pairs (the pairs table) to plot.")
    check_level(args.level)
    q = tables.read_matrix(args.q_matrix) if args.q_matrix else None
    if q is None and args.pairs and f"{args.stat}_q" in tables.read_table(args.pairs).columns:
        q = tables.matrix(tables.read_table(args.pairs), args.method, f"{args.stat}_q", args.tasks)
    reference = tables.read_table(args.reference) if args.reference else None  # the baselines table of `mvlpt collect`
    fig = figures.gain_figure(
        m, args.method, stat=args.stat, tasks=args.tasks, cluster=args.cluster, q=q, level=args.level, reference=reference
    )
    _say("wrote " + ", ".join(map(str, plots.save_figure(fig, args.out))))
    return 0


def run_plot_similarity(args) -> int:
    from mvlpt.analysis import figures, plots, tables

    sims = tables.read_similarities([args.similarity])
    measure = args.measure or (sims["measure"].iloc[0] if sims["measure"].nunique() == 1 else None)
    fig = figures.similarity_figure(sims, measure, tasks=args.tasks, cluster=args.cluster)
    _say("wrote " + ", ".join(map(str, plots.save_figure(fig, args.out))))
    return 0


def run_plot_scatter(args) -> int:
    from mvlpt.analysis import figures, plots, tables

    fig = figures.scatter_figure(
        tables.read_table(args.pairs),
        tables.read_similarities(args.similarity),
        args.method,
        measures=args.measures,
        y=args.y,
        n_boot=args.n_boot,
        seed=args.seed,
    )
    _say("wrote " + ", ".join(map(str, plots.save_figure(fig, args.out))))
    return 0


def run_plot_summary(args) -> int:
    from mvlpt.analysis import figures, plots, tables

    check_level(args.level)
    corr = tables.read_table(args.correlations) if args.correlations else None
    fig = figures.summary_figure(tables.read_table(args.pairs), corr, analysis=args.analysis, level=args.level)
    _say("wrote " + ", ".join(map(str, plots.save_figure(fig, args.out))))
    return 0


# --------------------------------------------------------------------------------------------------
# figures: everything from what exists
# --------------------------------------------------------------------------------------------------
def run_figures(args) -> int:
    from mvlpt.analysis.figures import make_all_figures
    from mvlpt.io import atomic_path

    check_level(args.level)
    model = None if args.model_measures == ["none"] else args.model_measures
    written = make_all_figures(
        args.results_dir,
        args.out_dir,
        similarity_dir=args.similarity_dir,
        methods=args.methods,
        tasks=args.tasks,
        seeds=_int_list(args.seeds),
        cluster=args.cluster,
        n_boot=args.n_boot,
        n_perm=args.n_perm,
        seed=args.seed,
        level=args.level,
        model_measures=model,
        allow_mixed_settings=args.allow_mixed_settings,
        fdr=args.fdr,
    )
    for p in written:
        _say(f"wrote {p}")
    if args.manifest:
        with atomic_path(args.manifest) as tmp:
            tmp.write_text("".join(f"{p}\n" for p in written))
    _say(f"{len(written)} figure files written")
    return 0


# --------------------------------------------------------------------------------------------------
# argparse
# --------------------------------------------------------------------------------------------------
def _selection_args(p) -> None:
    p.add_argument("--methods", nargs="+", help="methods to include (default: every method found)")
    p.add_argument("--tasks", nargs="+", help="tasks to include, in this order (default: every task found, sorted)")
    p.add_argument("--seeds", nargs="+", help="seeds to include (default: every seed found)")


def _resampling_args(p) -> None:
    from mvlpt.study.settings import ANALYSIS_DEFAULTS as D

    p.add_argument(
        "--model-measures", nargs="+", default=list(D["model_measures"]), help="predictors of the linear model ('none': no model)"
    )
    p.add_argument("--n-boot", type=int, default=D["n_boot"], help="bootstrap resamples of every confidence interval")
    p.add_argument("--n-perm", type=int, default=D["n_perm"], help="permutations of every permutation p-value")
    p.add_argument("--seed", type=int, default=D["seed"], help="seed of the resampling")
    p.add_argument("--level", type=float, default=D["level"], help="confidence level")


def _mixed_settings_arg(p) -> None:
    p.add_argument(
        "--allow-mixed-settings",
        action="store_true",
        help="average the seeds of a cell, and take gains over baselines, even when their results were made "
        "with different settings (shots, epochs, model, ...); by default that is an error",
    )


def add_parser(subparsers) -> None:
    from mvlpt.study.settings import ANALYSIS_DEFAULTS as D, SIMILARITY_DEFAULTS as SIM, choices
    from mvlpt.study.vocabulary import MATRIX_STATS, MEASURES, SHRINKAGES

    fmt = DefaultsHelpFormatter

    p = subparsers.add_parser(
        "collect",
        help="tables of the study from the result JSON files",
        formatter_class=fmt,
        description="Read results/{method}/{source}__{target}/seed{seed}.json and write, as CSV and parquet: runs "
        "(tidy), pairs (mean/std over seeds, gain, relative gain), best_source, source_gain, "
        "target_gain, gain_summary, decomposition, and matrices/{method}_{stat} (source rows x target columns). "
        "Every off-diagonal cell gets an interval (seeds and the test set's sampling error), a p-value "
        "and an FDR q-value, and its interaction (what is left after source and target effects). "
        "With the reference rows of `mvlpt reference` also reference and baselines (zero-shot, linear "
        "probe, baseline_below_zeroshot), whose columns pairs gets too. "
        "Every result file is validated; the seeds of a cell are averaged, and a gain taken over the "
        "baseline, only when their results share one setting (mode, shots, metric, epochs, model, "
        "weights, method options).",
    )
    p.add_argument("--results-dir", default="results", help="folder holding the result files")
    p.add_argument("--out-dir", default="results/tables", help="folder for the tables")
    _selection_args(p)
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail unless the selection is the complete study: every method x source x target x seed of "
        "--methods/--tasks/--seeds, each not given taken from the result files found",
    )
    p.add_argument(
        "--reference-dir",
        default=None,
        help="the reference rows (`mvlpt reference`: zero-shot, linear probe) for the tables reference, "
        "baselines and the pairs' columns zeroshot, linear_probe, baseline_below_zeroshot "
        "(default: <results-dir>/reference; none there: those columns are NaN)",
    )
    p.add_argument(
        "--level",
        type=float,
        default=D["level"],
        help="confidence level of every cell's interval; a gain is significant where its q-value < 1 - level",
    )
    p.add_argument(
        "--fdr",
        choices=choices("analysis", "fdr"),
        default=D["fdr"],
        help="multiple-comparison control over a method's cells: Benjamini-Hochberg or -Yekutieli",
    )
    _mixed_settings_arg(p)
    p.set_defaults(func=run_collect)

    p = subparsers.add_parser(
        "embed",
        help="encode one task's images or class names with the frozen CLIP (for `similarity`)",
        formatter_class=fmt,
        description="Encode the images (few-shot train ids of --fewshot-seeds plus --sample-size random train "
        "images) or the class names (in --templates) of one task and write them to an .npz file.",
    )
    p.add_argument("--task", required=True)
    p.add_argument("--kind", choices=("images", "labels"), required=True)
    p.add_argument("--out", required=True, help=".npz file to write")
    add_model_args(p)
    p.add_argument("--weights-cache-dir", default=None, help="Hugging Face cache folder for the weights")
    p.add_argument("--fewshot-seeds", nargs="*", default=["1"], help="few-shot splits whose train images are used")
    p.add_argument("--shots", type=int, default=5, help="shots of those few-shot splits")
    p.add_argument("--split-files", nargs="*", help="few-shot split files to use instead of recomputing the splits")
    p.add_argument("--sample-size", type=int, default=SIM["sample_size"], help="extra random train images (0: none)")
    p.add_argument("--sample-seed", type=int, default=SIM["sample_seed"])
    p.add_argument(
        "--templates",
        default=SIM["templates"],
        help="'default' (\"a photo of a {}.\"), 'task' (the task's templates, averaged) or a template with {}",
    )
    p.add_argument("--batch-size", type=int, default=SIM["batch_size"])
    p.set_defaults(func=run_embed)

    p = subparsers.add_parser(
        "similarity",
        help="one task-similarity measure between tasks, from their embeddings",
        formatter_class=fmt,
        description=f"Compute one measure ({', '.join(m.name + (' [a distance]' if m.distance else '') for m in MEASURES.values())}) "
        "for every ordered pair of the given tasks and write a long table task_a, task_b, measure, "
        "value as CSV and parquet.",
    )
    p.add_argument("--measure", choices=list(MEASURES), required=True)
    p.add_argument("--embeddings", nargs="+", required=True, help=".npz files from `mvlpt embed` (one per task)")
    p.add_argument("--tasks", nargs="+", help="task order (default: the order of --embeddings)")
    p.add_argument("--out", required=True, help="CSV path; a .parquet is written next to it")
    p.add_argument("--shrinkage", choices=SHRINKAGES, default=SIM["shrinkage"], help="covariance estimate for visual_frechet")
    p.add_argument(
        "--ridge", type=float, default=SIM["ridge"], help="ridge, as a fraction of the mean variance (shrinkage=ridge)"
    )
    p.set_defaults(func=run_similarity)

    p = subparsers.add_parser(
        "correlate",
        help="correlations of transfer gain with task similarity",
        formatter_class=fmt,
        description="Per method over the off-diagonal pairs: Pearson and Spearman with p-values and bootstrap CIs, "
        "within-target Spearman (permutation p-value), linear model of gain on two similarities "
        "(R^2, coefficients). Distances are negated. One long table as CSV and parquet.",
    )
    p.add_argument("--pairs", required=True, help="pairs table from `mvlpt collect` (csv or parquet)")
    p.add_argument(
        "--runs",
        help="runs table from `mvlpt collect`: the within-target CIs then come from the two-level "
        "bootstrap (targets, then seeds)",
    )
    p.add_argument("--similarity", nargs="+", required=True, help="similarity tables from `mvlpt similarity`")
    p.add_argument("--out", required=True, help="CSV path; a .parquet is written next to it")
    p.add_argument("--methods", nargs="+")
    p.add_argument("--measures", nargs="+", help="measures to correlate (default: all in the tables)")
    p.add_argument("--y", choices=("gain", "gain_rel"), default="gain")
    _resampling_args(p)
    p.set_defaults(func=run_correlate)

    p = subparsers.add_parser(
        "plot", help="one figure (PNG and PDF)", description="Draw one figure; writes <out>.png and <out>.pdf."
    )
    sub = p.add_subparsers(dest="figure", required=True, metavar="FIGURE")
    q = sub.add_parser("gain-heatmap", help="source x target gain of one method", formatter_class=fmt)
    q.add_argument("--matrix", help="matrix table from `mvlpt collect` (matrices/{method}_gain.csv)")
    q.add_argument("--pairs", help="or the pairs table")
    q.add_argument("--method", required=True)
    q.add_argument("--stat", default="gain", choices=MATRIX_STATS)
    q.add_argument(
        "--q-matrix",
        help="the matching q-value matrix (matrices/{method}_{stat}_q.csv): frames the cells whose q-value is below 1 - level",
    )
    q.add_argument("--level", type=float, default=D["level"], help="confidence level (cells framed where q < 1 - level)")
    q.add_argument("--tasks", nargs="+", help="task order")
    q.add_argument("--cluster", action="store_true", help="order tasks by hierarchical clustering")
    q.add_argument(
        "--reference",
        help="the baselines table from `mvlpt collect` (tables/baselines.csv): adds the strip "
        "of baseline, zero-shot and linear probe per target",
    )
    q.add_argument("--out", required=True)
    q.set_defaults(func=run_plot_gain)
    q = sub.add_parser("similarity-heatmap", help="task x task similarity", formatter_class=fmt)
    q.add_argument("--similarity", required=True, help="similarity table")
    q.add_argument("--measure", help="measure (default: the table's only one)")
    q.add_argument("--tasks", nargs="+", help="task order")
    q.add_argument("--cluster", action="store_true")
    q.add_argument("--out", required=True)
    q.set_defaults(func=run_plot_similarity)
    q = sub.add_parser("scatter", help="gain vs each similarity for one method", formatter_class=fmt)
    q.add_argument("--pairs", required=True)
    q.add_argument("--similarity", nargs="+", required=True)
    q.add_argument("--method", required=True)
    q.add_argument("--measures", nargs="+")
    q.add_argument("--y", choices=("gain", "gain_rel"), default="gain")
    q.add_argument("--n-boot", type=int, default=D["n_boot"], help="bootstrap resamples of the fit's band")
    q.add_argument("--seed", type=int, default=D["seed"], help="seed of the resampling")
    q.add_argument("--out", required=True)
    q.set_defaults(func=run_plot_scatter)
    q = sub.add_parser("summary", help="methods compared: gains, positive transfers, correlations", formatter_class=fmt)
    q.add_argument("--pairs", required=True)
    q.add_argument("--correlations", help="correlation table (adds the correlation panel)")
    q.add_argument("--analysis", default="within_target_spearman", help="which correlation to show")
    q.add_argument("--level", type=float, default=D["level"], help="confidence level (gains count where q < 1 - level)")
    q.add_argument("--out", required=True)
    q.set_defaults(func=run_plot_summary)

    p = subparsers.add_parser(
        "power",
        help="the smallest gain a study resolves, and the seeds a gain needs",
        formatter_class=fmt,
        description="From a collected study's tables (--tables, its noise per method) or, without them, the noise "
        "mvlpt measured on its designed world: the smallest true gain a cell detects (two-sided t test at "
        "1 - level, the given power) with --seeds seeds and --n-test test images, the limit with unlimited "
        "seeds (the test set's error, which seeds never average out), and the seeds each of --gains needs.",
    )
    p.add_argument("--tables", help="tables folder of `mvlpt collect` (pairs and runs)")
    p.add_argument("--seeds", type=int, help="seeds per cell (default: the study's)")
    p.add_argument("--n-test", type=float, help="test images per target (default: the study's median)")
    p.add_argument("--gains", type=float, nargs="+", default=[0.01, 0.02, 0.05], help="gains (fractions) to plan for")
    p.add_argument("--level", type=float, default=D["level"], help="confidence level (the test's level is 1 - level)")
    p.add_argument("--power", type=float, default=0.8, help="probability of detecting the gain")
    p.add_argument("--out", help="CSV path (a .parquet is written next to it); default: print the table")
    p.set_defaults(func=run_power)

    p = subparsers.add_parser(
        "figures",
        help="every figure from the results that exist now",
        formatter_class=fmt,
        description="Regenerate every figure (gain heatmaps, similarity heatmaps, scatters, summary) from the result "
        "files under --results-dir and the similarity tables under --similarity-dir, without "
        "training or encoding anything.",
    )
    p.add_argument("--results-dir", default="results")
    p.add_argument("--out-dir", default=None, help="default: <results-dir>/figures")
    p.add_argument("--similarity-dir", default=None, help="default: <results-dir>/similarity")
    _selection_args(p)
    p.add_argument("--cluster", action="store_true")
    _resampling_args(p)
    p.add_argument(
        "--fdr", choices=choices("analysis", "fdr"), default=D["fdr"], help="multiple-comparison control over a method's cells"
    )
    _mixed_settings_arg(p)
    p.add_argument("--manifest", help="also write the list of figure files here")
    p.set_defaults(func=run_figures)
