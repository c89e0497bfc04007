# The mvlpt task-transferability study: prompt methods x all (source, target) task pairs x seeds,
# then tables, task similarity, correlations and figures.
#
#   snakemake --cores 2                                        offline demo (config/config.yaml)
#   snakemake --cores 8 --configfile config/elevater.yaml     the paper's study (see docs/workflow.md)
#
# Rules live in workflow/rules/*.smk; config keys are documented in config/README.md. The profile
# profiles/default (retries, rerun-incomplete, keep-going, failed logs) is loaded automatically.


include: "workflow/rules/config.smk"
include: "workflow/rules/recovery.smk"


configfile: readable_config_file("config/config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/predictors.smk"


# Before the first job (not in a dry-run, not when there is nothing to do): the preflight checks
# (config.smk; `preflight: false` skips them), then this run's record for recovery.smk.
onstart:
    run_preflight()
    register_run()


rule all:
    default_target: True
    input:
        study_targets(),
