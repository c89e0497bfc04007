# Studies inside the study (docs/shots.md, docs/multitask.md#the-papers-table-1), each the Snakefile as a
# Snakemake module with a config of its own (mvlpt.study.settings), its rules prefixed with its name:
#
# * `shots: [1, 5, 20]`: one study per shot count, `shots1`, `shots5`, `shots20`, each laid out as a
#   single-shot study below results/shots{N}/ (cache and logs likewise: mvlpt.study.layout.SHOT_STUDY), then
#   the tables across them (results/tables/shots.csv) and, with several counts, the figure of gain,
#   baseline and zero-shot against shots (results/figures/shots.png). `snakemake` builds every study and
#   those; `snakemake analysis|predictors|multitask` asks each study for its own.
# * `snakemake table1`: the paper's Table 1 setting (config section `table1`): source prompts trained on
#   the 11 CoOp data sets transferred to each of the 12 ELEVATER tasks that do not overlap with them, at
#   5 shots, below results/table1/ (mvlpt.study.layout.TABLE1_STUDY); the multitask tables and figure of
#   that study, with the paper's averages beside the rows whose setting is the paper's.

include: "functions/studies.smk"


if settings.shot_axis(config):  # the whole config checked before any study is made from it (common.smk otherwise)
    STUDY = check_config(config)


# Each study inside the study: the Snakefile as a module, its rules imported with its name as prefix.
for _name, _cfg in sub_study_modules().items():
    workflow.module(_name, snakefile=workflow.main_snakefile, config=_cfg)
    workflow.userule(rules=("*",), from_module=_name, name_modifier=f"{_name}_*")(lambda: None)


if settings.shot_axis(config):
    RESULTS = os.path.normpath(config["results_dir"])
    LOGS = layout.LOGS
    TABLES_DIR = layout.TABLES_DIR.template(RESULTS)
    FIGURES_DIR = layout.FIGURES_DIR.template(RESULTS)
    SHOTS_TABLE = layout.TABLE.template(TABLES_DIR, "shots", "csv")
    SHOTS_FIGURE = [layout.FIGURE.template(FIGURES_DIR, "shots", ext) for ext in ("png", "pdf")]
    study_targets = shot_axis_targets  # what `rule all` (the Snakefile) builds

    # One row per shot count and method: mean gain (with its interval), baseline, zero-shot and linear probe
    # over the study's targets, from each study's gain summary and baselines tables.
    rule shots_table:
        input:
            summaries=shots_table_inputs("gain_summary"),
            baselines=shots_table_inputs("baselines"),
        output:
            csv=report(SHOTS_TABLE, caption="../report/shots.rst", category="Shots"),
            parquet=layout.TABLE.template(TABLES_DIR, "shots", "parquet"),
        log:
            layout.LOG.template(LOGS, "analysis/shots_table"),
        params:
            studies=shots_study_args,
        localrule: True
        conda:
            "../envs/mvlpt.yaml"
        shell:
            "mvlpt shots table {params.studies} --out {output.csv:q} > {log:q} 2>&1"

    if len(settings.shot_counts(config)) > 1:

        rule shots_figure:
            input:
                layout.TABLE.template(TABLES_DIR, "shots", "parquet"),
            output:
                png=report(SHOTS_FIGURE[0], caption="../report/shots_figure.rst", category="Shots",
                           labels={"figure": "gain against shots"}),
                pdf=SHOTS_FIGURE[1],
            log:
                layout.LOG.template(LOGS, "analysis/shots_figure"),
            localrule: True
            conda:
                "../envs/mvlpt.yaml"
            shell:
                "mvlpt shots figure --table {input:q} --out {output.png:q} > {log:q} 2>&1"

    rule analysis:
        input:
            shot_study_inputs("analysis"),
            shots_targets(),

    rule predictors:
        input:
            shot_study_inputs("predictors"),

    rule multitask:
        input:
            shot_study_inputs("multitask"),


if table1_requested():

    rule table1:
        input:
            sub_inputs(layout.TABLE1_STUDY.relative(), "multitask"),
