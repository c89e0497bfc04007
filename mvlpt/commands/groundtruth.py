"""CLI verb of the designed world (docs/groundtruth.md):

mvlpt groundtruth --pairs results/groundtruth/tables/pairs.parquet [--out recovery.csv]
mvlpt groundtruth --pairs results/groundtruth2/tables/pairs.parquet      (either world; with the primary statistic)
mvlpt groundtruth --predictors [--world groundtruth2] [--seed 1 --shots 8] [--out predictors.csv]
"""

from __future__ import annotations

from mvlpt.errors import MvlptError


def run_groundtruth(args) -> int:
    import pandas as pd

    from mvlpt.analysis import groundtruth

    if not args.pairs and not args.predictors:
        raise MvlptError("give --pairs PAIRS_TABLE (designed vs measured gain) or --predictors (from the frozen model).")
    tables = []
    if args.pairs:
        pairs = groundtruth.read_pairs(args.pairs)
        tables.append(groundtruth.recovery(pairs))
        # the second world's pre-registered statistic (docs/groundtruth.md): mean within-target Spearman, interval
        # its interval resamples the per-seed gains of the runs table beside the pair table (or --runs)
        runs = groundtruth.read_runs(args.runs) if args.runs else groundtruth.runs_beside(args.pairs)
        tables.append(groundtruth.primary(pairs, runs, n_boot=args.n_boot))
    if args.predictors:
        from mvlpt.tasks import designed

        tasks = designed.WORLDS[args.world]
        tables.append(
            groundtruth.predictor_hits(groundtruth.zero_shot_scores(tasks, seed=args.seed, shots=args.shots, device=args.device))
        )
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        for table in tables:
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        pd.concat(tables, ignore_index=True).to_csv(args.out, index=False)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "groundtruth",
        help="score the designed world: designed relatedness vs measured gain",
        description="Designed relatedness (mvlpt.tasks.designed) against the study's measured gains, per "
        "method, and against transferability estimators of the frozen model (docs/groundtruth.md).",
    )
    p.add_argument("--pairs", default=None, help="the study's pair table (results/groundtruth/tables/pairs.parquet or .csv)")
    p.add_argument(
        "--runs",
        default=None,
        help="the study's per-seed runs table for the primary statistic's interval (default: runs.parquet or "
        "runs.csv beside --pairs; without one, no interval)",
    )
    p.add_argument("--predictors", action="store_true", help="also score LEEP/NCE/LogME/H-score/GBC of the frozen model")
    p.add_argument(
        "--world",
        default="groundtruth",
        choices=["groundtruth", "groundtruth2"],
        help="the designed world whose tasks --predictors scores (default: %(default)s)",
    )
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap draws of the primary statistic's interval (default 2000)")
    p.add_argument("--seed", type=int, default=1, help="few-shot seed of the predictors' images (default 1)")
    p.add_argument("--shots", type=int, default=8, help="shots of the predictors' few-shot images (default 8)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="also write the table(s) to this CSV")
    p.set_defaults(func=run_groundtruth)
