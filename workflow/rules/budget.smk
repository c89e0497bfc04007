# The budgeted, adaptive study (docs/budget.md; issue 26): a share of the pairs, chosen in rounds. Entry point:
#   snakemake budgeted --cores N
#
# Round 0 trains the baselines (the diagonal) and the initial design's pairs; every later round is the
# checkpoint `budget_round`: `mvlpt budget select` reads the results of the pairs the earlier rounds chose,
# completes the method's gain matrix (mvlpt.transfer.completion) and writes the next round's pairs, ranked,
# to results/budget/{method}/round{r}.csv. Snakemake re-evaluates the DAG after each round, so a round's
# training jobs appear once the round before it has run. The training jobs are the full study's own
# (train.smk, zero_epoch.smk: the same result files), so a joint run still serves both directions, stacked
# seeds still train together, and a rerun with a larger budget (the config's `budget.pairs`) keeps every
# round file and every finished job: it trains more of the last round's list and the rounds after it.
# `budget_complete` then writes the completed matrix with intervals, the best source per target and the
# progress by round (mvlpt budget complete).

include: "functions/budget.smk"


checkpoint budget_round:
    input:
        unpack(budget_round_inputs),
    output:
        layout.BUDGET_ROUND.template(BUDGET_DIR),
    log:
        job_log("budget/{method}/round{round}"),
    wildcard_constraints:
        round=r"\d+",
    params:
        args=budget_select_args,
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt budget select {params.args} --out {output:q} > {log:q} 2>&1"


rule budget_complete:
    input:
        unpack(budget_complete_inputs),
    output:
        budget_outputs(reported=True),
    log:
        job_log("budget/{method}/complete"),
    params:
        args=budget_complete_args,
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt budget complete {params.args} > {log:q} 2>&1"


rule budgeted:
    input:
        budget_targets(),
