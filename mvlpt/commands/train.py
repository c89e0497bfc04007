"""CLI verb that trains prompts: ``mvlpt train`` (one task, jointly on several, or from a source prompt;
:func:`mvlpt.training.train.run`)."""

from __future__ import annotations

import json
import os
import sys

from mvlpt.commands.args import add_metric_args, add_model_args, check_data_dir, pretrained_arg
from mvlpt.errors import MvlptError


def pairs_arg(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for v in values or []:
        if "=" not in v:
            raise MvlptError(f"{what} must look like TASK=PATH, got {v!r}.")
        k, p = v.split("=", 1)
        if k in out and out[k] != p:
            raise MvlptError(f"{what} is given twice for task {k!r} ({out[k]} and {p}); give one file per task.")
        out[k] = p
    return out


def json_arg(text: str | None, what: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise MvlptError(f"{what} is not valid JSON ({e.msg}): {text!r}.") from None
    if not isinstance(value, dict):
        raise MvlptError(f"{what} must be a JSON object, got {text!r}.")
    return value


def run_train(args) -> int:
    if args.compile_cache and not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):  # before torch settles on its default
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.abspath(args.compile_cache)
    from mvlpt.running.devices import describe_lease, lease_device
    from mvlpt.study import protocol
    from mvlpt.training.config import RunSpec, TrainConfig
    from mvlpt.training.train import run

    preset = protocol.run_defaults(protocol.check(args.protocol))  # the protocol's values, under the options given
    train_opts = dict(preset["train"])
    for text in args.train_options or []:  # later keys win
        train_opts.update(json_arg(text, "--train-options"))
    for key in ("epochs", "lr", "batch_size"):
        if getattr(args, key) is not None:
            train_opts[key] = getattr(args, key)
    sources = args.source or []
    if len(sources) > 1 and not args.zero_epoch:
        raise MvlptError("give one --source (several only with --zero-epoch: one cell per source and target).")
    spec = RunSpec(
        method=args.method,
        tasks=list(args.task),
        seeds=args.seed or [1],
        shots=args.shots,
        method_options={**preset["method_options"].get(args.method, {}), **json_arg(args.method_options, "--method-options")},
        train=TrainConfig.from_dict(train_opts),
        model=args.model,
        pretrained=pretrained_arg(args.model, args.pretrained),
        init_seed=args.init_seed,
        split_files=pairs_arg(args.split, "--split"),
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        init_from=args.init_from,
        source=sources[0] if len(sources) == 1 else None,
        outputs=pairs_arg(args.output, "--output"),
        save_prompts=pairs_arg(args.save_prompt, "--save-prompt"),
        save_group_prompt=args.save_group_prompt,
        state_path=args.state,
        device=args.device,
        hateful_memes_metric=args.hateful_memes_metric or preset["hateful_memes_metric"],
        protocol=args.protocol,
    )
    if args.zero_epoch:
        from mvlpt.training import zero_epoch

        several = len(spec.tasks) > 1 or len(sources) > 1  # several cells, one process
        specs = zero_epoch.pair_specs(spec, sources) if several else [zero_epoch.ZeroEpochSpec.of(spec).validate()]
        run = zero_epoch.run
    else:
        specs = [spec.validate()]
    from mvlpt.tasks import get_task

    for name in spec.tasks:
        get_task(name)  # an unknown task fails here, before any device is leased
    if not spec.outputs and not spec.save_prompts and not spec.save_group_prompt:
        raise MvlptError("nothing to write: give --output TASK=FILE, --save-prompt TASK=FILE and/or --save-group-prompt FILE.")
    from mvlpt.training.checkpoints import source_prompts

    check_data_dir(spec.data_dir)
    for one in specs:
        one.check_paths()  # all of these fail now, not after training
        if one.init_from:
            one.source, _ = source_prompts(one)
    label = f"{args.method}:{'+'.join(args.task)}:seed{','.join(map(str, spec.seeds))}"
    with lease_device(args.device, label=label) as lease:
        if lease.index is not None:
            import torch

            torch.cuda.set_device(lease.index)
        print(describe_lease(lease), file=sys.stderr)
        for one in specs:
            one.device = lease.device
        results = [r for one in specs for r in run(one)]  # several only for zero-epoch cells
    for r in results:
        print(
            f"{r['method']} {r['source']} -> {r['target']} seed {r['seed']}: test {r['metric']} {r['test']:.4f} "
            f"(best val {r['val']:.4f} at epoch {r['best_epoch']}/{r['epochs']}, {r['wall_time_s']:.1f} s on {r['device']})"
        )
    return 0


def add_parser(sub) -> None:
    from mvlpt.study import vocabulary

    p = sub.add_parser(
        "train",
        help="train prompts on one task, jointly on several, or from a source prompt",
        description="Train a prompt method on a frozen CLIP. One --task: the single-task baseline (or a sequential target with "
        "--init-from). Several --task: a joint run; each --output TASK=FILE gets that task's test metric with the checkpoint "
        "that was best on that task's validation split.",
    )
    p.add_argument("--method", required=True, help=f"the prompt method: {', '.join(vocabulary.METHODS)}")
    p.add_argument("--task", action="append", required=True, help="training task (repeat for a joint run)")
    p.add_argument(
        "--seed",
        type=int,
        action="append",
        help="fixes the few-shot subset and the prompt init (default: 1); repeat to train several seeds "
        "stacked in one process (paths then need a {seed} placeholder)",
    )
    p.add_argument("--shots", type=int, default=5, help="images per class, train + val (default: %(default)s)")
    p.add_argument("--split", action="append", help="TASK=FILE: a pinned few-shot split (default: sampled from the seed)")
    p.add_argument("--output", action="append", help="TASK=FILE: result JSON of that target task ({seed} is replaced)")
    p.add_argument(
        "--save-prompt", action="append", help="TASK=FILE: best prompt for that task (safetensors; {seed} is replaced)"
    )
    p.add_argument(
        "--save-group-prompt",
        metavar="FILE",
        help="the prompt best on the mean validation metric over all --task's: a multitask source prompt, "
        "for --init-from of a run on another task (safetensors; {seed} is replaced)",
    )
    p.add_argument(
        "--init-from", default=None, help="sequential mode: initialise from this prompt checkpoint ({seed} is replaced)"
    )
    p.add_argument(
        "--source",
        action="append",
        default=None,
        help="sequential mode: the source task, optional: it is read from the --init-from file, and checked when given; "
        "with --zero-epoch it may be repeated (and --task too): every (source, target) cell of them is evaluated in "
        "this one process, with a {source} slot in --init-from and in each --output path",
    )
    p.add_argument(
        "--zero-epoch",
        action="store_true",
        help="evaluate the --init-from prompt on the target without training it (mode zero_epoch, mvlpt.training.zero_epoch)",
    )
    p.add_argument("--method-options", default=None, help='JSON, e.g. \'{"n_ctx": 16, "position": "middle"}\'')
    p.add_argument(
        "--train-options",
        action="append",
        help='JSON of training options, e.g. \'{"epochs": 200, "lr": 0.002}\'; may be repeated, later keys win',
    )
    p.add_argument("--epochs", type=int, default=None, help="overrides --train-options")
    p.add_argument("--lr", type=float, default=None, help="overrides --train-options")
    p.add_argument("--batch-size", type=int, default=None, help="overrides --train-options")
    p.add_argument("--state", default=None, help="resumable training state file (resumed if present, removed at the end)")
    p.add_argument("--cache-dir", default=None, help="frozen-feature cache (from `mvlpt features`)")
    p.add_argument(
        "--compile-cache",
        metavar="DIR",
        default=None,
        help="with train option compile: torch.compile's kernel cache, shared by the runs that name it "
        "(TORCHINDUCTOR_CACHE_DIR; a value set in the environment wins; default: torch's, under the "
        "machine's temporary directory)",
    )
    p.add_argument(
        "--protocol",
        default="corrected",
        help="corrected (ours, the default) or reference (the MVLPT reference code's): recorded in the results, and its "
        "values of the options it sets (docs/protocol.md) under those given (--train-options, --method-options, "
        "--hateful-memes-metric)",
    )
    add_metric_args(p)
    add_model_args(p)
    p.set_defaults(func=run_train)
