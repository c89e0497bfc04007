# The zero-epoch transfer measure (config `mode: zero_epoch`; mvlpt.training.zero_epoch, docs/groundtruth.md):
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
            seed_paths(layout.RESULT.template(RESULTS)),
        log:
            train_log("transfer_zero_epoch", "{source}__{target}"),
        benchmark:
            train_benchmark("transfer_zero_epoch", "{source}__{target}")
        wildcard_constraints:
            target=off_diagonal_target(TASKS),
        params:
            args=train_args,
            io=sequential_io_args,
            metric=metric_args(),
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
            "mvlpt train --zero-epoch {params.metric} --task {wildcards.target:q} {params.io} {params.args} {params.runtime_opts} "
            "> {log:q} 2>&1"
