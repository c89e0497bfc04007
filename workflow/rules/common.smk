# Names, paths and input functions shared by every rule file; the study's vocabulary (methods and
# their properties, similarity measures, result layout, analysis defaults) comes from mvlpt.study.
#
# Kept cheap on purpose: on a cluster every job parses the Snakefile again, so nothing here globs
# the file system, loads data or imports torch. The config was read and checked by config.smk.

import hashlib
import json
import os
import re
import shlex

check_config(config)


# ------------------------------------------------------------------------------------------------
# Names and paths
# ------------------------------------------------------------------------------------------------
METHODS = list(config["methods"])
TASKS = list(config["tasks"])
SEEDS = [int(s) for s in config["seeds"]]
SHOTS = int(config["shots"])
MODE = config["mode"]
STACK = bool(config["stack_seeds"])
MODEL = config["model"]
TRAIN = dict(config["train"])
RESULTS = os.path.normpath(config["results_dir"])
CACHE = os.path.normpath(config["cache_dir"])

SPLITS_DIR = f"{CACHE}/splits"  # few-shot splits: {task}/shots{k}_seed{s}.json
FEATURES_DIR = f"{CACHE}/features"  # frozen image features (written by `mvlpt features`) + done markers
STATE_DIR = f"{CACHE}/state"  # resumable training states (not outputs: removed by mvlpt when a run ends)
PROMPTS_DIR = f"{RESULTS}/prompts"  # learned single-task prompts: {method}/{task}/seed{s}.safetensors
LOGS = "logs"
BENCHMARKS = f"{LOGS}/benchmarks"  # time and memory of training jobs (benchmarks/ holds the speed benchmark)

# The training options as `mvlpt train` reads them (the config's `train` section over its defaults).
TRAIN_CONFIG = TrainConfig.from_dict(TRAIN)
# Those that change results go into the training jobs' params (a change reruns the jobs); the runtime
# ones (TrainConfig.RUNTIME: compile, evaluation batch size, workers, ...) reach them through runtime_args.
TRAIN_RESULT = {k: v for k, v in TRAIN.items() if k not in TrainConfig.RUNTIME}
TRAIN_RUNTIME = {k: v for k, v in TRAIN.items() if k in TrainConfig.RUNTIME}
COMPILE_CACHE_DIR = f"{CACHE}/{COMPILE_CACHE}"  # train.compile: torch.compile's kernel cache, shared by every job

# CPU threads of a job that loads images: itself plus train.workers decoding processes.
JOB_THREADS = 1 + TRAIN_CONFIG.workers


def caches_image_features(method):
    """Whether runs of ``method`` read frozen image features computed once per task (`frozen_features`):
    the method leaves the image tower alone, and train.cache_features is on."""
    return study.METHODS[method].caches_image_features and TRAIN_CONFIG.cache_features

# `conda:` environment of every rule (paths are relative to the rule files in workflow/rules/).
CONDA_ENV = "../envs/mvlpt.yaml"


def alternation(names):
    """Regex matching exactly one of ``names``."""
    return "|".join(re.escape(str(n)) for n in names)


def joint_pair_constraints(tasks):
    """Wildcard constraints for rule train_joint, whose outputs are ``.../{a}__{b}/...`` and ``.../{b}__{a}/...``.

    They match only when ``a`` comes before ``b`` in ``tasks``, whichever of the two files is asked for,
    so every unordered pair has exactly one job (and one argument order: the config's). A name in
    first position is pinned by a look-ahead at the name after it (``a`` needs a later name, ``b`` an
    earlier one); in second position, where the name ends the folder, it needs nothing more. The
    regexes grow as n^2 / 2 names; look-ahead only keeps them short, which matters because Snakemake
    embeds them in the output patterns it re-scans for every job.
    """
    second = f"(?:{alternation(tasks)})(?=/)"
    a_alts, b_alts = [second], [second]
    for i, name in enumerate(tasks):
        x = re.escape(name)
        later, earlier = tasks[i + 1 :], tasks[:i]
        if later:  # a first: a__b with b later
            a_alts.append(f"{x}(?=__(?:{alternation(later)})/)")
        if earlier:  # b first: b__a with a earlier
            b_alts.append(f"{x}(?=__(?:{alternation(earlier)})/)")
    if len(tasks) < 2:
        never = "(?!)"  # no joint job
        return {"a": never, "b": never}
    return {"a": "|".join(a_alts), "b": "|".join(b_alts)}


def cache_dir_of(wildcards, output):
    """The cache directory of a features marker ``{cache}/features/{task}...done.json``."""
    return os.path.dirname(os.path.dirname(output[0]))


def results_dir_of(wildcards, output):
    """The results directory of a tables output ``{results}/tables/runs.csv``."""
    return os.path.dirname(os.path.dirname(output.runs))


def tables_dir_of(wildcards, output):
    return os.path.dirname(output.runs)


def off_diagonal_target(tasks):
    """Constraint for ``target`` in ``.../{source}__{target}/...``: any task except the source."""
    return "|".join(f"(?<!/{re.escape(t)}__){re.escape(t)}" for t in tasks)


def q(values):
    """Shell-quoted, space-separated."""
    return " ".join(shlex.quote(str(v)) for v in values)


# ------------------------------------------------------------------------------------------------
# File names
# ------------------------------------------------------------------------------------------------
def result_path(method, source, target, seed):
    return study.result_template(RESULTS, method, source, target, seed)


def result_files(method):
    """Every result file of ``method`` the study expects: all (source, target) pairs x seeds."""
    return [result_path(method, s, t, seed) for seed in SEEDS for s in TASKS for t in TASKS]


def all_results():
    return [f for m in METHODS for f in result_files(m)]


def split_file(task, seed):
    return f"{SPLITS_DIR}/{task}/shots{SHOTS}_seed{seed}.json"


def features_marker(task):
    return f"{FEATURES_DIR}/{task}.shots{SHOTS}.done.json"


def prompt_file(method, task, seed):
    return f"{PROMPTS_DIR}/{method}/{task}/seed{seed}.safetensors"


# ------------------------------------------------------------------------------------------------
# Seeds: stacked in one training process (stack_seeds: true) or one job per seed
# ------------------------------------------------------------------------------------------------
def seed_paths(template):
    """Output paths of a training rule from ``template``, which holds Snakemake wildcards and a ``{seed}``
    slot: one path per configured seed when seeds are stacked, else the ``{seed}`` wildcard itself."""
    if STACK:
        return [template.replace("{seed}", str(s)) for s in SEEDS]
    return [template]


# log/benchmark/state file stem of a training job
SEED_STEM = f"seeds{'-'.join(map(str, SEEDS))}" if STACK else "seed{seed}"


def job_seeds(wildcards):
    return SEEDS if STACK else [int(wildcards.seed)]


def seed_slot(wildcards):
    """What mvlpt gets in place of the seed in a path: its own ``{seed}`` placeholder when stacking."""
    return "{seed}" if STACK else wildcards.seed


# ------------------------------------------------------------------------------------------------
# Input functions and params
# ------------------------------------------------------------------------------------------------
def train_inputs(method, tasks, seeds):
    """Few-shot splits (+ the frozen image features, for a method that reads them) of ``tasks``.

    ``ancient``: caches are deterministic, so a re-created cache file never makes a finished run stale
    (the few-shot protocol and the model are in the path or in the params, which do trigger reruns).
    """
    inputs = {"splits": [ancient(split_file(t, s)) for t in tasks for s in seeds]}
    if caches_image_features(method):
        inputs["features"] = [ancient(features_marker(t)) for t in tasks]
    return inputs


def single_inputs(wildcards):
    return train_inputs(wildcards.method, [wildcards.task], job_seeds(wildcards))


def joint_inputs(wildcards):
    return train_inputs(wildcards.method, [wildcards.a, wildcards.b], job_seeds(wildcards))


def sequential_inputs(wildcards):
    seeds = job_seeds(wildcards)
    inputs = train_inputs(wildcards.method, [wildcards.target], seeds)
    inputs["prompts"] = [prompt_file(wildcards.method, wildcards.source, s) for s in seeds]
    return inputs


def _pair_args(flag, items):
    return " ".join(f"{flag} {shlex.quote(f'{task}={path}')}" for task, path in items)


def single_io_args(wildcards):
    """--seed/--split/--output/--save-prompt of a baseline job."""
    t, slot = wildcards.task, seed_slot(wildcards)
    return " ".join([
        q(a for s in job_seeds(wildcards) for a in ("--seed", s)),
        _pair_args("--split", [(t, split_file(t, slot))]),
        _pair_args("--output", [(t, result_path(wildcards.method, t, t, slot))]),
        _pair_args("--save-prompt", [(t, prompt_file(wildcards.method, t, slot))]),
    ])


def joint_io_args(wildcards):
    """A joint job trains on a and b and writes both directions: a__b (target b) and b__a (target a)."""
    a, b, slot, m = wildcards.a, wildcards.b, seed_slot(wildcards), wildcards.method
    return " ".join([
        q(x for s in job_seeds(wildcards) for x in ("--seed", s)),
        _pair_args("--split", [(a, split_file(a, slot)), (b, split_file(b, slot))]),
        _pair_args("--output", [(b, result_path(m, a, b, slot)), (a, result_path(m, b, a, slot))]),
    ])


def sequential_io_args(wildcards):
    src, tgt, slot, m = wildcards.source, wildcards.target, seed_slot(wildcards), wildcards.method
    return " ".join([
        q(x for s in job_seeds(wildcards) for x in ("--seed", s)),
        _pair_args("--split", [(tgt, split_file(tgt, slot))]),
        q(["--init-from", prompt_file(m, src, slot), "--source", src]),
        _pair_args("--output", [(tgt, result_path(m, src, tgt, slot))]),
    ])


def model_args(device=None):
    """--model/--pretrained/--init-seed/--device/--data-dir of a job that loads the frozen CLIP."""
    # always explicit: without --pretrained, mvlpt picks the model's shipped weights (mvlpt-tiny), and a
    # config's `pretrained: null` means a random init
    args = ["--model", MODEL["name"], "--pretrained", MODEL.get("pretrained") or "none", "--init-seed", MODEL["init_seed"],
            "--device", device or config["device"]]
    if config.get("data_dir"):
        args += ["--data-dir", config["data_dir"]]
    return q(args)


def split_policy_args():
    """`mvlpt split`'s --policy, only when it is not the default (the commands of existing studies stay as they were)."""
    policy = config.get("fewshot_policy", "available")
    return "" if policy == "available" else f"--policy {shlex.quote(policy)}"


def env_prefix():
    """Environment settings that change results (ELEVATER's hateful-memes metric)."""
    metric = (config.get("elevater") or {}).get("hateful_memes_metric")
    return f"MVLPT_HATEFUL_MEMES_METRIC={shlex.quote(metric)}" if metric else ""


def train_args(wildcards):
    """The config's part of a training command (a param: changing it reruns the jobs)."""
    method_opts = (config.get("method_options") or {}).get(wildcards.method) or {}
    args = ["--method", wildcards.method, "--shots", SHOTS]
    if TRAIN_RESULT:
        args += ["--train-options", json.dumps(TRAIN_RESULT, sort_keys=True)]
    if method_opts:
        args += ["--method-options", json.dumps(method_opts, sort_keys=True)]
    if caches_image_features(wildcards.method):
        args += ["--cache-dir", CACHE]
    return f"{q(args)} {model_args()}"


def runtime_args(wildcards, output):
    """The runtime training options of a training command (`TrainConfig.RUNTIME`, as a second
    --train-options), and with train.compile the kernel cache every training job shares
    (``COMPILE_CACHE_DIR``: a job whose graphs an earlier job compiled loads them instead of compiling).

    They do not change results, so changing one must not rerun finished jobs. A param function that
    takes the job's ``output`` is one Snakemake counts as derived and leaves out of its rerun triggers;
    tests/test_workflow.py holds that (and that other options do rerun). (``output``, not ``threads``:
    asking for ``threads`` makes Snakemake evaluate every job's resources while it plans the DAG, about a
    fifth of the paper config's dry-run.)"""
    args = ["--train-options", json.dumps(TRAIN_RUNTIME, sort_keys=True)] if TRAIN_RUNTIME else []
    if TRAIN_CONFIG.compile != "none":
        args += ["--compile-cache", COMPILE_CACHE_DIR]
    return q(args)


def runtime_workers(wildcards, output):
    """train.workers, a runtime option (see runtime_args)."""
    return TRAIN_CONFIG.workers


def train_state(wildcards):
    """Resumable-state file of a training job (not an output: mvlpt removes it when the run ends).

    Its name carries a hash of the run's settings, so a state saved under other settings is never
    offered to mvlpt (which would refuse it) after a config change."""
    key = json.dumps([train_args(wildcards), env_prefix(), job_seeds(wildcards)])
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    w = {k: getattr(wildcards, k) for k in ("a", "b", "source", "target", "task", "seed") if hasattr(wildcards, k)}
    if "a" in w:
        pair = f"{w['a']}__{w['b']}"
    elif "source" in w:
        pair = f"{w['source']}__{w['target']}"
    else:
        pair = f"{w['task']}__{w['task']}"
    stem = SEED_STEM.replace("{seed}", str(w.get("seed", "")))
    return f"{STATE_DIR}/{wildcards.method}/{pair}/{stem}.{tag}.state.safetensors"


def features_split_args(wildcards):
    return " ".join(f"--split-file {shlex.quote(split_file(wildcards.task, s))}" for s in SEEDS)


def study_targets():
    """Everything `snakemake` builds by default: every result file, then the analysis."""
    return [*all_results(), *reference_results(), *analysis_targets()]  # reference_results: reference.smk


# ------------------------------------------------------------------------------------------------
# Analysis (workflow/rules/analysis.smk): tables, task similarity, correlations, figures
# ------------------------------------------------------------------------------------------------
ANALYSIS = study.analysis_settings(config.get("analysis"))
SIMILARITY = study.similarity_settings(config.get("similarity"))
TABLES_DIR = f"{RESULTS}/tables"
SIMILARITY_DIR = f"{RESULTS}/similarity"
FIGURES_DIR = f"{RESULTS}/figures"
EMBED_DIR = f"{CACHE}/similarity"
MEASURES = list(study.MEASURES)
PREDICTORS_DIR = f"{RESULTS}/predictors"  # transferability predictors (predictors.smk): one matrix per predictor
PREDICTORS = study.predictor_settings(config.get("predictors"))["names"]


def _study_selection():
    return f"--methods {q(METHODS)} --tasks {q(TASKS)} --seeds {q(SEEDS)}"


def _embed_split_seeds():
    seeds = SIMILARITY["fewshot_seeds"]
    return [int(s) for s in (SEEDS if seeds is None else seeds)]


def _embed_shots():
    return SHOTS if SIMILARITY["shots"] is None else int(SIMILARITY["shots"])


def _use_split_files():
    """Use the study's pinned split files (data.smk) when they are the ones asked for."""
    return _embed_shots() == SHOTS and set(_embed_split_seeds()) <= set(SEEDS)


def embed_image_inputs(wildcards):
    if not _use_split_files():
        return []
    return [ancient(split_file(wildcards.task, s)) for s in _embed_split_seeds()]


def embed_image_args(wildcards):
    seeds = _embed_split_seeds()
    if _use_split_files():
        seeds_arg = f"--split-files {q(split_file(wildcards.task, s) for s in seeds)}"
    else:
        seeds_arg = f"--fewshot-seeds {q(seeds)}"
    args = [
        "--shots", _embed_shots(),
        "--sample-size", SIMILARITY["sample_size"],
        "--sample-seed", SIMILARITY["sample_seed"],
        "--batch-size", SIMILARITY["batch_size"],
    ]
    return f"{model_args(SIMILARITY['device'])} {q(args)} {seeds_arg}"


def embed_label_args(wildcards):
    return f"{model_args(SIMILARITY['device'])} --templates {q([SIMILARITY['templates']])}"


def embeddings(kind):
    """The embedding files of every task of one kind (study.EMBEDDING_KINDS: images, labels)."""
    return expand(f"{EMBED_DIR}/{{task}}.{kind}.npz", task=TASKS)


def measure_embeddings(wildcards):
    """The input of the `similarity` job of one measure: the embeddings it is computed from."""
    return embeddings(study.MEASURES[wildcards.measure].kind)


def measure_args(wildcards):
    """--tasks, then the measure's own options (study.MEASURES[...].options) from the config's `similarity` section."""
    options = study.MEASURES[wildcards.measure].options
    return q(["--tasks", *TASKS, *(a for name in options for a in (f"--{name.replace('_', '-')}", SIMILARITY[name]))])


def similarity_tables(wildcards=None):
    return expand(f"{SIMILARITY_DIR}/{{measure}}.parquet", measure=MEASURES)


def resampling_args():
    """The statistics options of every command that draws confidence intervals or p-values (`mvlpt
    correlate`, `mvlpt figures`): the same options, so both draw the same intervals."""
    args = ["--n-boot", ANALYSIS["n_boot"], "--n-perm", ANALYSIS["n_perm"], "--seed", ANALYSIS["seed"],
            "--level", ANALYSIS["level"]]
    return f"{q(args)} --model-measures {q(ANALYSIS['model_measures'] or ['none'])}"


def correlate_args(wildcards=None):
    return f"{resampling_args()} --methods {q(METHODS)}"


def cluster_flag(wildcards=None):
    return "--cluster" if ANALYSIS["cluster"] else ""


def analysis_targets():
    """Every table and figure of the analysis (for `rule all`)."""
    return (
        [f"{TABLES_DIR}/{t}.csv" for t in study.TABLE_NAMES]
        + [f"{TABLES_DIR}/power.csv"]
        + [f"{TABLES_DIR}/{t}.csv" for t in study.REFERENCE_TABLE_NAMES]
        + expand(f"{TABLES_DIR}/matrices/{{method}}_{{stat}}.csv", method=METHODS, stat=study.MATRIX_STATS)
        + expand(f"{SIMILARITY_DIR}/{{measure}}.csv", measure=MEASURES)
        + [f"{TABLES_DIR}/correlations.csv"]
        + expand(f"{FIGURES_DIR}/{{stat}}_{{method}}.{{ext}}", stat=["gain", "interaction"], method=METHODS, ext=["png", "pdf"])
        + expand(f"{FIGURES_DIR}/similarity_{{measure}}.{{ext}}", measure=MEASURES, ext=["png", "pdf"])
        + expand(f"{FIGURES_DIR}/scatter_{{method}}.{{ext}}", method=METHODS, ext=["png", "pdf"])
        + expand(f"{FIGURES_DIR}/summary.{{ext}}", ext=["png", "pdf"])
        + predictor_targets()
    )


# one matrix for every method (zero-shot, similarity) / one per method, from its trained prompts (family "prompt")
SHARED_PREDICTORS = [p for p in PREDICTORS if not study.PREDICTORS[p].per_method]
PROMPT_PREDICTORS = [p for p in PREDICTORS if study.PREDICTORS[p].per_method]


def predictor_targets():
    """The predictor matrices, their scores and figure (predictors.smk). Ranking sources needs at least
    two sources per target, hence three tasks; a smaller study has none (`snakemake predictors` says why)."""
    if len(TASKS) < 3:
        return []
    return (
        expand(f"{PREDICTORS_DIR}/{{predictor}}.csv", predictor=SHARED_PREDICTORS)
        + expand(f"{PREDICTORS_DIR}/{{method}}/{{predictor}}.csv", method=METHODS, predictor=PROMPT_PREDICTORS)
        + [f"{TABLES_DIR}/predictors.csv"]
        + expand(f"{FIGURES_DIR}/predictors.{{ext}}", ext=["png", "pdf"])
    )


# ------------------------------------------------------------------------------------------------
# Multitask study (workflow/rules/multitask.smk, docs/multitask.md)
# ------------------------------------------------------------------------------------------------
MT = study.multitask_settings(config.get("multitask"), METHODS)
MT_DIR = f"{RESULTS}/multitask"
MT_METHODS = list(MT["methods"])
MT_GROUPS = f"{MT_DIR}/groups.csv"
GROUP_RE = r"g[0-9a-f]{10}"
# SoftCPT's loss is a softmax per task (its paper's); the other methods keep the study's head
MT_TRAIN = {m: ({**TRAIN_RESULT, "head": "per_task"} if study.METHODS[m].task_conditioned else TRAIN_RESULT) for m in MT_METHODS}


def multitask_group_inputs(wildcards=None):
    """What the groups are chosen from: the pairwise gain matrices (strategy gain), the similarity
    matrix (strategy similarity), the predictor's matrices (strategy predictor)."""
    strategies = {s for m in MT_METHODS for _, s in study.multitask_runs(m, MT)}
    pairwise = [m for m in MT_METHODS if not study.METHODS[m].multitask_only]
    inputs = {}
    if "gain" in strategies:
        inputs["gain"] = [f"{TABLES_DIR}/matrices/{m}_gain.csv" for m in pairwise]
    if "similarity" in strategies:
        inputs["similarity"] = f"{SIMILARITY_DIR}/{MT['similarity']}.csv"
    if "predictor" in strategies:
        p = MT["predictor"]
        inputs["predictor"] = ([f"{PREDICTORS_DIR}/{m}/{p}.csv" for m in pairwise] if study.PREDICTORS[p].per_method
                               else f"{PREDICTORS_DIR}/{p}.csv")
    return inputs


def multitask_plan_message():
    """How many training jobs the multitask study adds (study.multitask_job_counts), in one line."""
    c = study.multitask_job_counts(len(TASKS), MT, len(SEEDS), STACK)
    bound = "" if c["exact"] else "up to "
    return (f"multitask study: {bound}{c['total']} training jobs ({c['source']} group source prompts, {c['target']} targets "
            f"fine-tuned from them, {c['joint']} joint group runs) for {', '.join(MT_METHODS)} x {len(TASKS)} tasks"
            + ("" if c["exact"] else "; the groups are chosen from the pairwise tables, which the DAG shows once they exist")
            + "; GPU-hours: mvlpt preflight.")


_GROUPS_CACHE = {}


def multitask_groups():
    """The chosen groups (after the checkpoint has run): a DataFrame of mvlpt.grouping.read_groups."""
    path = checkpoints.multitask_groups.get().output[0]
    stamp = os.stat(path).st_mtime_ns
    if _GROUPS_CACHE.get("stamp") != stamp:
        from mvlpt.grouping import read_groups

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
    method_opts = (config.get("method_options") or {}).get(wildcards.method) or {}
    args = ["--method", wildcards.method, "--shots", SHOTS, "--train-options", json.dumps(MT_TRAIN[wildcards.method], sort_keys=True)]
    if method_opts:
        args += ["--method-options", json.dumps(method_opts, sort_keys=True)]
    if caches_image_features(wildcards.method):
        args += ["--cache-dir", CACHE]
    return f"{q(args)} {model_args()}"


def mt_state(wildcards, kind, seeds=None):
    """Resumable-state file of a multitask training job (seeds: the job's, by default)."""
    seeds = job_seeds(wildcards) if seeds is None else seeds
    key = json.dumps([mt_train_args(wildcards), env_prefix(), seeds, kind])
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    where = f"{wildcards.group}/{wildcards.target}" if hasattr(wildcards, "target") else wildcards.group
    stem = f"seeds{'-'.join(map(str, seeds))}"
    return f"{STATE_DIR}/multitask/{wildcards.method}/{kind}/{where}/{stem}.{tag}.state.safetensors"


def group_prompt(method, group, seed):
    return str(study.group_prompt_path(RESULTS, method, group, seed))


def mt_result(method, mode, group, target, seed):
    return str(study.multitask_result_path(RESULTS, method, mode, group, target, seed))


def task_args(tasks):
    return q(a for t in tasks for a in ("--task", t))


def split_args(tasks, slot):
    return _pair_args("--split", [(t, split_file(t, slot)) for t in tasks])


def seed_args(seeds):
    return q(a for s in seeds for a in ("--seed", s))


def multitask_results(wildcards=None):
    """Every multitask result the table reads (known once the groups are): init results per seed, joint folders."""
    out = set()
    for row in multitask_groups().itertuples():
        if row.mode == "init":
            out.update(mt_result(row.method, "init", row.group, row.target, s) for s in SEEDS)
        else:
            out.add(f"{MT_DIR}/{row.method}/joint/{row.group}")
    return sorted(out)


def multitask_baselines(wildcards=None):
    """The single-task baselines the multitask results are compared with (study.Method.baseline)."""
    methods = dict.fromkeys(study.METHODS[m].baseline or m for m in MT_METHODS)
    return [result_path(m, t, t, s) for m in methods for t in TASKS for s in SEEDS]


# ------------------------------------------------------------------------------------------------
# Reference rows (workflow/rules/reference.smk): zero-shot CLIP and the few-shot linear probe
# ------------------------------------------------------------------------------------------------
REFERENCE_DIR = f"{RESULTS}/reference"


def reference_zeroshot_path(task):
    return f"{REFERENCE_DIR}/zeroshot/{task}.json"


def reference_probe_path(task, seed):
    return f"{REFERENCE_DIR}/linear_probe/{task}/seed{seed}.json"


def reference_results(wildcards=None):
    """Every reference record of the study: zero-shot per task, linear probe per task and seed."""
    return [reference_zeroshot_path(t) for t in TASKS] + [reference_probe_path(t, s) for t in TASKS for s in SEEDS]


def reference_feature_inputs(wildcards):
    """The task's frozen-feature marker when the study computes the cache anyway (a method reads it)."""
    if any(caches_image_features(m) for m in METHODS):
        return [ancient(features_marker(wildcards.task))]
    return []


def reference_probe_inputs(wildcards):
    return [ancient(split_file(wildcards.task, wildcards.seed)), *reference_feature_inputs(wildcards)]


def reference_dir_of(wildcards, output):
    """The reference folder next to the results of a tables output (rule collect_results)."""
    return os.path.join(results_dir_of(wildcards, output), "reference")


# Global constraints from the known names: keep `{source}__{target}` and friends unambiguous.
wildcard_constraints:
    method=alternation(METHODS),
    seed=alternation(SEEDS),
    task=alternation(TASKS),
    source=alternation(TASKS),
    target=alternation(TASKS),
