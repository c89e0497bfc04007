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


rule train_single:
    input:
        unpack(single_inputs),
    output:
        results=seed_paths(f"{RESULTS}/{{method}}/{{task}}__{{task}}/seed{{seed}}.json"),
        prompts=seed_paths(f"{PROMPTS_DIR}/{{method}}/{{task}}/seed{{seed}}.safetensors"),
    log:
        f"{LOGS}/train_single/{{method}}/{{task}}/{SEED_STEM}.log",
    benchmark:
        f"{BENCHMARKS}/train_single/{{method}}/{{task}}/{SEED_STEM}.tsv"
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
            ab=seed_paths(f"{RESULTS}/{{method}}/{{a}}__{{b}}/seed{{seed}}.json"),
            ba=seed_paths(f"{RESULTS}/{{method}}/{{b}}__{{a}}/seed{{seed}}.json"),
        log:
            f"{LOGS}/train_joint/{{method}}/{{a}}__{{b}}/{SEED_STEM}.log",
        benchmark:
            f"{BENCHMARKS}/train_joint/{{method}}/{{a}}__{{b}}/{SEED_STEM}.tsv"
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

elif MODE == "sequential":

    rule train_sequential:
        input:
            unpack(sequential_inputs),
        output:
            seed_paths(f"{RESULTS}/{{method}}/{{source}}__{{target}}/seed{{seed}}.json"),
        log:
            f"{LOGS}/train_sequential/{{method}}/{{source}}__{{target}}/{SEED_STEM}.log",
        benchmark:
            f"{BENCHMARKS}/train_sequential/{{method}}/{{source}}__{{target}}/{SEED_STEM}.tsv"
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
