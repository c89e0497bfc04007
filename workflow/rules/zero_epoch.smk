# The zero-epoch transfer measure (config `mode: zero_epoch`; mvlpt.training.zero_epoch, docs/groundtruth.md):
# every off-diagonal (source, target) cell is the source's baseline prompt (train_single's prompt file)
# applied to the target's validation and test sets with the target's class names, with no training on
# the target. One job per method evaluates every cell (all seeds stacked, or one job per seed): the imports,
# the frozen model and each target's data are paid once per method, not once per cell (nothing is trained,
# so a cell costs two evaluations). Each result lands where a trained pair's would,
# {results_dir}/{method}/{source}__{target}/seed{seed}.json, so the tables, gains, intervals and figures of
# the study are computed from it unchanged.


include: "functions/zero_epoch.smk"


if MODE == "zero_epoch":

    rule transfer_zero_epoch:
        input:
            unpack(zero_epoch_inputs),
        output:
            zero_epoch_outputs(),
        log:
            train_log("transfer_zero_epoch", "all_pairs"),
        benchmark:
            train_benchmark("transfer_zero_epoch", "all_pairs")
        params:
            args=train_args,
            io=zero_epoch_io_args,
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
            "mvlpt train --zero-epoch {params.metric} {params.io} {params.args} {params.runtime_opts} > {log:q} 2>&1"
