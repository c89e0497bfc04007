# Names, input functions and params of multitask.smk (the multitask study).


MT = vocabulary.multitask_settings(config.get("multitask"), METHODS)
MT_METHODS = list(MT["methods"])
MT_GROUPS = layout.MULTITASK_GROUPS.template(RESULTS)
# SoftCPT's loss is a softmax per task (its paper's); the other methods keep the study's head. Its own train options
# (multitask.task_conditioned_train; protocol reference: SoftCPT's setting, mvlpt.study.protocol) go over the study's.
MT_TRAIN = {m: ({**TRAIN_RESULT, "head": "per_task", **MT["task_conditioned_train"]} if vocabulary.METHODS[m].task_conditioned
                else TRAIN_RESULT) for m in MT_METHODS}


def multitask_plan_message():
    """How many training jobs the multitask study adds, in one line (the Snakefile prints it)."""
    return vocabulary.multitask_plan_message(len(TASKS), MT, len(SEEDS), STACK)


def multitask_group_inputs(wildcards=None):
    """What the groups are chosen from: the pairwise gain matrices (strategy gain), the similarity
    matrix (strategy similarity), the predictor's matrices (strategy predictor)."""
    strategies = {s for m in MT_METHODS for _, s in vocabulary.multitask_runs(m, MT)}
    pairwise = [m for m in MT_METHODS if not vocabulary.METHODS[m].multitask_only]
    inputs = {}
    if "gain" in strategies:
        inputs["gain"] = [layout.MATRIX.template(TABLES_DIR, m, "gain", "csv") for m in pairwise]
    if "similarity" in strategies:
        inputs["similarity"] = layout.SIMILARITY.template(SIMILARITY_DIR, MT["similarity"], "csv")
    if "predictor" in strategies:
        p = MT["predictor"]
        inputs["predictor"] = ([layout.PROMPT_PREDICTOR.template(PREDICTORS_DIR, m, p, "csv") for m in pairwise]
                               if vocabulary.PREDICTORS[p].per_method else layout.PREDICTOR.template(PREDICTORS_DIR, p, "csv"))
    return inputs


_GROUPS_CACHE = {}


def multitask_groups():
    """The chosen groups (after the checkpoint has run): a DataFrame of mvlpt.transfer.grouping.read_groups."""
    path = checkpoints.multitask_groups.get().output[0]
    stamp = os.stat(path).st_mtime_ns
    if _GROUPS_CACHE.get("stamp") != stamp:
        from mvlpt.transfer.grouping import read_groups

        _GROUPS_CACHE.update(stamp=stamp, groups=read_groups(path))
    return _GROUPS_CACHE["groups"]


def group_tasks(wildcards):
    """The training tasks of group ``wildcards.group`` (config order)."""
    rows = multitask_groups()
    rows = rows[rows["group"] == wildcards.group]
    if rows.empty:
        raise WorkflowError(f"group {wildcards.group} is not in {MT_GROUPS}; it was chosen by an earlier run whose tables have changed.")
    return str(rows["tasks"].iloc[0]).split("+")


def mt_train_args(wildcards):
    return method_args(wildcards.method, MT_TRAIN[wildcards.method])


def mt_state(wildcards, kind, seeds=None):
    """Resumable-state file of a multitask training job (seeds: the job's, by default)."""
    seeds = job_seeds(wildcards) if seeds is None else seeds
    averaged = ["averaged"] if kind == "init" and MT["source_prompt"] == "averaged" else []  # (older tags unchanged)
    tag = state_tag(mt_train_args(wildcards), metric_args(), seeds, kind, *averaged)
    where = f"{wildcards.group}/{wildcards.target}" if hasattr(wildcards, "target") else wildcards.group
    stem = f"seeds{'-'.join(map(str, seeds))}"
    return layout.MULTITASK_STATE.template(CACHE, wildcards.method, kind, where, stem, tag)


def group_prompt(method, group, seed):
    return layout.GROUP_PROMPT.template(RESULTS, method, group, seed)


def target_source_prompts(wildcards):
    """The source prompt files a target run of mode init reads: its seeds' own, or the group's averaged one."""
    if MT["source_prompt"] == "averaged":
        return [layout.GROUP_PROMPT_AVERAGED.template(RESULTS, wildcards.method, wildcards.group)]
    return [group_prompt(wildcards.method, wildcards.group, s) for s in job_seeds(wildcards)]


def target_init_prompt(wildcards):
    """--init-from of a target run of mode init (a path with mvlpt's {seed} slot when stacking, unless averaged)."""
    if MT["source_prompt"] == "averaged":
        return layout.GROUP_PROMPT_AVERAGED.template(RESULTS, wildcards.method, wildcards.group)
    return group_prompt(wildcards.method, wildcards.group, seed_slot(wildcards))


def mt_result(method, mode, group, target, seed):
    return layout.MULTITASK_RESULT.template(RESULTS, method, mode, group, target, seed)


def task_args(tasks):
    return q(a for t in tasks for a in ("--task", t))


def multitask_results(wildcards=None):
    """Every multitask result the table reads (known once the groups are): init results per seed, joint folders."""
    out = set()
    for row in multitask_groups().itertuples():
        if row.mode == "init":
            out.update(mt_result(row.method, "init", row.group, row.target, s) for s in SEEDS)
        else:
            out.add(layout.MULTITASK_JOINT.template(RESULTS, row.method, row.group))
    return sorted(out)


def multitask_baselines(wildcards=None):
    """The single-task baselines the multitask results are compared with (study.Method.baseline): of every
    target (with strategy fixed, the tasks other than its `sources`)."""
    methods = dict.fromkeys(vocabulary.METHODS[m].baseline or m for m in MT_METHODS)
    targets = [t for t in TASKS if t not in set(MT.get("sources") or ())]
    return [result_path(m, t, t, s) for m in methods for t in targets for s in SEEDS]


def mt_log(job):
    return job_log(f"multitask/{job}")


def mt_benchmark(job):
    return job_benchmark(f"multitask/{job}")
