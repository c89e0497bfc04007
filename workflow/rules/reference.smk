# Reference rows (issue #22; docs/protocol.md "Reference rows"): what the frozen model gives without
# prompt learning, next to every prompt baseline in the tables and the gain heatmaps.
#
#   {results_dir}/reference/zeroshot/{task}.json               zero-shot CLIP, the task's templates (one per task)
#   {results_dir}/reference/linear_probe/{task}/seed{seed}.json logistic-regression probe on the few-shot split's
#                                                               train features, C chosen on its val images
#
# Both read (and, if missing, write) the frozen image-feature cache the CoOp runs use
# ({cache_dir}/features/...): when the study has the frozen_features jobs, they run after them and
# encode nothing. Inputs of rule collect_results (analysis.smk) and of the default target (common.smk:
# reference_results).

include: "functions/reference.smk"


rule reference_zeroshot:
    input:
        reference_feature_inputs,
    output:
        layout.REFERENCE_ZEROSHOT.template(REFERENCE_DIR),
    log:
        job_log("reference/zeroshot/{task}"),
    params:
        model=model_args(),
        cache=CACHE,
        metric=metric_args(),
        workers=runtime_workers,
    threads: JOB_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "mvlpt reference {params.metric} --kind zeroshot --task {wildcards.task:q} --cache-dir {params.cache:q} "
        "--workers {params.workers} {params.model} --out {output:q} > {log:q} 2>&1"


rule reference_linear_probe:
    input:
        reference_probe_inputs,
    output:
        layout.REFERENCE_PROBE.template(REFERENCE_DIR),
    log:
        job_log("reference/linear_probe/{task}/seed{seed}"),
    params:
        model=model_args(),
        cache=CACHE,
        metric=metric_args(),
        split=lambda wildcards: split_file(wildcards.task, wildcards.seed),
        workers=runtime_workers,
    threads: JOB_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "mvlpt reference {params.metric} --kind linear_probe --task {wildcards.task:q} --split-file {params.split:q} "
        "--seed {wildcards.seed} --cache-dir {params.cache:q} --workers {params.workers} {params.model} "
        "--out {output:q} > {log:q} 2>&1"
