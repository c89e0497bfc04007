"""CLI verbs of a study's tasks: list them, sample a few-shot split, cache the frozen image features.

mvlpt tasks [--source S]
mvlpt split --task NAME --seed N --shots K --out SPLIT.json [--data-dir DIR] [--policy available|strict]
mvlpt features --task NAME --cache-dir DIR [--split-file SPLIT.json ...] [--done MARKER] [model options]
"""

from __future__ import annotations

from mvlpt.commands.args import add_model_args, check_data_dir, pretrained_arg
from mvlpt.study import layout


def run_tasks(args) -> int:
    from mvlpt.tasks import get_task, list_tasks

    for name in list_tasks(args.source):
        t = get_task(name)
        kind = "multi-label" if t.multilabel else "multiclass"
        print(f"{name:34s} {t.num_classes:4d} classes  {t.metric:24s} {kind:11s} {t.source:9s} {t.domain}")
    return 0


def run_split(args) -> int:
    from mvlpt.tasks import get_task
    from mvlpt.tasks.fewshot import make_split, write_split

    check_data_dir(args.data_dir)
    split = make_split(get_task(args.task), args.seed, args.shots, args.data_dir, policy=args.policy)
    write_split(split, args.out)
    print(
        f"{args.out}: {len(split['train'])} train + {len(split['val'])} val images of {args.task} (seed {args.seed}, {args.shots} shots)"
    )
    return 0


def run_features(args) -> int:
    from mvlpt.models.clip import load_clip
    from mvlpt.running.devices import resolve_device
    from mvlpt.tasks import get_task
    from mvlpt.tasks.fewshot import indices_of, read_split
    from mvlpt.training.features import image_features

    task = get_task(args.task)
    check_data_dir(args.data_dir)
    clip = load_clip(
        args.model, pretrained_arg(args.model, args.pretrained), device=resolve_device(args.device), init_seed=args.init_seed
    )
    test = task.load("test", args.data_dir)
    image_features(clip, task.name, test, None, "test", args.cache_dir, workers=args.workers, write=True)
    train = task.load("train", args.data_dir) if args.split_file else None
    for f in args.split_file or []:
        sp = read_split(f, task.name)
        for part in ("train", "val"):
            image_features(
                clip,
                task.name,
                train,
                indices_of(train, sp[part]),
                layout.features_name(sp["shots"], sp["seed"], part),
                args.cache_dir,
                write=True,
            )
    if args.done:
        from mvlpt.io import write_json

        write_json({"task": task.name, "model": clip.key, "splits": args.split_file or []}, args.done)
    return 0


def add_parser(sub) -> None:
    from mvlpt.study import settings

    p = sub.add_parser("tasks", help="list the registered tasks", description="List the registered tasks.")
    p.add_argument(
        "--source",
        choices=["synthetic", "elevater", "coop", "designed", "designed2"],
        default=None,
        help="only tasks of this suite",
    )
    p.set_defaults(func=run_tasks)

    p = sub.add_parser(
        "split",
        help="write a few-shot split file",
        description="Sample a task's few-shot train/val ids (seeded) into a JSON file.",
    )
    p.add_argument("--task", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--shots", type=int, required=True, help="images per class (train + val)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--data-dir", default=None)
    p.add_argument(
        "--policy",
        choices=settings.choices("fewshot_policy"),
        default=settings.DEFAULTS["fewshot_policy"],
        help="a class with fewer than SHOTS images: 'available' gives all it has (ELEVATER's sampler), "
        "'strict' refuses (default: %(default)s)",
    )
    p.set_defaults(func=run_split)

    p = sub.add_parser(
        "features",
        help="cache frozen image features of a task",
        description="Compute and cache the frozen CLIP image features of a task's test split and of the given few-shot splits (used by CoOp).",
    )
    p.add_argument("--task", required=True)
    p.add_argument("--split-file", action="append", help="few-shot split file (repeatable)")
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--workers", type=int, default=0, help="image decoding processes")
    p.add_argument("--done", default=None, help="marker JSON written last (for workflows)")
    add_model_args(p)
    p.set_defaults(func=run_features)
