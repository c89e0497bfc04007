# The zero-epoch transfer measure (config `mode: zero_epoch`; mvlpt.zero_epoch, docs/groundtruth.md):
# every off-diagonal (source, target) cell is the source's baseline prompt (train_single's prompt file)
# applied to the target's validation and test sets with the target's class names, with no training on
# the target. One job per (method, source, target), all seeds stacked (or one per seed); its result
# lands where a trained pair's would, {results_dir}/{method}/{source}__{target}/seed{seed}.json, so the
# tables, gains, intervals and figures of the study are computed from it unchanged.

if MODE == "zero_epoch":

    rule transfer_zero_epoch:
        input:
            unpack(sequential_inputs),
        output:
            seed_paths(f"{RESULTS}/{{method}}/{{source}}__{{target}}/seed{{seed}}.json"),
        log:
            f"{LOGS}/transfer_zero_epoch/{{method}}/{{source}}__{{target}}/{SEED_STEM}.log",
        benchmark:
            f"{BENCHMARKS}/transfer_zero_epoch/{{method}}/{{source}}__{{target}}/{SEED_STEM}.tsv"
        wildcard_constraints:
            target=off_diagonal_target(TASKS),
        params:
            args=train_args,
            io=sequential_io_args,
            env=env_prefix(),
            runtime_opts=runtime_args,
        threads: JOB_THREADS
        retries: 2
        resources:
            gpu=1,
            mem_mb=16000,
            runtime=60,
        conda:
            CONDA_ENV
        shell:
            "{params.env} mvlpt train --zero-epoch --task {wildcards.target:q} {params.io} {params.args} {params.runtime_opts} "
            "> {log:q} 2>&1"
