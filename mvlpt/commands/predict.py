"""CLI verbs of the transferability predictors (docs/predictors.md): ``mvlpt predict embed|compute|score|plot``.

mvlpt predict embed   --task NAME --split-files S1.json S2.json --out CACHE/similarity/NAME.fewshot.npz [model options]
mvlpt predict compute --predictor leep --fewshot A.fewshot.npz .. --labels A.labels.npz .. --tasks A B .. --out results/predictors/leep.csv
mvlpt predict compute --predictor visual_cosine --images A.images.npz .. --tasks A B .. --out results/predictors/visual_cosine.csv
mvlpt predict prompts --method coop --tasks A B .. --prompts PROMPTS/coop/*/seed*.safetensors --split-files SPLITS/*/shots10_seed*.json --out-dir results/predictors/coop [--predictors ..] [model options]
mvlpt predict score   --runs results/tables/runs.parquet --predictors results/predictors/*.parquet --out results/tables/predictors.csv
mvlpt predict plot    --scores results/tables/predictors.parquet --out results/figures/predictors.png   (writes .png and .pdf)
"""

from __future__ import annotations

import sys
from pathlib import Path

from mvlpt.commands.args import DefaultsHelpFormatter, add_model_args, check_data_dir, pretrained_arg
from mvlpt.errors import MvlptError


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_embed(args) -> int:
    from mvlpt.models.clip import load_clip
    from mvlpt.running.devices import describe_lease, lease_device
    from mvlpt.tasks import get_task
    from mvlpt.transfer import fewshot_features

    task = get_task(args.task)
    check_data_dir(args.data_dir)
    with lease_device(args.device, label=f"embed {args.task} few-shot") as lease:
        _say(f"device: {describe_lease(lease)}")
        clip = load_clip(args.model, pretrained_arg(args.model, args.pretrained), device=lease.device, init_seed=args.init_seed)
        fs = fewshot_features.encode_fewshot(clip, task, args.split_files, data_dir=args.data_dir, batch_size=args.batch_size)
    fewshot_features.save_fewshot(fs, args.out)
    _say(f"{args.task}: {len(fs.ids)} labelled few-shot images (seeds {sorted(set(fs.seeds.tolist()))}) -> {args.out}")
    return 0


def run_compute(args) -> int:
    from mvlpt.analysis.similarity import load_embeddings
    from mvlpt.study import vocabulary
    from mvlpt.transfer import fewshot_features, predictors

    pred = vocabulary.predictor(args.predictor)
    if pred.family == "prompt":
        raise MvlptError(f"predictor {pred.name} is computed from a method's trained prompts; use `mvlpt predict prompts`.")
    missing = [k for k in pred.embedding_kinds if not getattr(args, k)]
    if missing:
        raise MvlptError(
            f"predictor {pred.name} is computed from {' and '.join(f'--{k}' for k in pred.embedding_kinds)} "
            f"files; give {' and '.join(f'--{k}' for k in missing)}."
        )
    if pred.family == "zeroshot":
        m, seconds = predictors.predictor_matrix(
            pred.name,
            fewshot=[fewshot_features.load_fewshot(p) for p in args.fewshot],
            labels=[load_embeddings(p) for p in args.labels],
            tasks=args.tasks,
        )
    else:
        m, seconds = predictors.predictor_matrix(
            pred.name,
            embeddings=[load_embeddings(p) for p in getattr(args, pred.reads)],
            tasks=args.tasks,
            shrinkage=args.shrinkage,
            ridge=args.ridge,
        )
    written = predictors.write_predictor(m, pred.name, seconds, args.out)
    _say(f"{pred.name} over {len(m)} tasks in {seconds:.3f} s -> {', '.join(map(str, written))}")
    return 0


def run_prompts(args) -> int:
    from mvlpt.io import write_together
    from mvlpt.models.clip import load_clip
    from mvlpt.running.devices import describe_lease, lease_device
    from mvlpt.study import layout, vocabulary
    from mvlpt.tasks.fewshot import read_split
    from mvlpt.training.checkpoints import read_prompt_meta
    from mvlpt.transfer import predictors, prompt_views

    names = args.predictors or [n for n, p in vocabulary.PREDICTORS.items() if p.family == "prompt"]
    for n in names:
        if vocabulary.predictor(n).family != "prompt":
            raise MvlptError(f"predictor {n} is not computed from trained prompts; use `mvlpt predict compute` for it.")
    check_data_dir(args.data_dir)
    # each file says what it is: a prompt its task and seed (provenance), a split file its task and seed
    prompts, splits = {}, {}
    for path in args.prompts:
        _, prov = read_prompt_meta(path)
        key = ("+".join(prov["tasks"]), prov["seed"])
        if key in prompts:
            raise MvlptError(f"{path} and {prompts[key]} are both the prompt of {key[0]} seed {key[1]}; pass each once.")
        prompts[key] = path
    for path in args.split_files:
        split = read_split(path)
        key = (split["task"], split.get("seed"))
        if key in splits:
            raise MvlptError(f"{path} and {splits[key]} are both the split of {key[0]} seed {key[1]}; pass each once.")
        splits[key] = path
    tasks = args.tasks or list(dict.fromkeys(t for t, _ in prompts))
    with lease_device(args.device, label=f"prompt predictors {args.method}") as lease:
        _say(f"device: {describe_lease(lease)}")
        clip = load_clip(args.model, pretrained_arg(args.model, args.pretrained), device=lease.device, init_seed=args.init_seed)
        views = prompt_views.prompt_views(
            clip,
            args.method,
            tasks,
            {k: v for k, v in prompts.items() if k[0] in tasks},
            splits,
            data_dir=args.data_dir,
            batch_size=args.batch_size,
        )
    out = Path(args.out_dir)
    with write_together():  # every matrix of the method, or none
        for name in names:
            m, seconds = prompt_views.prompt_matrix(name, views)
            predictors.write_predictor(m, name, seconds, layout.PREDICTOR.path(out, name, "csv"), method=args.method)
    _say(
        f"{args.method}: {', '.join(names)} over {len(tasks)} tasks and seeds {views.seeds} "
        f"(forward passes {views.seconds['estimators'] + views.seconds['metric']:.2f} s) -> {out}"
    )
    return 0


def run_score(args) -> int:
    from mvlpt.analysis import tables
    from mvlpt.transfer import predictor_scores, predictors

    if not args.pairs and not args.runs:
        raise MvlptError("give the runs table (--runs results/tables/runs.parquet) or the pairs table (--pairs).")
    runs = tables.read_table(args.runs) if args.runs else None
    pairs = tables.read_table(args.pairs) if args.pairs else None
    if args.against_design:  # a designed world: the predictors against its relatedness (docs/groundtruth.md)
        from mvlpt.analysis import groundtruth

        pairs = groundtruth.design_as_gains(pairs if pairs is not None else tables.pair_table(runs))
        runs = None  # the design has no seeds: the interval is over targets only
    preds = {}
    for path in args.predictors:
        m, info = predictors.read_predictor(path)
        name = info["predictor"]
        if "method" in info:  # a per-method predictor (trained prompts): one matrix per method
            given = preds.setdefault(name, {})
            if not isinstance(given, dict) or info["method"] in given:
                raise MvlptError(f"predictor {name} is given twice (e.g. {path}); pass each matrix once.")
            given[info["method"]] = (m, info)
            continue
        if name in preds:
            raise MvlptError(f"predictor {name} is given twice (e.g. {path}); pass each matrix once.")
        preds[name] = (m, info)
    scores = predictor_scores.score_predictors(
        pairs, preds, runs=runs, methods=args.methods, n_boot=args.n_boot, n_perm=args.n_perm, seed=args.seed, level=args.level
    )
    scores = tables.with_shots(scores, tables.study_shots(runs if runs is not None else pairs))  # the study's shot count
    written = tables.write_table(scores, args.out)
    _say(f"{len(scores)} predictor scores -> {', '.join(map(str, written))}")
    return 0


def run_plot(args) -> int:
    from mvlpt.analysis import figures, plots, tables

    fig = figures.predictors_figure(tables.read_table(args.scores))
    _say("wrote " + ", ".join(map(str, plots.save_figure(fig, args.out))))
    return 0


def add_parser(subparsers) -> None:
    from mvlpt.study.settings import ANALYSIS_DEFAULTS as A, SIMILARITY_DEFAULTS as SIM
    from mvlpt.study.vocabulary import METHODS, PREDICTORS, SHRINKAGES

    fmt = DefaultsHelpFormatter
    p = subparsers.add_parser(
        "predict",
        help="transferability predictors: how much a source should help a target, before training",
        description="Predict each (source, target) pair's transfer from the frozen model alone, and score the "
        "predictors against the measured gains (docs/predictors.md).",
    )
    sub = p.add_subparsers(dest="step", required=True, metavar="STEP")

    q = sub.add_parser(
        "embed",
        help="encode a task's labelled few-shot train images",
        formatter_class=fmt,
        description="Encode the train images of the given few-shot split files (one per seed) with the "
        "frozen CLIP; write features, labels, seeds and the model's logit scale to an .npz file.",
    )
    q.add_argument("--task", required=True)
    q.add_argument("--split-files", nargs="+", required=True, help="the study's few-shot split files of the task")
    q.add_argument("--out", required=True, help=".npz file to write")
    q.add_argument("--batch-size", type=int, default=SIM["batch_size"])
    add_model_args(q)
    q.set_defaults(func=run_embed)

    q = sub.add_parser(
        "compute",
        help="one predictor for every (source, target) pair",
        formatter_class=fmt,
        description="Write the source x target matrix of one predictor (larger = more gain expected) "
        "as CSV and parquet, and its compute time as .json. Predictors: "
        + ", ".join(f"{n} ({p.family})" for n, p in PREDICTORS.items())
        + ".",
    )
    q.add_argument("--predictor", choices=list(PREDICTORS), required=True)
    q.add_argument("--fewshot", nargs="+", help="zeroshot predictors: .fewshot.npz files of `mvlpt predict embed`")
    q.add_argument(
        "--labels", nargs="+", help="zeroshot predictors and label similarities: .labels.npz files of `mvlpt embed --kind labels`"
    )
    q.add_argument("--images", nargs="+", help="visual similarities: .images.npz files of `mvlpt embed --kind images`")
    q.add_argument("--tasks", nargs="+", help="task order (default: the order of the files)")
    q.add_argument("--shrinkage", choices=SHRINKAGES, default=SIM["shrinkage"], help="covariance estimate for visual_frechet")
    q.add_argument("--ridge", type=float, default=SIM["ridge"], help="ridge for visual_frechet (shrinkage=ridge)")
    q.add_argument("--out", required=True, help="CSV path; .parquet and .json are written next to it")
    q.set_defaults(func=run_compute)

    q = sub.add_parser(
        "prompts",
        help="the predictors of one method's trained prompts, every pair",
        formatter_class=fmt,
        description="Run every source's trained prompt (the baseline runs' prompt files, every seed) "
        "over every target's few-shot split: the estimators on the source classifier's view "
        "of the target's train images, and the target's metric on its val images with the "
        "source's prompt and the target's class names (nothing trained on the target). "
        "Writes one matrix per predictor (CSV, parquet, .json) into --out-dir.",
    )
    q.add_argument("--method", choices=list(METHODS), required=True)
    q.add_argument(
        "--prompts", nargs="+", required=True, help="prompt files of every task and seed (their provenance says which)"
    )
    q.add_argument("--split-files", nargs="+", required=True, help="few-shot split files of every task and seed")
    q.add_argument("--tasks", nargs="+", help="task order (default: the order of the prompt files)")
    q.add_argument(
        "--predictors",
        nargs="+",
        choices=[n for n, p in PREDICTORS.items() if p.family == "prompt"],
        help="which (default: every predictor of family prompt)",
    )
    q.add_argument("--out-dir", required=True, help="folder of the matrices, e.g. results/predictors/coop")
    q.add_argument("--batch-size", type=int, default=SIM["batch_size"])
    add_model_args(q)
    q.set_defaults(func=run_prompts)

    q = sub.add_parser(
        "score",
        help="score predictors against the measured gains",
        formatter_class=fmt,
        description="Per method and predictor, against the gain and against its interaction (the gain "
        "minus a source and a target effect), over the off-diagonal pairs: mean within-target "
        "Spearman (primary, with its target-stratified permutation p and Benjamini-Hochberg q), "
        "Spearman over pairs (secondary), top-1 and top-3 hit rate of the best source, NDCG@3, "
        "with percentile intervals from a two-level bootstrap (targets, then seeds), the null "
        "predictors source_quality and random, each predictor's paired difference to "
        "source_quality and the predictor's compute time. One long table as CSV and parquet.",
    )
    q.add_argument(
        "--runs",
        help="runs table from `mvlpt collect` (csv or parquet): the per-seed gains of the two-level "
        "bootstrap (targets, then seeds)",
    )
    q.add_argument(
        "--pairs",
        help="pairs table from `mvlpt collect`; alone (no --runs), its gains count as one seed "
        "and the intervals are over targets only",
    )
    q.add_argument("--predictors", nargs="+", required=True, help="matrices from `mvlpt predict compute`")
    q.add_argument(
        "--against-design",
        action="store_true",
        help="a designed world's study: score the predictors against the designed relatedness instead of the "
        "measured gains (docs/groundtruth.md)",
    )
    q.add_argument("--methods", nargs="+", help="methods to score (default: every method of the pairs table)")
    q.add_argument("--n-boot", type=int, default=A["n_boot"], help="bootstrap resamples of every confidence interval")
    q.add_argument("--n-perm", type=int, default=A["n_perm"], help="permutations of the within-target p-value")
    q.add_argument("--seed", type=int, default=A["seed"], help="seed of the resampling")
    q.add_argument("--level", type=float, default=A["level"], help="confidence level")
    q.add_argument("--out", required=True, help="CSV path; a .parquet is written next to it")
    q.set_defaults(func=run_score)

    q = sub.add_parser("plot", help="the predictors ranked, per method (PNG and PDF)", formatter_class=fmt)
    q.add_argument("--scores", required=True, help="table from `mvlpt predict score`")
    q.add_argument("--out", required=True)
    q.set_defaults(func=run_plot)
