# Transferability predictors (issue #15, docs/predictors.md): how much each source should help each
# target, from the frozen model alone, scored against the measured gains.
#
# Names (PREDICTORS, SHARED_PREDICTORS, PROMPT_PREDICTORS, PREDICTORS_DIR) are in common.smk; the
# predictors are mvlpt.study.vocabulary.PREDICTORS (the config's `predictors.names` picks some), the resampling
# settings are the `analysis` section's. Per task one more encoding (its labelled few-shot train
# images); then one job per shared predictor (zero-shot, similarity), one job per method for the
# predictors of its trained prompts (family "prompt": every source's baseline prompt over every
# target's few-shot split, one model load), one scoring job and one figure. Entry point:
# `snakemake predictors`.


include: "functions/predictors.smk"


# The study's pinned split files of every seed: the images the target's prompts are trained on.
rule embed_task_fewshot:
    input:
        lambda wildcards: [ancient(split_file(wildcards.task, s)) for s in SEEDS],
    output:
        layout.EMBEDDING.template(CACHE, kind="fewshot"),
    log:
        job_log("analysis/embed_fewshot/{task}"),
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
        unpack(lambda wildcards: {k: embeddings(k) for k in vocabulary.PREDICTORS[wildcards.predictor].embedding_kinds}),
    output:
        csv=report(layout.PREDICTOR.template(PREDICTORS_DIR, ext="csv"), caption="../report/predictor.rst",
                   category="Predictors", labels={"table": "predictor matrix", "predictor": "{predictor}"}),
        parquet=layout.PREDICTOR.template(PREDICTORS_DIR, ext="parquet"),
        cost=layout.PREDICTOR.template(PREDICTORS_DIR, ext="json"),
    log:
        job_log("analysis/predictor_{predictor}"),
    wildcard_constraints:
        predictor=alternation(SHARED_PREDICTORS),
    params:
        tasks=q(TASKS),
        files=lambda wildcards, input: " ".join(f"--{k} {q(input[k])}" for k in vocabulary.PREDICTORS[wildcards.predictor].embedding_kinds),
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
            csv=[layout.PROMPT_PREDICTOR.template(PREDICTORS_DIR, predictor=p, ext="csv") for p in PROMPT_PREDICTORS],
            parquet=[layout.PROMPT_PREDICTOR.template(PREDICTORS_DIR, predictor=p, ext="parquet") for p in PROMPT_PREDICTORS],
            cost=[layout.PROMPT_PREDICTOR.template(PREDICTORS_DIR, predictor=p, ext="json") for p in PROMPT_PREDICTORS],
        log:
            job_log("analysis/prompt_predictors_{method}"),
        params:
            tasks=q(TASKS),
            names=q(PROMPT_PREDICTORS),
            out=lambda wildcards: q([os.path.dirname(layout.PROMPT_PREDICTOR.template(PREDICTORS_DIR, wildcards.method))]),
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
        runs=table("runs", "parquet"),  # per-seed gains: the two-level bootstrap (targets, then seeds)
        predictors=predictor_files("parquet"),
        costs=predictor_files("json"),
    output:
        csv=report(table("predictors"), caption="../report/predictors.rst", category="Predictors"),
        parquet=table("predictors", "parquet"),
    log:
        job_log("analysis/score_predictors"),
    params:
        args=f"{q(['--n-boot', ANALYSIS['n_boot'], '--n-perm', ANALYSIS['n_perm'], '--seed', ANALYSIS['seed'], '--level', ANALYSIS['level']])} --methods {q(METHODS)}",
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt predict score --runs {input.runs:q} --predictors {input.predictors:q} {params.args} --out {output.csv:q} > {log:q} 2>&1"


rule predictors_figure:
    input:
        table("predictors", "parquet"),
    output:
        png=report(layout.FIGURE.template(FIGURES_DIR, "predictors", "png"), caption="../report/predictors_figure.rst",
                   category="Predictors", labels={"figure": "predictors ranked"}),
        pdf=layout.FIGURE.template(FIGURES_DIR, "predictors", "pdf"),
    log:
        job_log("analysis/predictors_figure"),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt predict plot --scores {input:q} --out {output.png:q} > {log:q} 2>&1"


rule predictors:
    input:
        predictor_files("csv"),
        table("predictors"),
        [layout.FIGURE.template(FIGURES_DIR, "predictors", ext) for ext in ("png", "pdf")],
