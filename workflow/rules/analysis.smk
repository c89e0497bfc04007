# Analysis of the transfer study: tables, task similarity, correlations, figures (issue #4).
#
# The measures, table names and the defaults of the `similarity` and `analysis` config sections are
# mvlpt.study.vocabulary's (config/README.md); every path is mvlpt.study.layout's (common.smk: table(), the *_DIR names).
# Entry points: `snakemake analysis` (every table and figure; trains what is missing),
#               `snakemake figures` (every figure from the results that exist now; never trains).

include: "functions/analysis.smk"


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------
rule collect_results:
    input:
        all_results(),
        reference_results(),
    output:
        runs=report_table("runs", "runs", "Tables"),
        reference=report_table("reference", "reference", "Tables"),
        baselines=report_table("baselines", "baselines", "Tables"),
        reference_parquet=[table(name, "parquet") for name in vocabulary.REFERENCE_TABLE_NAMES],
        pairs=report_table("pairs", "pairs", "Tables"),
        best_source=report_table("best_source", "best_source", "Tables"),
        source_gain=report_table("source_gain", "source_gain", "Tables"),
        target_gain=report_table("target_gain", "target_gain", "Tables"),
        gain_summary=report_table("gain_summary", "gain_summary", "Transfer"),
        decomposition=report_table("decomposition", "decomposition", "Transfer"),
        selection=report_table("selection", "selection", "Tables"),
        parquet=[table(name, "parquet") for name in vocabulary.TABLE_NAMES],
        matrices=[layout.MATRIX.template(TABLES_DIR, m, stat, ext) for m in METHODS for stat in vocabulary.MATRIX_STATS
                  for ext in ("csv", "parquet")],
    log:
        job_log("analysis/collect_results"),
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
        pairs=table("pairs", "parquet"),
        runs=table("runs", "parquet"),
    output:
        csv=report_table("power", "power", "Transfer"),
        parquet=table("power", "parquet"),
    log:
        job_log("analysis/power"),
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
        layout.EMBEDDING.template(CACHE, kind="images"),
    log:
        job_log("analysis/embed_images/{task}"),
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
        layout.EMBEDDING.template(CACHE, kind="labels"),
    log:
        job_log("analysis/embed_labels/{task}"),
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


# One rule for every measure of mvlpt.study.vocabulary.MEASURES: its input is the embeddings of the measure's
# kind (images or labels), its options come from the config's `similarity` section.
rule similarity:
    input:
        measure_embeddings,
    output:
        csv=report(layout.SIMILARITY.template(SIMILARITY_DIR, ext="csv"), caption="../report/similarity.rst",
                   category="Similarity", labels={"table": "task similarity", "measure": "{measure}"}),
        parquet=layout.SIMILARITY.template(SIMILARITY_DIR, ext="parquet"),
    log:
        job_log("analysis/similarity_{measure}"),
    wildcard_constraints:
        measure=alternation(MEASURES),
    params:
        args=measure_args,
        label=lambda wildcards: vocabulary.MEASURES[wildcards.measure].label,
        kind=lambda wildcards: vocabulary.MEASURES[wildcards.measure].kind,
        distance=lambda wildcards: vocabulary.MEASURES[wildcards.measure].distance,
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
        pairs=table("pairs", "parquet"),
        runs=table("runs", "parquet"),
        similarity=similarity_tables(),
    output:
        csv=report_table("correlations", "correlations", "Correlations"),
        parquet=table("correlations", "parquet"),
    log:
        job_log("analysis/correlate_gain_similarity"),
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
        matrix=layout.MATRIX.template(TABLES_DIR, ext="parquet"),
        q=layout.MATRIX.template(TABLES_DIR, stat="{stat}_q", ext="parquet"),
        reference=table("baselines", "parquet"),  # the strip: baseline, zero-shot, linear probe per target
    output:
        png=report(layout.HEATMAP_FIGURE.template(FIGURES_DIR, ext="png"), caption="../report/gain_heatmap.rst",
                   category="Transfer", labels={"figure": "{stat} heatmap", "method": "{method}"}),
        pdf=layout.HEATMAP_FIGURE.template(FIGURES_DIR, ext="pdf"),
    log:
        job_log("analysis/gain_heatmap/{stat}_{method}"),
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
        layout.SIMILARITY.template(SIMILARITY_DIR, ext="parquet"),
    output:
        png=report(layout.SIMILARITY_FIGURE.template(FIGURES_DIR, ext="png"), caption="../report/similarity_heatmap.rst",
                   category="Similarity", labels={"figure": "similarity heatmap", "measure": "{measure}"}),
        pdf=layout.SIMILARITY_FIGURE.template(FIGURES_DIR, ext="pdf"),
    log:
        job_log("analysis/similarity_heatmap/{measure}"),
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
        pairs=table("pairs", "parquet"),
        similarity=similarity_tables(),
    output:
        png=report(layout.SCATTER_FIGURE.template(FIGURES_DIR, ext="png"), caption="../report/gain_scatter.rst",
                   category="Correlations", labels={"figure": "gain vs similarity", "method": "{method}"}),
        pdf=layout.SCATTER_FIGURE.template(FIGURES_DIR, ext="pdf"),
    log:
        job_log("analysis/gain_scatter/{method}"),
    wildcard_constraints:
        method=alternation(METHODS),
    params:
        resampling=q(["--n-boot", ANALYSIS["n_boot"], "--seed", ANALYSIS["seed"]]),  # the fit's band
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt plot scatter --pairs {input.pairs:q} --similarity {input.similarity:q} --method {wildcards.method:q} "
        "{params.resampling} --out {output.png:q} > {log:q} 2>&1"


rule summary_figure:
    input:
        pairs=table("pairs", "parquet"),
        correlations=table("correlations", "parquet"),
    output:
        png=report(layout.FIGURE.template(FIGURES_DIR, "summary", "png"), caption="../report/summary.rst", category="Transfer",
                   labels={"figure": "methods compared"}),
        pdf=layout.FIGURE.template(FIGURES_DIR, "summary", "pdf"),
    log:
        job_log("analysis/summary_figure"),
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
        job_log("analysis/figures"),
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
