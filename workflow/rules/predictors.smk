# Transferability predictors (issue #15, docs/predictors.md): how much each source should help each
# target, from the frozen model alone, scored against the measured gains.
#
# Names (PREDICTORS, SHARED_PREDICTORS, PROMPT_PREDICTORS, PREDICTORS_DIR) are in common.smk; the
# predictors are mvlpt.study.PREDICTORS (the config's `predictors.names` picks some), the resampling
# settings are the `analysis` section's. Per task one more encoding (its labelled few-shot train
# images); then one job per shared predictor (zero-shot, similarity), one job per method for the
# predictors of its trained prompts (family "prompt": every source's baseline prompt over every
# target's few-shot split, one model load), one scoring job and one figure. Entry point:
# `snakemake predictors`.


# The study's pinned split files of every seed: the images the target's prompts are trained on.
rule embed_task_fewshot:
    input:
        lambda wildcards: [ancient(split_file(wildcards.task, s)) for s in SEEDS],
    output:
        f"{EMBED_DIR}/{{task}}.fewshot.npz",
    log:
        f"{LOGS}/analysis/embed_fewshot/{{task}}.log",
    wildcard_constraints:
        task=alternation(TASKS),
    params:
        args=f"{model_args(SIMILARITY['device'])} {q(['--batch-size', SIMILARITY['batch_size']])}",
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "mvlpt predict embed --task {wildcards.task:q} --split-files {input:q} --out {output:q} {params.args} > {log:q} 2>&1"


# One job per predictor; its .json records the seconds its computation took.
rule predictor:
    input:
        # the embedding files of every task it is computed from: {kind: [files]}, kinds fewshot, labels, images
        unpack(lambda wildcards: {k: embeddings(k) for k in study.PREDICTORS[wildcards.predictor].embedding_kinds}),
    output:
        csv=report(f"{PREDICTORS_DIR}/{{predictor}}.csv", caption="../report/predictor.rst", category="Predictors",
                   labels={"table": "predictor matrix", "predictor": "{predictor}"}),
        parquet=f"{PREDICTORS_DIR}/{{predictor}}.parquet",
        cost=f"{PREDICTORS_DIR}/{{predictor}}.json",
    log:
        f"{LOGS}/analysis/predictor_{{predictor}}.log",
    wildcard_constraints:
        predictor=alternation(SHARED_PREDICTORS),
    params:
        tasks=q(TASKS),
        files=lambda wildcards, input: " ".join(f"--{k} {q(input[k])}" for k in study.PREDICTORS[wildcards.predictor].embedding_kinds),
        options=q(["--shrinkage", SIMILARITY["shrinkage"], "--ridge", SIMILARITY["ridge"]]),  # for visual_frechet
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "mvlpt predict compute --predictor {wildcards.predictor:q} --tasks {params.tasks} {params.files} {params.options} "
        "--out {output.csv:q} > {log:q} 2>&1"


# One job per method: its trained prompts (the baseline runs' prompt files) over the few-shot splits.
# (defined only when some are asked for: a rule needs an output)
if PROMPT_PREDICTORS:
    rule prompt_predictors:
        input:
            prompts=lambda wildcards: [prompt_file(wildcards.method, t, s) for t in TASKS for s in SEEDS],
            splits=[ancient(split_file(t, s)) for t in TASKS for s in SEEDS],
        output:
            csv=[f"{PREDICTORS_DIR}/{{method}}/{p}.csv" for p in PROMPT_PREDICTORS],
            parquet=[f"{PREDICTORS_DIR}/{{method}}/{p}.parquet" for p in PROMPT_PREDICTORS],
            cost=[f"{PREDICTORS_DIR}/{{method}}/{p}.json" for p in PROMPT_PREDICTORS],
        log:
            f"{LOGS}/analysis/prompt_predictors_{{method}}.log",
        params:
            tasks=q(TASKS),
            names=q(PROMPT_PREDICTORS),
            out=lambda wildcards: q([f"{PREDICTORS_DIR}/{wildcards.method}"]),
            args=f"{model_args(SIMILARITY['device'])} {q(['--batch-size', SIMILARITY['batch_size']])}",
        resources:
            gpu=1,
            mem_mb=16000,
            runtime=30,
        conda:
            CONDA_ENV
        shell:
            "mvlpt predict prompts --method {wildcards.method:q} --tasks {params.tasks} --predictors {params.names} "
            "--prompts {input.prompts:q} --split-files {input.splits:q} --out-dir {params.out} {params.args} > {log:q} 2>&1"


rule score_predictors:
    input:
        runs=f"{TABLES_DIR}/runs.parquet",  # per-seed gains: the two-level bootstrap (targets, then seeds)
        predictors=expand(f"{PREDICTORS_DIR}/{{predictor}}.parquet", predictor=SHARED_PREDICTORS)
        + expand(f"{PREDICTORS_DIR}/{{method}}/{{predictor}}.parquet", method=METHODS, predictor=PROMPT_PREDICTORS),
        costs=expand(f"{PREDICTORS_DIR}/{{predictor}}.json", predictor=SHARED_PREDICTORS)
        + expand(f"{PREDICTORS_DIR}/{{method}}/{{predictor}}.json", method=METHODS, predictor=PROMPT_PREDICTORS),
    output:
        csv=report(f"{TABLES_DIR}/predictors.csv", caption="../report/predictors.rst", category="Predictors"),
        parquet=f"{TABLES_DIR}/predictors.parquet",
    log:
        f"{LOGS}/analysis/score_predictors.log",
    params:
        args=f"{q(['--n-boot', ANALYSIS['n_boot'], '--n-perm', ANALYSIS['n_perm'], '--seed', ANALYSIS['seed'], '--level', ANALYSIS['level']])} --methods {q(METHODS)}",
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt predict score --runs {input.runs:q} --predictors {input.predictors:q} {params.args} --out {output.csv:q} > {log:q} 2>&1"


rule predictors_figure:
    input:
        f"{TABLES_DIR}/predictors.parquet",
    output:
        png=report(f"{FIGURES_DIR}/predictors.png", caption="../report/predictors_figure.rst", category="Predictors",
                   labels={"figure": "predictors ranked"}),
        pdf=f"{FIGURES_DIR}/predictors.pdf",
    log:
        f"{LOGS}/analysis/predictors_figure.log",
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt predict plot --scores {input:q} --out {output.png:q} > {log:q} 2>&1"


rule predictors:
    input:
        expand(f"{PREDICTORS_DIR}/{{predictor}}.csv", predictor=SHARED_PREDICTORS),
        expand(f"{PREDICTORS_DIR}/{{method}}/{{predictor}}.csv", method=METHODS, predictor=PROMPT_PREDICTORS),
        f"{TABLES_DIR}/predictors.csv",
        expand(f"{FIGURES_DIR}/predictors.{{ext}}", ext=["png", "pdf"]),
