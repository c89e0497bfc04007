# Shared by several of the workflow's files. The study's names, its paths (mvlpt.study.layout's templates),
# the default target's files, and the input functions and params of the jobs that train or load the
# CLIP. What one rule file alone needs is in functions/<that file>.smk, included by it (Snakemake's
# lint keeps functions out of the files with rules); logic that is not DAG wiring lives in the
# package (mvlpt.study.layout, every path; mvlpt.study.wildcards, wildcard constraints and shell quoting;
# mvlpt.study.vocabulary, the vocabulary and the defaults).
#
# Kept cheap on purpose: on a cluster every job parses the Snakefile again, so nothing here globs
# the file system, loads data or imports torch. The config was read and checked by config.smk.

import functools
import hashlib
import json
import os
import shlex

from mvlpt.study import layout
from mvlpt.study.wildcards import GROUP_RE, alternation, joint_pair_constraints, off_diagonal_target, pair_args, q

STUDY = check_config(config)  # mvlpt.study.settings.StudyConfig; `config` has the schema's defaults now


# ------------------------------------------------------------------------------------------------
# Names
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
# a study inside the study (a shot count of a shots axis, the Table 1 setting) logs below its own folder
LOGS = os.path.join(layout.LOGS, sub_study_name()) if in_sub_study() else layout.LOGS

# The training options as `mvlpt train` reads them (the config's `train` section over its defaults).
TRAIN_CONFIG = STUDY.train
# Those that change results go into the training jobs' params (a change reruns the jobs); the runtime
# ones (TrainConfig.RUNTIME: compile, evaluation batch size, workers, ...) reach them through runtime_args.
TRAIN_RESULT = {k: v for k, v in TRAIN.items() if k not in TrainConfig.RUNTIME}
TRAIN_RUNTIME = {k: v for k, v in TRAIN.items() if k in TrainConfig.RUNTIME}
COMPILE_CACHE_DIR = f"{CACHE}/{COMPILE_CACHE}"  # train.compile: torch.compile's kernel cache, shared by every job

# CPU threads of a job that loads images: itself plus train.workers decoding processes.
JOB_THREADS = 1 + TRAIN_CONFIG.workers

# `conda:` environment of every rule (paths are relative to the rule files in workflow/rules/).
CONDA_ENV = "../envs/mvlpt.yaml"

ANALYSIS = vocabulary.analysis_settings(config.get("analysis"))
SIMILARITY = vocabulary.similarity_settings(config.get("similarity"))
MEASURES = list(vocabulary.MEASURES)
PREDICTORS = vocabulary.predictor_settings(config.get("predictors"))["names"]
# one matrix for every method (zero-shot, similarity) / one per method, from its trained prompts (family "prompt")
SHARED_PREDICTORS = [p for p in PREDICTORS if not vocabulary.PREDICTORS[p].per_method]
PROMPT_PREDICTORS = [p for p in PREDICTORS if vocabulary.PREDICTORS[p].per_method]


# ------------------------------------------------------------------------------------------------
# Paths: mvlpt.study.layout's entries under this study's folders
# ------------------------------------------------------------------------------------------------
TABLES_DIR = layout.TABLES_DIR.template(RESULTS)
SIMILARITY_DIR = layout.SIMILARITY_DIR.template(RESULTS)
FIGURES_DIR = layout.FIGURES_DIR.template(RESULTS)
PREDICTORS_DIR = layout.PREDICTORS_DIR.template(RESULTS)  # transferability predictors (predictors.smk)


# (memoised: the input functions ask for the same few paths thousands of times while Snakemake plans)
@functools.cache
def result_path(method, source, target, seed):
    return layout.RESULT.template(RESULTS, method, source, target, seed)


@functools.cache
def split_file(task, seed):
    return layout.SPLIT.template(CACHE, task, SHOTS, seed)


@functools.cache
def features_marker(task):
    return layout.FEATURES_DONE.template(CACHE, task, SHOTS)


@functools.cache
def prompt_file(method, task, seed):
    return layout.PROMPT.template(RESULTS, method, task, seed)


def embeddings(kind):
    """The embedding files of every task of one kind (study.EMBEDDING_KINDS: images, labels; fewshot)."""
    return [layout.EMBEDDING.template(CACHE, t, kind) for t in TASKS]


def table(name, ext="csv"):
    return layout.TABLE.template(TABLES_DIR, name, ext)


def job_log(job):
    """A job's log: ``logs/{job}.log``."""
    return layout.LOG.template(LOGS, job)


def job_benchmark(job):
    return layout.BENCHMARK.template(LOGS, job)


def caches_image_features(method):
    """Whether runs of ``method`` read frozen image features computed once per task (`frozen_features`):
    the method leaves the image tower alone, and train.cache_features is on."""
    return vocabulary.METHODS[method].caches_image_features and TRAIN_CONFIG.cache_features


# ------------------------------------------------------------------------------------------------
# What `snakemake` builds by default (`all`): every result file, the reference rows, the analysis
# ------------------------------------------------------------------------------------------------
def all_results():
    """Every result file the study expects: methods x seeds x all (source, target) pairs."""
    return [result_path(m, s, t, seed) for m in METHODS for seed in SEEDS for s in TASKS for t in TASKS]


def reference_results(wildcards=None):
    """Every reference record of the study (reference.smk): zero-shot per task, linear probe per task and seed."""
    ref = layout.REFERENCE_DIR.template(RESULTS)
    return ([layout.REFERENCE_ZEROSHOT.template(ref, t) for t in TASKS]
            + [layout.REFERENCE_PROBE.template(ref, t, s) for t in TASKS for s in SEEDS])


def predictor_targets():
    """The predictor matrices, their scores and figure (predictors.smk). Ranking sources needs at least
    two sources per target, hence three tasks; a smaller study has none (`snakemake predictors` says why)."""
    if len(TASKS) < 3:
        return []
    return (
        [layout.PREDICTOR.template(PREDICTORS_DIR, p, "csv") for p in SHARED_PREDICTORS]
        + [layout.PROMPT_PREDICTOR.template(PREDICTORS_DIR, m, p, "csv") for m in METHODS for p in PROMPT_PREDICTORS]
        + [table("predictors")]
        + [layout.FIGURE.template(FIGURES_DIR, "predictors", ext) for ext in ("png", "pdf")]
    )


def analysis_targets():
    """Every table and figure of the analysis (for `rule all`)."""
    both = ("png", "pdf")
    return (
        [table(t) for t in vocabulary.TABLE_NAMES]
        + [table("power")]
        + [table(t) for t in vocabulary.REFERENCE_TABLE_NAMES]
        + [layout.MATRIX.template(TABLES_DIR, m, stat, "csv") for m in METHODS for stat in vocabulary.MATRIX_STATS]
        + [layout.SIMILARITY.template(SIMILARITY_DIR, m, "csv") for m in MEASURES]
        + [table("correlations")]
        + [layout.HEATMAP_FIGURE.template(FIGURES_DIR, stat, m, ext) for stat in ("gain", "interaction") for m in METHODS
           for ext in both]
        + [layout.SIMILARITY_FIGURE.template(FIGURES_DIR, m, ext) for m in MEASURES for ext in both]
        + [layout.SCATTER_FIGURE.template(FIGURES_DIR, m, ext) for m in METHODS for ext in both]
        + [layout.FIGURE.template(FIGURES_DIR, "summary", ext) for ext in both]
        + predictor_targets()
    )


def study_targets():
    """Every result file and reference record, then the analysis. The records are listed although the
    tables read them: Snakemake rebuilds a missing file only where a job that needs to run reads it, so
    a result deleted after its tables were made would otherwise stay missing (tests/workflow/test_workflow.py)."""
    return [*all_results(), *reference_results(), *analysis_targets()]


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


def seed_args(seeds):
    return q(a for s in seeds for a in ("--seed", s))


def split_args(tasks, slot):
    return pair_args("--split", [(t, split_file(t, slot)) for t in tasks])


# ------------------------------------------------------------------------------------------------
# Input functions and params of the jobs that train (train.smk, multitask.smk) or load the CLIP
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


def model_args(device=None):
    """--model/--pretrained/--init-seed/--device/--data-dir of a job that loads the frozen CLIP."""
    # always explicit: without --pretrained, mvlpt picks the model's shipped weights (mvlpt-tiny), and a
    # config's `pretrained: null` means a random init
    args = ["--model", MODEL["name"], "--pretrained", MODEL.get("pretrained") or "none", "--init-seed", MODEL["init_seed"],
            "--device", device or config["device"]]
    if config.get("data_dir"):
        args += ["--data-dir", config["data_dir"]]
    return q(args)


def metric_args():
    """The scoring options of a job that evaluates tasks (they change results): ELEVATER's hateful-memes
    metric (config `elevater.hateful_memes_metric`), given only when the config sets it."""
    metric = STUDY.elevater.hateful_memes_metric
    return f"--hateful-memes-metric {shlex.quote(metric)}" if metric else ""


def method_args(method, train_options):
    """--method/--shots/--protocol (unless corrected)/--train-options (unless None)/--method-options/--cache-dir of a training command,
    then the model's (a param: changing it reruns the jobs)."""
    method_opts = (config.get("method_options") or {}).get(method) or {}
    args = ["--method", method, "--shots", SHOTS]
    if STUDY.protocol != "corrected":  # recorded in the results (the options it sets are in the config already)
        args += ["--protocol", STUDY.protocol]
    if train_options is not None:
        args += ["--train-options", json.dumps(train_options, sort_keys=True)]
    if method_opts:
        args += ["--method-options", json.dumps(method_opts, sort_keys=True)]
    if caches_image_features(method):
        args += ["--cache-dir", CACHE]
    return f"{q(args)} {model_args()}"


def state_tag(*key):
    """The settings hash in a resumable state's name: a state saved under other settings is never
    offered to mvlpt (which would refuse it) after a config change."""
    return hashlib.sha256(json.dumps(list(key)).encode()).hexdigest()[:10]


def runtime_args(wildcards, output):
    """The runtime training options of a training command (`TrainConfig.RUNTIME`, as a second
    --train-options), and with train.compile the kernel cache every training job shares
    (``COMPILE_CACHE_DIR``: a job whose graphs an earlier job compiled loads them instead of compiling).

    They do not change results, so changing one must not rerun finished jobs. A param function that
    takes the job's ``output`` is one Snakemake counts as derived and leaves out of its rerun triggers;
    tests/workflow/test_workflow.py holds that (and that other options do rerun). (``output``, not ``threads``:
    asking for ``threads`` makes Snakemake evaluate every job's resources while it plans the DAG, about a
    fifth of the paper config's dry-run.)"""
    args = ["--train-options", json.dumps(TRAIN_RUNTIME, sort_keys=True)] if TRAIN_RUNTIME else []
    if TRAIN_CONFIG.compile != "none":
        args += ["--compile-cache", COMPILE_CACHE_DIR]
    return q(args)


def runtime_workers(wildcards, output):
    """train.workers, a runtime option (see runtime_args)."""
    return TRAIN_CONFIG.workers


# Global constraints from the known names: keep `{source}__{target}` and friends unambiguous.
wildcard_constraints:
    method=alternation(METHODS),
    seed=alternation(SEEDS),
    task=alternation(TASKS),
    source=alternation(TASKS),
    target=alternation(TASKS),
