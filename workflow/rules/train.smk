# Training: the single-task baseline per (method, task), and every ordered (source, target) pair in
# the configured mode. Every result lands in its own file:
#   {results_dir}/{method}/{source}__{target}/seed{seed}.json   (source == target: the baseline)
#
# joint:      one run per unordered pair {a, b} (a before b in `tasks`) trains on both tasks and
#             writes both directions, a__b (target b) and b__a (target a); mvlpt keeps the best
#             validation checkpoint per target task.
# sequential: the baseline's best prompt on the source initialises a run on the target.
#
# Seeds: with stack_seeds (default) one process trains every seed at once (mvlpt stacks them into
# one forward pass; results equal separate runs), else there is one job per seed (wildcard {seed}).
#
# Training jobs declare gpu=1 (counted only with --resources gpu=N locally; --gpus=1 on SLURM);
# without a GPU they run on the CPU. A failed job is retried and resumes from its --state file.
#
# params.args carries the options that change results (a change reruns the jobs); params.runtime_opts the
# runtime ones (train.compile, eval_batch_size, workers, ...), which never rerun a finished job.


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
    return method_args(wildcards.method, TRAIN_RESULT or None)


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
    tag = state_tag(train_args(wildcards), env_prefix(), job_seeds(wildcards))
    return layout.STATE.template(CACHE, wildcards.method, source, target, stem, tag)


def train_log(rule, job):
    return job_log(f"{rule}/{{method}}/{job}/{SEED_STEM}")


def train_benchmark(rule, job):
    return job_benchmark(f"{rule}/{{method}}/{job}/{SEED_STEM}")


rule train_single:
    input:
        unpack(single_inputs),
    output:
        results=seed_paths(layout.RESULT.template(RESULTS, source="{task}", target="{task}")),
        prompts=seed_paths(layout.PROMPT.template(RESULTS)),
    log:
        train_log("train_single", "{task}"),
    benchmark:
        train_benchmark("train_single", "{task}")
    params:
        args=train_args,
        io=single_io_args,
        state=train_state,
        env=env_prefix(),
        runtime_opts=runtime_args,
    threads: JOB_THREADS
    retries: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    conda:
        CONDA_ENV
    shell:
        "{params.env} mvlpt train --task {wildcards.task:q} {params.io} {params.args} {params.runtime_opts} "
        "--state {params.state:q} > {log:q} 2>&1"


if MODE == "joint":

    rule train_joint:
        input:
            unpack(joint_inputs),
        output:
            ab=seed_paths(layout.RESULT.template(RESULTS, source="{a}", target="{b}")),
            ba=seed_paths(layout.RESULT.template(RESULTS, source="{b}", target="{a}")),
        log:
            train_log("train_joint", "{a}__{b}"),
        benchmark:
            train_benchmark("train_joint", "{a}__{b}")
        wildcard_constraints:
            **joint_pair_constraints(TASKS),
        params:
            args=train_args,
            io=joint_io_args,
            state=train_state,
            env=env_prefix(),
            runtime_opts=runtime_args,
        threads: JOB_THREADS
        retries: 2
        resources:
            gpu=1,
            mem_mb=16000,
            runtime=480,
        conda:
            CONDA_ENV
        shell:
            "{params.env} mvlpt train --task {wildcards.a:q} --task {wildcards.b:q} {params.io} {params.args} {params.runtime_opts} "
            "--state {params.state:q} > {log:q} 2>&1"

else:

    rule train_sequential:
        input:
            unpack(sequential_inputs),
        output:
            seed_paths(layout.RESULT.template(RESULTS)),
        log:
            train_log("train_sequential", "{source}__{target}"),
        benchmark:
            train_benchmark("train_sequential", "{source}__{target}")
        wildcard_constraints:
            target=off_diagonal_target(TASKS),
        params:
            args=train_args,
            io=sequential_io_args,
            state=train_state,
            env=env_prefix(),
            runtime_opts=runtime_args,
        threads: JOB_THREADS
        retries: 2
        resources:
            gpu=1,
            mem_mb=16000,
            runtime=240,
        conda:
            CONDA_ENV
        shell:
            "{params.env} mvlpt train --task {wildcards.target:q} {params.io} {params.args} {params.runtime_opts} "
            "--state {params.state:q} > {log:q} 2>&1"
