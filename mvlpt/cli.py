"""``mvlpt <verb>``: the command-line interface every workflow rule calls.

Errors a user can cause end in one sentence on stderr (``mvlpt: error: ...``) and exit status 2;
outputs are written atomically, so a failed command leaves nothing that looks finished.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from . import __version__
from .errors import MvlptError

# Modules under mvlpt.commands that add verbs (each has add_parser(subparsers)).
COMMAND_MODULES = ("data", "analysis", "preflight", "predict", "groundtruth", "multitask", "reference")
# Without --pretrained a model gets the weights mvlpt ships for it (mvlpt.models.clip.TINY_WEIGHTS),
# else a random init (as open_clip.create_model without pretrained); `--pretrained none`: random init.
SHIPPED_WEIGHTS = {"mvlpt-tiny": "synthetic"}


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for v in values or []:
        if "=" not in v:
            raise MvlptError(f"{what} must look like TASK=PATH, got {v!r}.")
        k, p = v.split("=", 1)
        if k in out and out[k] != p:
            raise MvlptError(f"{what} is given twice for task {k!r} ({out[k]} and {p}); give one file per task.")
        out[k] = p
    return out


def _json_arg(text: str | None, what: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise MvlptError(f"{what} is not valid JSON ({e.msg}): {text!r}.") from None
    if not isinstance(value, dict):
        raise MvlptError(f"{what} must be a JSON object, got {text!r}.")
    return value


def pretrained_arg(model: str, value: str | None) -> str | None:
    """The weights a --model/--pretrained pair means: None = random init (see SHIPPED_WEIGHTS)."""
    if value is None:
        return SHIPPED_WEIGHTS.get(model)
    return None if value.strip() in ("", "none", "None") else value


def check_data_dir(value: str | None) -> None:
    """A data folder that is a file is said to be one (not reported as missing data later)."""
    from .datasets.paths import resolve_data_dir
    from .io import check_folder

    check_folder(resolve_data_dir(value), "data folder")


def cmd_tasks(args) -> int:
    from .tasks import get_task, list_tasks

    for name in list_tasks(args.source):
        t = get_task(name)
        kind = "multi-label" if t.multilabel else "multiclass"
        print(f"{name:34s} {t.num_classes:4d} classes  {t.metric:24s} {kind:11s} {t.source:9s} {t.domain}")
    return 0


def cmd_split(args) -> int:
    from .tasks import get_task
    from .tasks.fewshot import make_split, write_split

    check_data_dir(args.data_dir)
    split = make_split(get_task(args.task), args.seed, args.shots, args.data_dir, policy=args.policy)
    write_split(split, args.out)
    print(f"{args.out}: {len(split['train'])} train + {len(split['val'])} val images of {args.task} (seed {args.seed}, {args.shots} shots)")
    return 0


def cmd_features(args) -> int:
    from .devices import resolve_device
    from .features import image_features
    from .models.clip import load_clip
    from .tasks import get_task
    from .tasks.fewshot import indices_of, read_split

    task = get_task(args.task)
    check_data_dir(args.data_dir)
    clip = load_clip(args.model, pretrained_arg(args.model, args.pretrained), device=resolve_device(args.device),
                     init_seed=args.init_seed)
    test = task.load("test", args.data_dir)
    image_features(clip, task.name, test, None, "test", args.cache_dir, workers=args.workers, write=True)
    train = task.load("train", args.data_dir) if args.split_file else None
    for f in args.split_file or []:
        sp = read_split(f, task.name)
        name = f"shots{sp['shots']}_seed{sp['seed']}"
        for part in ("train", "val"):
            image_features(clip, task.name, train, indices_of(train, sp[part]), f"{name}_{part}", args.cache_dir, write=True)
    if args.done:
        from .io import write_json

        write_json({"task": task.name, "model": clip.key, "splits": args.split_file or []}, args.done)
    return 0


def cmd_train(args) -> int:
    if args.compile_cache and not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):  # before torch settles on its default
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.abspath(args.compile_cache)
    from .config import RunSpec, TrainConfig
    from .devices import describe_lease, lease_device
    from .train import run

    train_opts = {}
    for text in args.train_options or []:  # later keys win
        train_opts.update(_json_arg(text, "--train-options"))
    for key in ("epochs", "lr", "batch_size"):
        if getattr(args, key) is not None:
            train_opts[key] = getattr(args, key)
    spec = RunSpec(
        method=args.method,
        tasks=list(args.task),
        seeds=args.seed or [1],
        shots=args.shots,
        method_options=_json_arg(args.method_options, "--method-options"),
        train=TrainConfig.from_dict(train_opts),
        model=args.model,
        pretrained=pretrained_arg(args.model, args.pretrained),
        init_seed=args.init_seed,
        split_files=_pairs(args.split, "--split"),
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        init_from=args.init_from,
        source=args.source,
        outputs=_pairs(args.output, "--output"),
        save_prompts=_pairs(args.save_prompt, "--save-prompt"),
        save_group_prompt=args.save_group_prompt,
        state_path=args.state,
        device=args.device,
    )
    if args.zero_epoch:
        from .zero_epoch import ZeroEpochSpec, run

        spec = ZeroEpochSpec.of(spec)
    spec.validate()
    from .tasks import get_task

    for name in spec.tasks:
        get_task(name)  # an unknown task fails here, before any device is leased
    if not spec.outputs and not spec.save_prompts and not spec.save_group_prompt:
        raise MvlptError("nothing to write: give --output TASK=FILE, --save-prompt TASK=FILE and/or --save-group-prompt FILE.")
    from .checkpoints import source_prompts

    check_data_dir(spec.data_dir)
    spec.check_paths()  # all of these fail now, not after training
    if spec.init_from:
        spec.source, _ = source_prompts(spec)
    label = f"{args.method}:{'+'.join(args.task)}:seed{','.join(map(str, spec.seeds))}"
    with lease_device(args.device, label=label) as lease:
        if lease.index is not None:
            import torch

            torch.cuda.set_device(lease.index)
        print(describe_lease(lease), file=sys.stderr)
        spec.device = lease.device
        results = run(spec)
    for r in results:
        print(f"{r['method']} {r['source']} -> {r['target']} seed {r['seed']}: test {r['metric']} {r['test']:.4f} "
              f"(best val {r['val']:.4f} at epoch {r['best_epoch']}/{r['epochs']}, {r['wall_time_s']:.1f} s on {r['device']})")
    return 0


def cmd_info(args) -> int:
    import open_clip
    import torch

    print(f"mvlpt {__version__}, torch {torch.__version__}, open_clip {open_clip.__version__}, "
          f"cuda available: {torch.cuda.is_available()} ({torch.cuda.device_count()} devices)")
    return 0


def add_model_args(p) -> None:
    """--model, --pretrained, --init-seed, --device, --data-dir: every verb that loads the frozen CLIP."""
    g = p.add_argument_group("model")
    g.add_argument("--model", default="mvlpt-tiny", help="open_clip model name; the paper: ViT-B-16-quickgelu (default: %(default)s)")
    g.add_argument("--pretrained", default=None,
                   help="open_clip pretrained tag (the paper: openai) or a weights file; none: random init "
                        "(default: the weights mvlpt ships for the model, i.e. synthetic for mvlpt-tiny; else random init)")
    g.add_argument("--init-seed", type=int, default=0, help="seed of the random init when no weights are given (default: %(default)s)")
    g.add_argument("--device", default="auto", help="auto (a free GPU if any, else CPU), cpu, cuda or cuda:N (default: %(default)s)")
    g.add_argument("--data-dir", default=None, help="where task data lives (ELEVATER tasks; default: $MVLPT_DATA_DIR or ~/.cache/mvlpt/data)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mvlpt", description="Multitask vision-language prompt tuning: the task-transferability study.")
    parser.add_argument("--version", action="version", version=f"mvlpt {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    from . import study
    from .tasks.fewshot import DEFAULT_POLICY, POLICIES

    p = sub.add_parser("tasks", help="list the registered tasks", description="List the registered tasks.")
    p.add_argument("--source", choices=["synthetic", "elevater", "designed", "designed2"], default=None, help="only tasks of this suite")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("split", help="write a few-shot split file", description="Sample a task's few-shot train/val ids (seeded) into a JSON file.")
    p.add_argument("--task", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--shots", type=int, required=True, help="images per class (train + val)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--policy", choices=POLICIES, default=DEFAULT_POLICY,
                   help="a class with fewer than SHOTS images: 'available' gives all it has (ELEVATER's sampler), "
                        "'strict' refuses (default: %(default)s)")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("features", help="cache frozen image features of a task", description="Compute and cache the frozen CLIP image features of a task's test split and of the given few-shot splits (used by CoOp).")
    p.add_argument("--task", required=True)
    p.add_argument("--split-file", action="append", help="few-shot split file (repeatable)")
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--workers", type=int, default=0, help="image decoding processes")
    p.add_argument("--done", default=None, help="marker JSON written last (for workflows)")
    add_model_args(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser(
        "train", help="train prompts on one task, jointly on several, or from a source prompt",
        description="Train a prompt method on a frozen CLIP. One --task: the single-task baseline (or a sequential target with "
        "--init-from). Several --task: a joint run; each --output TASK=FILE gets that task's test metric with the checkpoint "
        "that was best on that task's validation split.",
    )
    p.add_argument("--method", required=True, help=f"the prompt method: {', '.join(study.METHODS)}")
    p.add_argument("--task", action="append", required=True, help="training task (repeat for a joint run)")
    p.add_argument("--seed", type=int, action="append",
                   help="fixes the few-shot subset and the prompt init (default: 1); repeat to train several seeds "
                        "stacked in one process (paths then need a {seed} placeholder)")
    p.add_argument("--shots", type=int, default=5, help="images per class, train + val (default: %(default)s)")
    p.add_argument("--split", action="append", help="TASK=FILE: a pinned few-shot split (default: sampled from the seed)")
    p.add_argument("--output", action="append", help="TASK=FILE: result JSON of that target task ({seed} is replaced)")
    p.add_argument("--save-prompt", action="append", help="TASK=FILE: best prompt for that task (safetensors; {seed} is replaced)")
    p.add_argument("--save-group-prompt", metavar="FILE",
                   help="the prompt best on the mean validation metric over all --task's: a multitask source prompt, "
                        "for --init-from of a run on another task (safetensors; {seed} is replaced)")
    p.add_argument("--init-from", default=None, help="sequential mode: initialise from this prompt checkpoint ({seed} is replaced)")
    p.add_argument("--source", default=None,
                   help="sequential mode: the source task, optional: it is read from the --init-from file, and checked when given")
    p.add_argument("--zero-epoch", action="store_true",
                   help="evaluate the --init-from prompt on the target without training it (mode zero_epoch, mvlpt.zero_epoch)")
    p.add_argument("--method-options", default=None, help='JSON, e.g. \'{"n_ctx": 16, "position": "middle"}\'')
    p.add_argument("--train-options", action="append",
                   help='JSON of training options, e.g. \'{"epochs": 200, "lr": 0.002}\'; may be repeated, later keys win')
    p.add_argument("--epochs", type=int, default=None, help="overrides --train-options")
    p.add_argument("--lr", type=float, default=None, help="overrides --train-options")
    p.add_argument("--batch-size", type=int, default=None, help="overrides --train-options")
    p.add_argument("--state", default=None, help="resumable training state file (resumed if present, removed at the end)")
    p.add_argument("--cache-dir", default=None, help="frozen-feature cache (from `mvlpt features`)")
    p.add_argument("--compile-cache", metavar="DIR", default=None,
                   help="with train option compile: torch.compile's kernel cache, shared by the runs that name it "
                        "(TORCHINDUCTOR_CACHE_DIR; a value set in the environment wins; default: torch's, under the "
                        "machine's temporary directory)")
    add_model_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("info", help="versions and devices", description="Print versions and the devices torch sees.")
    p.set_defaults(func=cmd_info)

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("mvlpt.commands"):
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        from .domains import check_statistics_args

        check_statistics_args(args)  # --level, --n-boot, --n-perm of any command (issue 24, class 4)
        return int(args.func(args) or 0)
    except MvlptError as e:
        from .errors import one_line

        msg = one_line(e)  # a path or name with a newline in it stays on the one line
        print(f"mvlpt: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mvlpt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
