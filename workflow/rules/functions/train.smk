# Input functions and params of train.smk (the single-task baselines and the pair runs).


def single_inputs(wildcards):
    return train_inputs(wildcards.method, [wildcards.task], job_seeds(wildcards))


def joint_inputs(wildcards):
    return train_inputs(wildcards.method, [wildcards.a, wildcards.b], job_seeds(wildcards))


def sequential_inputs(wildcards):
    seeds = job_seeds(wildcards)
    inputs = train_inputs(wildcards.method, [wildcards.target], seeds)
    inputs["prompts"] = [prompt_file(wildcards.method, wildcards.source, s) for s in seeds]
    return inputs


def single_io_args(wildcards):
    """--seed/--split/--output/--save-prompt of a baseline job."""
    t, slot = wildcards.task, seed_slot(wildcards)
    return " ".join([
        seed_args(job_seeds(wildcards)),
        split_args([t], slot),
        pair_args("--output", [(t, result_path(wildcards.method, t, t, slot))]),
        pair_args("--save-prompt", [(t, prompt_file(wildcards.method, t, slot))]),
    ])


def joint_io_args(wildcards):
    """A joint job trains on a and b and writes both directions: a__b (target b) and b__a (target a)."""
    a, b, slot, m = wildcards.a, wildcards.b, seed_slot(wildcards), wildcards.method
    return " ".join([
        seed_args(job_seeds(wildcards)),
        split_args([a, b], slot),
        pair_args("--output", [(b, result_path(m, a, b, slot)), (a, result_path(m, b, a, slot))]),
    ])


def sequential_io_args(wildcards):
    src, tgt, slot, m = wildcards.source, wildcards.target, seed_slot(wildcards), wildcards.method
    return " ".join([
        seed_args(job_seeds(wildcards)),
        split_args([tgt], slot),
        q(["--init-from", prompt_file(m, src, slot), "--source", src]),
        pair_args("--output", [(tgt, result_path(m, src, tgt, slot))]),
    ])


def train_args(wildcards):
    """The config's part of a training command (a param: changing it reruns the jobs)."""
    return _train_args(wildcards.method)


@functools.cache
def _train_args(method):
    return method_args(method, TRAIN_RESULT or None)


def train_state(wildcards):
    """Resumable-state file of a training job (not an output: mvlpt removes it when the run ends); its
    name carries a hash of the run's settings (state_tag)."""
    w = {k: getattr(wildcards, k) for k in ("a", "b", "source", "target", "task", "seed") if hasattr(wildcards, k)}
    if "a" in w:
        source, target = w["a"], w["b"]
    elif "source" in w:
        source, target = w["source"], w["target"]
    else:
        source = target = w["task"]
    stem = SEED_STEM.replace("{seed}", str(w.get("seed", "")))
    tag = state_tag(train_args(wildcards), metric_args(), job_seeds(wildcards))
    return layout.STATE.template(CACHE, wildcards.method, source, target, stem, tag)


def train_log(rule, job):
    return job_log(f"{rule}/{{method}}/{job}/{SEED_STEM}")


def train_benchmark(rule, job):
    return job_benchmark(f"{rule}/{{method}}/{job}/{SEED_STEM}")
