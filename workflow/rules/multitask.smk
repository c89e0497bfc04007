# The multitask study (docs/multitask.md; issue 16): from pairs to groups. Entry point:
#   snakemake multitask        (trains what the pairwise study and the chosen groups need)
#
# 1. `multitask_groups` (a checkpoint) chooses, per method, mode, strategy and target, the group of
#    source tasks (every other task; the top-k by measured pairwise gain, by a similarity measure, by a
#    transferability predictor; k random ones) from the pairwise tables, which exist only once the
#    pairwise study has run: the jobs below are known only after it (Snakemake re-evaluates the DAG).
# 2. mode init (the paper's (i)): `train_group_source` trains one prompt on the union of a group
#    (chosen on the mean validation metric), `train_group_target` fine-tunes the target from it (each seed from
#    its own seed's prompt, or, with multitask.source_prompt: averaged, every seed from `average_group_source`'s).
#    mode joint (the paper's (ii)): `train_group_joint` trains the target with its group, best checkpoint
#    per task: one run serves every member (its output is a folder, one result per member and seed).
#    SoftCPT trains once, jointly over all the configured tasks.
# 3. `multitask_table` and `multitask_figure`: baseline vs every strategy, per target and on average.
#
# A group is named by study.group_id (a hash of its task set), so a job's identity is its task set: the
# training jobs read their task lists from groups.csv but do not take it as an input, and rewriting
# groups.csv with the same content (`--forcerun multitask_groups`) retrains nothing.

include: "functions/multitask.smk"


checkpoint multitask_groups:
    input:
        unpack(multitask_group_inputs),
    output:
        MT_GROUPS,
    log:
        mt_log("groups"),
    params:
        args=lambda wildcards, input: q(
            ["--tasks", *TASKS, "--methods", *MT_METHODS, "--modes", *MT["modes"], "--strategies", *MT["strategies"],
             "--k", MT["k"], "--seed", MT["seed"]]
            + (["--sources", *MT["sources"]] if MT.get("sources") else [])
            + (["--gain", *input.gain] if "gain" in input.keys() else [])
            + (["--similarity", input.similarity, "--measure", MT["similarity"]] if "similarity" in input.keys() else [])
            + (["--predictor", *([input.predictor] if isinstance(input.predictor, str) else input.predictor),
                "--predictor-name", MT["predictor"]] if "predictor" in input.keys() else [])
        ),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt multitask groups {params.args} --out {output:q} > {log:q} 2>&1"


rule train_group_source:
    input:
        unpack(lambda wildcards: train_inputs(wildcards.method, group_tasks(wildcards), job_seeds(wildcards))),
    output:
        seed_paths(layout.GROUP_PROMPT.template(RESULTS)),
    log:
        mt_log(f"source/{{method}}/{{group}}/{SEED_STEM}"),
    benchmark:
        mt_benchmark(f"source/{{method}}/{{group}}/{SEED_STEM}")
    wildcard_constraints:
        method=alternation(MT_METHODS),
        group=GROUP_RE,
    params:
        tasks=lambda wildcards: task_args(group_tasks(wildcards)),
        io=lambda wildcards: " ".join([
            seed_args(job_seeds(wildcards)),
            split_args(group_tasks(wildcards), seed_slot(wildcards)),
            q(["--save-group-prompt", group_prompt(wildcards.method, wildcards.group, seed_slot(wildcards))]),
        ]),
        args=mt_train_args,
        state=lambda wildcards: mt_state(wildcards, "source"),
        metric=metric_args(),
        runtime_opts=runtime_args,
    threads: JOB_THREADS
    retries: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=480,
    conda:
        CONDA_ENV
    shell:
        "mvlpt train {params.metric} {params.tasks} {params.io} {params.args} {params.runtime_opts} --state {params.state:q} > {log:q} 2>&1"


# multitask.source_prompt: averaged (the reference's scripts/avg_ckpt.py): the seeds' source prompts of a group
# averaged into the one prompt every seed's target run starts from
rule average_group_source:
    input:
        lambda wildcards: [group_prompt(wildcards.method, wildcards.group, s) for s in SEEDS],
    output:
        layout.GROUP_PROMPT_AVERAGED.template(RESULTS),
    log:
        mt_log("source/{method}/{group}/averaged"),
    wildcard_constraints:
        method=alternation(MT_METHODS),
        group=GROUP_RE,
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt multitask average --prompt {input:q} --out {output:q} > {log:q} 2>&1"


rule train_group_target:
    input:
        unpack(lambda wildcards: {
            **train_inputs(wildcards.method, [wildcards.target], job_seeds(wildcards)),
            "prompts": target_source_prompts(wildcards),
        }),
    output:
        seed_paths(layout.MULTITASK_RESULT.template(RESULTS, mode="init")),
    log:
        mt_log(f"init/{{method}}/{{group}}/{{target}}/{SEED_STEM}"),
    benchmark:
        mt_benchmark(f"init/{{method}}/{{group}}/{{target}}/{SEED_STEM}")
    wildcard_constraints:
        method=alternation(MT_METHODS),
        group=GROUP_RE,
    params:
        io=lambda wildcards: " ".join([
            seed_args(job_seeds(wildcards)),
            split_args([wildcards.target], seed_slot(wildcards)),
            q(["--init-from", target_init_prompt(wildcards)]),
            pair_args("--output", [(wildcards.target, mt_result(wildcards.method, "init", wildcards.group, wildcards.target,
                                                                  seed_slot(wildcards)))]),
        ]),
        args=mt_train_args,
        state=lambda wildcards: mt_state(wildcards, "init"),
        metric=metric_args(),
        runtime_opts=runtime_args,
    threads: JOB_THREADS
    retries: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    conda:
        CONDA_ENV
    shell:
        "mvlpt train {params.metric} --task {wildcards.target:q} {params.io} {params.args} {params.runtime_opts} --state {params.state:q} > {log:q} 2>&1"


# One process for all seeds (stacked, whatever stack_seeds says): its output is one folder,
# {group}/{member}/seed{seed}.json for every member of the group.
rule train_group_joint:
    input:
        unpack(lambda wildcards: train_inputs(wildcards.method, group_tasks(wildcards), SEEDS)),
    output:
        directory(layout.MULTITASK_JOINT.template(RESULTS)),
    log:
        mt_log("joint/{method}/{group}"),
    benchmark:
        mt_benchmark("joint/{method}/{group}")
    wildcard_constraints:
        method=alternation(MT_METHODS),
        group=GROUP_RE,
    params:
        tasks=lambda wildcards: task_args(group_tasks(wildcards)),
        io=lambda wildcards: " ".join([
            seed_args(SEEDS),
            split_args(group_tasks(wildcards), "{seed}"),
            pair_args("--output", [(t, mt_result(wildcards.method, "joint", wildcards.group, t, "{seed}"))
                                    for t in group_tasks(wildcards)]),
        ]),
        args=mt_train_args,
        state=lambda wildcards: mt_state(wildcards, "joint", SEEDS),
        metric=metric_args(),
        runtime_opts=runtime_args,
    threads: JOB_THREADS
    retries: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=480,
    conda:
        CONDA_ENV
    shell:
        "mvlpt train {params.metric} {params.tasks} {params.io} {params.args} {params.runtime_opts} --state {params.state:q} > {log:q} 2>&1"


rule multitask_table:
    input:
        groups=MT_GROUPS,
        results=multitask_results,
        baselines=multitask_baselines,
    output:
        table=report(table("multitask"), caption="../report/multitask.rst", category="Multitask"),
        summary=report(table("multitask_summary"), caption="../report/multitask_summary.rst", category="Multitask"),
    log:
        mt_log("table"),
    params:
        args=lambda wildcards: q(["--results-dir", RESULTS, "--seeds", *SEEDS, "--n-boot", ANALYSIS["n_boot"],
                                  "--level", ANALYSIS["level"], "--boot-seed", ANALYSIS["seed"]]
                                 + (["--source-prompt", MT["source_prompt"]] if MT.get("source_prompt") else [])),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt multitask table --groups {input.groups:q} {params.args} --out {output.table:q} "
        "--summary-out {output.summary:q} > {log:q} 2>&1"


rule multitask_figure:
    input:
        table("multitask_summary"),
    output:
        png=report(layout.FIGURE.template(FIGURES_DIR, "multitask", "png"), caption="../report/multitask_figure.rst",
                   category="Multitask", labels={"figure": "multitask gain"}),
        pdf=layout.FIGURE.template(FIGURES_DIR, "multitask", "pdf"),
    log:
        mt_log("figure"),
    localrule: True
    conda:
        CONDA_ENV
    shell:
        "mvlpt multitask figure --summary {input:q} --out {output.png:q} > {log:q} 2>&1"


rule multitask:
    input:
        table("multitask"),
        table("multitask_summary"),
        [layout.FIGURE.template(FIGURES_DIR, "multitask", ext) for ext in ("png", "pdf")],
