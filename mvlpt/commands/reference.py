"""CLI verb of the reference rows (mvlpt.analysis.reference, docs/protocol.md "Reference rows"):

mvlpt reference --kind zeroshot --task T --out results/reference/zeroshot/T.json [--cache-dir C] [model args]
mvlpt reference --kind linear_probe --task T --split-file S.json --out results/reference/linear_probe/T/seed1.json
mvlpt reference --kind linear_probe --task T --seed 1 --shots 10 --out F.json      (split sampled as `mvlpt split` does)
"""

from __future__ import annotations

import sys

from mvlpt.commands.args import DefaultsHelpFormatter, add_metric_args, add_model_args, check_data_dir, pretrained_arg
from mvlpt.errors import MvlptError


def run_reference(args) -> int:
    from mvlpt.analysis import reference
    from mvlpt.io import check_writable
    from mvlpt.models.clip import load_clip
    from mvlpt.running.devices import describe_lease, lease_device
    from mvlpt.tasks import get_task
    from mvlpt.tasks.elevater import scored_task
    from mvlpt.tasks.fewshot import make_split, read_split

    for option, value, known in (("--kind", args.kind, reference.KINDS), ("--fit-on", args.fit_on, reference.FIT_ON)):
        if value not in known:  # checked here, not by argparse: building the parser imports no pandas
            raise MvlptError(f"{option} must be one of {', '.join(known)}, got {value!r}.")
    task = scored_task(get_task(args.task), args.hateful_memes_metric)
    check_data_dir(args.data_dir)
    split = None
    if args.kind == "linear_probe":
        if args.split_file:
            split = read_split(args.split_file, task.name)
            if args.seed is not None and split.get("seed") != args.seed:
                raise MvlptError(
                    f"few-shot split file {args.split_file} was sampled with seed {split.get('seed')}, "
                    f"not {args.seed}; give the split file of seed {args.seed}."
                )
        elif args.seed is None:
            raise MvlptError("a linear probe needs its few-shot split: give --split-file FILE, or --seed S (and --shots K).")
        else:
            split = make_split(task, args.seed, args.shots, args.data_dir)
    elif args.split_file or args.seed is not None:
        raise MvlptError("zero-shot uses no few-shot split; drop --split-file and --seed.")
    grid = reference.C_GRID if not args.c_grid else tuple(args.c_grid)
    check_writable([args.out])
    with lease_device(args.device, label=f"reference {args.kind} {args.task}") as lease:
        print(f"device: {describe_lease(lease)}", file=sys.stderr, flush=True)
        clip = load_clip(args.model, pretrained_arg(args.model, args.pretrained), device=lease.device, init_seed=args.init_seed)
        common = dict(data_dir=args.data_dir, cache_dir=args.cache_dir, workers=args.workers, write_cache=bool(args.cache_dir))
        if args.kind == "zeroshot":
            rec = reference.zeroshot(clip, task, **common)
        else:
            rec = reference.linear_probe(clip, task, split, grid=grid, fit_on=args.fit_on, **common)
    reference.write_reference(rec, args.out)
    extra = f" (C {rec['C']:g} chosen on {rec['n_val']} validation images, val {rec['val']:.4f})" if rec["C"] else ""
    seed = f" seed {rec['seed']}" if rec["seed"] is not None else ""
    print(f"{args.kind} {task.name}{seed}: test {rec['metric']} {rec['test']:.4f}{extra} -> {args.out}", file=sys.stderr)
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MvlptError(f"--c-grid takes positive numbers, got {text!r}.") from None
    return value


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reference",
        help="zero-shot CLIP or a few-shot linear probe on one task: the reference rows",
        formatter_class=DefaultsHelpFormatter,
        description="Score the frozen model without prompt learning on one task's test set: zero-shot (the task's "
        "templates, averaged per class) or a logistic-regression linear probe on the few-shot split's train "
        "image features, its C chosen on the split's validation images. Writes one JSON record "
        "(docs/protocol.md, 'Reference rows').",
    )
    p.add_argument(
        "--kind", required=True, help="zeroshot (one record per task) or linear_probe (one per task and few-shot split)"
    )
    p.add_argument("--task", required=True, help="the task (`mvlpt tasks` lists them)")
    p.add_argument("--split-file", default=None, help="linear probe: the few-shot split file (as training uses)")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="linear probe: the few-shot seed (checked against --split-file; without it the split is sampled)",
    )
    p.add_argument("--shots", type=int, default=5, help="linear probe without --split-file: shots of the sampled split")
    p.add_argument(
        "--c-grid",
        nargs="+",
        type=_positive_float,
        default=None,
        help="linear probe: the C values tried (default: mvlpt.analysis.reference.C_GRID, 1e-3 .. 1e3, log-spaced)",
    )
    p.add_argument(
        "--fit-on",
        default="train",
        help="linear probe: fit the chosen C on the split's train images (the prompt baseline's data), or "
        "refit on train+val as ELEVATER does",
    )
    p.add_argument("--out", required=True, help="JSON record to write")
    p.add_argument("--cache-dir", default=None, help="frozen-feature cache (read, and written when missing)")
    p.add_argument("--workers", type=int, default=0, help="image decoding processes")
    add_metric_args(p)
    add_model_args(p)
    p.set_defaults(func=run_reference)
