# Input functions and params of zero_epoch.smk (one job per method evaluates every off-diagonal cell).


def zero_epoch_outputs():
    """Every off-diagonal cell's result paths ({method} and, without stacked seeds, {seed} stay wildcards)."""
    cells = [(s, t) for t in TASKS for s in TASKS if s != t]
    return [p for s, t in cells for p in seed_paths(layout.RESULT.template(RESULTS, source=s, target=t))]


def zero_epoch_inputs(wildcards):
    """Every task's few-shot splits (+ frozen features) and every task's baseline prompts: each task is a
    target of the others and a source for them."""
    seeds = job_seeds(wildcards)
    inputs = train_inputs(wildcards.method, TASKS, seeds)
    inputs["prompts"] = [prompt_file(wildcards.method, t, s) for t in TASKS for s in seeds]
    return inputs


def zero_epoch_io_args(wildcards):
    """--task/--source per task, --seed, --split per task, and the {source}-slotted --init-from and --output
    templates of `mvlpt train --zero-epoch` (mvlpt.training.zero_epoch.pair_specs)."""
    m, slot = wildcards.method, seed_slot(wildcards)
    return " ".join([
        q([arg for t in TASKS for arg in ("--task", t)]),
        q([arg for t in TASKS for arg in ("--source", t)]),
        seed_args(job_seeds(wildcards)),
        split_args(TASKS, slot),
        q(["--init-from", prompt_file(m, "{source}", slot)]),
        pair_args("--output", [(t, result_path(m, "{source}", t, slot)) for t in TASKS]),
    ])
