# The mvlpt task-transferability study: prompt methods x all (source, target) task pairs x seeds,
# then tables, task similarity, correlations and figures.
#
#   snakemake --cores 2                                        offline demo (config/config.yaml)
#   snakemake --cores 8 --configfile config/elevater.yaml     the paper's study (see docs/workflow.md)
#
#   snakemake multitask --cores 2                              the multitask study (docs/multitask.md)
#   snakemake budgeted --cores 2                               the budgeted, adaptive study (docs/budget.md)
#
# Rules live in workflow/rules/*.smk (each with its functions in workflow/rules/functions/), every path
# in mvlpt/study/layout.py; config keys are documented in config/README.md. The profile
# profiles/default (retries, rerun-incomplete, keep-going, failed logs) is loaded automatically.


include: "workflow/rules/config.smk"
include: "workflow/rules/recovery.smk"


configfile: readable_config_file("config/config.yaml")


# `shots: [1, 5, 20]`: one study per shot count, each a module of this Snakefile (docs/shots.md); the
# tables and the figure across them, and the paper's Table 1 setting (`snakemake table1`), are
# workflow/rules/studies.smk's.
if shot_axis_study(config):

    include: "workflow/rules/studies.smk"

else:

    include: "workflow/rules/common.smk"
    include: "workflow/rules/data.smk"
    include: "workflow/rules/train.smk"
    include: "workflow/rules/zero_epoch.smk"
    include: "workflow/rules/reference.smk"
    include: "workflow/rules/analysis.smk"
    include: "workflow/rules/predictors.smk"
    include: "workflow/rules/multitask.smk"
    include: "workflow/rules/budget.smk"

    if not in_sub_study():

        include: "workflow/rules/studies.smk"

    # `snakemake multitask` (a dry-run too) says first how many training jobs the multitask study adds: its
    # groups are chosen from the pairwise tables, so Snakemake's own job table lists them only once those exist.
    if workflow.is_main_process and multitask_requested():
        print(f"{sub_study_name()}: " * in_sub_study() + multitask_plan_message(), file=sys.stderr)
    if workflow.is_main_process and budget_requested():
        print(f"{sub_study_name()}: " * in_sub_study() + budget_plan_message(), file=sys.stderr)


# Before the first job (not in a dry-run, not when there is nothing to do): the preflight checks
# (config.smk; `preflight: false` skips them), then this run's record for recovery.smk.
onstart:
    run_preflight()
    register_run()


rule all:
    default_target: True
    input:
        study_targets(),
