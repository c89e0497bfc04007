# Analysis of the transfer study: tables, task similarity, correlations, figures (issue #4).
#
# Names and input functions are in common.smk (section "Analysis"); the measures, table names and
# the defaults of the `similarity` and `analysis` config sections are mvlpt.study's (config/README.md).
# Entry points: `snakemake analysis` (every table and figure; trains what is missing),
#               `snakemake figures` (every figure from the results that exist now; never trains).

# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------
rule collect_results:
    input:
        all_results(),
        reference_results(),
    output:
        runs=report(f"{TABLES_DIR}/runs.csv", caption="../report/runs.rst", category="Tables"),
        reference=report(f"{TABLES_DIR}/reference.csv", caption="../report/reference.rst", category="Tables"),
        baselines=report(f"{TABLES_DIR}/baselines.csv", caption="../report/baselines.rst", category="Tables"),
        reference_parquet=expand(f"{TABLES_DIR}/{{name}}.parquet", name=study.REFERENCE_TABLE_NAMES),
        pairs=report(f"{TABLES_DIR}/pairs.csv", caption="../report/pairs.rst", category="Tables"),
        best_source=report(f"{TABLES_DIR}/best_source.csv", caption="../report/best_source.rst", category="Tables"),
        source_gain=report(f"{TABLES_DIR}/source_gain.csv", caption="../report/source_gain.rst", category="Tables"),
        target_gain=report(f"{TABLES_DIR}/target_gain.csv", caption="../report/target_gain.rst", category="Tables"),
        gain_summary=report(f"{TABLES_DIR}/gain_summary.csv", caption="../report/gain_summary.rst", category="Transfer"),
        decomposition=report(f"{TABLES_DIR}/decomposition.csv", caption="../report/decomposition.rst", category="Transfer"),
        selection=report(f"{TABLES_DIR}/selection.csv", caption="../report/selection.rst", category="Tables"),
        parquet=expand(f"{TABLES_DIR}/{{name}}.parquet", name=study.TABLE_NAMES),
        matrices=expand(f"{TABLES_DIR}/matrices/{{method}}_{{stat}}.{{ext}}", method=METHODS, stat=study.MATRIX_STATS, ext=["csv", "parquet"]),
    log:
        f"{LOGS}/analysis/collect_results.log",
    params:
        results=results_dir_of,
        out=tables_dir_of,
        selection=_study_selection(),
        stats=q(["--level", ANALYSIS["level"], "--fdr", ANALYSIS["fdr"]]),
        reference=reference_dir_of,
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt collect --results-dir {params.results:q} --out-dir {params.out:q} {params.selection} {params.stats} "
        "--reference-dir {params.reference:q} > {log:q} 2>&1"


# What the study can resolve: the smallest detectable gain with its seeds and test sets, the seeds a gain needs.
rule power:
    input:
        pairs=f"{TABLES_DIR}/pairs.parquet",
        runs=f"{TABLES_DIR}/runs.parquet",
    output:
        csv=report(f"{TABLES_DIR}/power.csv", caption="../report/power.rst", category="Transfer"),
        parquet=f"{TABLES_DIR}/power.parquet",
    log:
        f"{LOGS}/analysis/power.log",
    params:
        tables=lambda wildcards, input: os.path.dirname(input.pairs),
        level=q([ANALYSIS["level"]]),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt power --tables {params.tables:q} --level {params.level} --out {output.csv:q} > {log:q} 2>&1"


# ------------------------------------------------------------------------------------------------
# Task similarity: one embedding file per task and kind (N encodings), one job per measure
# ------------------------------------------------------------------------------------------------
rule embed_task_images:
    input:
        embed_image_inputs,
    output:
        f"{EMBED_DIR}/{{task}}.images.npz",
    log:
        f"{LOGS}/analysis/embed_images/{{task}}.log",
    wildcard_constraints:
        task=alternation(TASKS),
    params:
        args=embed_image_args,
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    conda:
        CONDA_ENV
    shell:
        "mvlpt embed --task {wildcards.task:q} --kind images --out {output:q} {params.args} > {log:q} 2>&1"


rule embed_task_labels:
    output:
        f"{EMBED_DIR}/{{task}}.labels.npz",
    log:
        f"{LOGS}/analysis/embed_labels/{{task}}.log",
    wildcard_constraints:
        task=alternation(TASKS),
    params:
        args=embed_label_args,
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        CONDA_ENV
    shell:
        "mvlpt embed --task {wildcards.task:q} --kind labels --out {output:q} {params.args} > {log:q} 2>&1"


# One rule for every measure of mvlpt.study.MEASURES: its input is the embeddings of the measure's
# kind (images or labels), its options come from the config's `similarity` section.
rule similarity:
    input:
        measure_embeddings,
    output:
        csv=report(f"{SIMILARITY_DIR}/{{measure}}.csv", caption="../report/similarity.rst", category="Similarity",
                   labels={"table": "task similarity", "measure": "{measure}"}),
        parquet=f"{SIMILARITY_DIR}/{{measure}}.parquet",
    log:
        f"{LOGS}/analysis/similarity_{{measure}}.log",
    wildcard_constraints:
        measure=alternation(MEASURES),
    params:
        args=measure_args,
        label=lambda wildcards: study.MEASURES[wildcards.measure].label,
        kind=lambda wildcards: study.MEASURES[wildcards.measure].kind,
        distance=lambda wildcards: study.MEASURES[wildcards.measure].distance,
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        CONDA_ENV
    shell:
        "mvlpt similarity --measure {wildcards.measure:q} --embeddings {input:q} {params.args} --out {output.csv:q} "
        "> {log:q} 2>&1"


# ------------------------------------------------------------------------------------------------
# Correlations of gain with similarity
# ------------------------------------------------------------------------------------------------
rule correlate_gain_similarity:
    input:
        pairs=f"{TABLES_DIR}/pairs.parquet",
        runs=f"{TABLES_DIR}/runs.parquet",
        similarity=similarity_tables(),
    output:
        csv=report(f"{TABLES_DIR}/correlations.csv", caption="../report/correlations.rst", category="Correlations"),
        parquet=f"{TABLES_DIR}/correlations.parquet",
    log:
        f"{LOGS}/analysis/correlate_gain_similarity.log",
    params:
        args=correlate_args(),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt correlate --pairs {input.pairs:q} --runs {input.runs:q} --similarity {input.similarity:q} {params.args} --out {output.csv:q} > {log:q} 2>&1"


# ------------------------------------------------------------------------------------------------
# Figures (PNG in the report, PDF next to it)
# ------------------------------------------------------------------------------------------------
# One rule for the gain and its pair-specific part (interaction): the matrix, and its q-values to frame
# the cells that are distinguishable from noise.
rule gain_heatmap:
    input:
        matrix=f"{TABLES_DIR}/matrices/{{method}}_{{stat}}.parquet",
        q=f"{TABLES_DIR}/matrices/{{method}}_{{stat}}_q.parquet",
        reference=f"{TABLES_DIR}/baselines.parquet",  # the strip: baseline, zero-shot, linear probe per target
    output:
        png=report(f"{FIGURES_DIR}/{{stat}}_{{method}}.png", caption="../report/gain_heatmap.rst", category="Transfer",
                   labels={"figure": "{stat} heatmap", "method": "{method}"}),
        pdf=f"{FIGURES_DIR}/{{stat}}_{{method}}.pdf",
    log:
        f"{LOGS}/analysis/gain_heatmap/{{stat}}_{{method}}.log",
    wildcard_constraints:
        method=alternation(METHODS),
        stat="gain|interaction",
    params:
        cluster=cluster_flag(),
        tasks=q(TASKS),
        level=q([ANALYSIS["level"]]),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt plot gain-heatmap --matrix {input.matrix:q} --q-matrix {input.q:q} --reference {input.reference:q} --stat {wildcards.stat} --level {params.level} "
        "--method {wildcards.method:q} --tasks {params.tasks} {params.cluster} --out {output.png:q} > {log:q} 2>&1"


rule similarity_heatmap:
    input:
        f"{SIMILARITY_DIR}/{{measure}}.parquet",
    output:
        png=report(f"{FIGURES_DIR}/similarity_{{measure}}.png", caption="../report/similarity_heatmap.rst",
                   category="Similarity", labels={"figure": "similarity heatmap", "measure": "{measure}"}),
        pdf=f"{FIGURES_DIR}/similarity_{{measure}}.pdf",
    log:
        f"{LOGS}/analysis/similarity_heatmap/{{measure}}.log",
    wildcard_constraints:
        measure=alternation(MEASURES),
    params:
        cluster=cluster_flag(),
        tasks=q(TASKS),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt plot similarity-heatmap --similarity {input:q} --measure {wildcards.measure} --tasks {params.tasks} {params.cluster} --out {output.png:q} > {log:q} 2>&1"


rule gain_scatter:
    input:
        pairs=f"{TABLES_DIR}/pairs.parquet",
        similarity=similarity_tables(),
    output:
        png=report(f"{FIGURES_DIR}/scatter_{{method}}.png", caption="../report/gain_scatter.rst", category="Correlations",
                   labels={"figure": "gain vs similarity", "method": "{method}"}),
        pdf=f"{FIGURES_DIR}/scatter_{{method}}.pdf",
    log:
        f"{LOGS}/analysis/gain_scatter/{{method}}.log",
    wildcard_constraints:
        method=alternation(METHODS),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt plot scatter --pairs {input.pairs:q} --similarity {input.similarity:q} --method {wildcards.method:q} --out {output.png:q} > {log:q} 2>&1"


rule summary_figure:
    input:
        pairs=f"{TABLES_DIR}/pairs.parquet",
        correlations=f"{TABLES_DIR}/correlations.parquet",
    output:
        png=report(f"{FIGURES_DIR}/summary.png", caption="../report/summary.rst", category="Transfer",
                   labels={"figure": "methods compared"}),
        pdf=f"{FIGURES_DIR}/summary.pdf",
    log:
        f"{LOGS}/analysis/summary_figure.log",
    params:
        level=q([ANALYSIS["level"]]),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt plot summary --pairs {input.pairs:q} --correlations {input.correlations:q} --level {params.level} "
        "--out {output.png:q} > {log:q} 2>&1"


rule analysis:
    input:
        analysis_targets(),


# Every figure from the results that exist now (no training, no encoding). It has no input and no
# output on purpose: Snakemake runs it every time it is asked for, and it never pulls training
# jobs into the DAG. Similarity heatmaps and scatters need results/similarity/*.csv to exist.
rule figures:
    log:
        f"{LOGS}/analysis/figures.log",
    params:
        results=RESULTS,
        out=FIGURES_DIR,
        similarity=SIMILARITY_DIR,
        selection=_study_selection(),
        cluster=cluster_flag(),
        resampling=resampling_args(),  # as rule correlate_gain_similarity: the same confidence intervals
        fdr=q(["--fdr", ANALYSIS["fdr"]]),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt figures --results-dir {params.results:q} --out-dir {params.out:q} --similarity-dir {params.similarity:q} "
        "{params.selection} {params.cluster} {params.resampling} {params.fdr} > {log:q} 2>&1"
