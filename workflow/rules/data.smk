# Data preparation per task: pinned few-shot splits, and CoOp's frozen image features.


include: "functions/data.smk"


# One split file per (task, seed): the few-shot train/val ids, so every method, pair and rerun
# trains on exactly the same images. Cheap (reads the task's index); grouped on SLURM.
rule fewshot_split:
    output:
        layout.SPLIT.template(CACHE, shots=SHOTS),
    log:
        job_log(f"fewshot_split/{{task}}/shots{SHOTS}_seed{{seed}}"),
    params:
        shots=SHOTS,
        data=q(["--data-dir", config["data_dir"]]) if config.get("data_dir") else "",
        policy=split_policy_args(),
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        CONDA_ENV
    shell:
        "mvlpt split --task {wildcards.task:q} --seed {wildcards.seed} --shots {params.shots} {params.data} {params.policy} "
        "--out {output:q} > {log:q} 2>&1"


# Frozen CLIP image features of one task (its test split and the few-shot splits of every seed),
# computed once and read by every CoOp run on the task. The feature files live under
# {cache_dir}/features/<model key>/<task>/ (keyed by model and sample ids); the marker says they
# are complete. Only in the DAG when CoOp is studied and train.cache_features is on.
rule frozen_features:
    input:
        [split_file("{task}", s) for s in SEEDS],
    output:
        layout.FEATURES_DONE.template(CACHE, shots=SHOTS),
    log:
        job_log(f"frozen_features/{{task}}.shots{SHOTS}"),
    params:
        splits=features_split_args,
        model=model_args(),
        cache=cache_dir_of,
        workers=runtime_workers,
    threads: JOB_THREADS
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "mvlpt features --task {wildcards.task:q} {params.splits} --cache-dir {params.cache:q} "
        "--workers {params.workers} {params.model} --done {output:q} > {log:q} 2>&1"
