# The mvlpt task-transferability study: prompt methods x all (source, target) task pairs x seeds,
# then tables, task similarity, correlations and figures.
#
#   snakemake --cores 2                                        offline demo (config/config.yaml)
#   snakemake --cores 8 --configfile config/elevater.yaml     the paper's study (see docs/workflow.md)
#
# Rules live in workflow/rules/*.smk; config keys are documented in config/README.md.

configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"


rule all:
    default_target: True
    input:
        study_targets(),
