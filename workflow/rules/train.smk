# Training: the single-task baseline per (method, task), and every ordered (source, target) pair in
# the configured mode. Every result lands in its own file:
#   {results_dir}/{method}/{source}__{target}/seed{seed}.json   (source == target: the baseline)
#
# joint:      one run per unordered pair {a, b} (a before b in `tasks`) trains on both tasks and
#             writes both directions, a__b (target b) and b__a (target a); mvlpt keeps the best
#             validation checkpoint per target task.
# sequential: the baseline's best prompt on the source initialises a run on the target.
# zero_epoch: that prompt evaluated on the target untrained (workflow/rules/zero_epoch.smk).
#
# Seeds: with stack_seeds (default) one process trains every seed at once (mvlpt stacks them into
# one forward pass; results equal separate runs), else there is one job per seed (wildcard {seed}).
#
# Training jobs declare gpu=1 (counted only with --resources gpu=N locally; --gpus=1 on SLURM);
# without a GPU they run on the CPU. A failed job is retried and resumes from its --state file.
#
# params.args carries the options that change results (a change reruns the jobs); params.runtime_opts the
# runtime ones (train.compile, eval_batch_size, workers, ...), which never rerun a finished job.


include: "functions/train.smk"


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
        metric=metric_args(),
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
        "mvlpt train {params.metric} --task {wildcards.task:q} {params.io} {params.args} {params.runtime_opts} "
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
            metric=metric_args(),
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
            "mvlpt train {params.metric} --task {wildcards.a:q} --task {wildcards.b:q} {params.io} {params.args} {params.runtime_opts} "
            "--state {params.state:q} > {log:q} 2>&1"

elif MODE == "sequential":

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
            metric=metric_args(),
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
            "mvlpt train {params.metric} --task {wildcards.target:q} {params.io} {params.args} {params.runtime_opts} "
            "--state {params.state:q} > {log:q} 2>&1"
