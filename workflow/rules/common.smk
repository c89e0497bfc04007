# Configuration, validation, names and input functions shared by every rule file.
#
# Kept cheap on purpose: on a cluster every job parses the Snakefile again, so nothing here globs
# the file system, loads data or imports torch (the task-name check imports mvlpt.tasks, which
# needs numpy and Pillow only: about 0.2 s).

import hashlib
import json
import os
import re
import shlex

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

KNOWN_METHODS = ("coop", "vpt", "upt")


# ------------------------------------------------------------------------------------------------
# Validation: the clear, one-sentence checks first, then the JSON schema (types, ranges, typos)
# ------------------------------------------------------------------------------------------------
def _duplicates(values):
    seen, dups = set(), []
    for v in values:
        if v in seen and v not in dups:
            dups.append(v)
        seen.add(v)
    return dups


def _known_task_names():
    """Names in the mvlpt task registry (imports numpy and Pillow, not torch)."""
    try:
        from mvlpt.tasks import list_tasks
    except ImportError as e:
        raise WorkflowError(
            f"config check: cannot import mvlpt ({e}); run Snakemake from the environment where mvlpt is installed "
            "(pip install -e '.[workflow]')."
        )
    return list_tasks()


def config_problems(cfg):
    """Problems a user is likely to make, each as one sentence (empty list: none)."""
    problems = []
    tasks = cfg.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        problems.append("`tasks` must be a non-empty list of task names (see `mvlpt tasks`)")
    else:
        bad = [t for t in tasks if not isinstance(t, str)]
        if bad:
            problems.append(f"every entry of `tasks` must be a task name, got {bad[0]!r}")
        else:
            dups = _duplicates(tasks)
            if dups:
                problems.append(f"task(s) listed more than once in `tasks`: {', '.join(dups)}")
            known = set(_known_task_names())
            unknown = [t for t in tasks if t not in known]
            if unknown:
                problems.append(
                    f"unknown task(s) in `tasks`: {', '.join(unknown)} (known tasks: {', '.join(sorted(known))})"
                )
    methods = cfg.get("methods", list(KNOWN_METHODS))
    if not isinstance(methods, list) or not methods:
        problems.append(f"`methods` must be a non-empty list drawn from {', '.join(KNOWN_METHODS)}")
    else:
        unknown = [str(m) for m in methods if m not in KNOWN_METHODS]
        if unknown:
            problems.append(f"unknown method(s) in `methods`: {', '.join(unknown)} (known: {', '.join(KNOWN_METHODS)})")
        dups = _duplicates([m for m in methods if isinstance(m, str)])
        if dups:
            problems.append(f"method(s) listed more than once in `methods`: {', '.join(dups)}")
    seeds = cfg.get("seeds", [1, 2, 3])
    if not isinstance(seeds, list) or not seeds:
        problems.append("`seeds` must be a non-empty list of integers")
    else:
        dups = _duplicates(seeds)
        if dups:
            problems.append(f"seed(s) listed more than once in `seeds`: {', '.join(map(str, dups))}")
    shots = cfg.get("shots", 5)
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        problems.append(f"`shots` must be an integer >= 1 (images per class), got {shots!r}")
    mode = cfg.get("mode", "joint")
    if mode not in ("joint", "sequential"):
        problems.append(f"`mode` must be joint or sequential, got {mode!r}")
    return problems


def check_config(cfg):
    problems = config_problems(cfg)
    if problems:
        raise WorkflowError(f"invalid config: {'; '.join(problems)}.")
    schema_problem(cfg)
    validate(cfg, "../schemas/config.schema.yaml")  # also fills the schema's defaults


def schema_problem(cfg):
    """The schema's verdict as one sentence naming the key (Snakemake's own message dumps the schema)."""
    import jsonschema
    import yaml

    with open(os.path.join(workflow.current_basedir, "..", "schemas", "config.schema.yaml")) as fh:
        schema = yaml.safe_load(fh)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(cfg))
    if error is not None:
        where = "".join(f"{p}: " if i == len(error.absolute_path) - 1 else f"{p}." for i, p in enumerate(error.absolute_path))
        raise WorkflowError(f"invalid config: {where}{error.message} (see config/README.md).")


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

# CPU threads of a job that loads images: itself plus train.workers decoding processes.
JOB_THREADS = 1 + int(TRAIN.get("workers", 0))

# Frozen image features pay off only for methods that leave the image encoder alone (CoOp).
USE_FEATURES = "coop" in METHODS and TRAIN.get("cache_features", True)

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
    return f"{RESULTS}/{method}/{source}__{target}/seed{seed}.json"


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
    """Few-shot splits (+ CoOp's feature caches) of ``tasks``.

    ``ancient``: caches are deterministic, so a re-created cache file never makes a finished run stale
    (the few-shot protocol and the model are in the path or in the params, which do trigger reruns).
    """
    inputs = {"splits": [ancient(split_file(t, s)) for t in tasks for s in seeds]}
    if method == "coop" and USE_FEATURES:
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
    args = ["--model", MODEL["name"], "--init-seed", MODEL["init_seed"], "--device", device or config["device"]]
    if MODEL.get("pretrained"):
        args += ["--pretrained", MODEL["pretrained"]]
    if config.get("data_dir"):
        args += ["--data-dir", config["data_dir"]]
    return q(args)


def env_prefix():
    """Environment settings that change results (ELEVATER's hateful-memes metric)."""
    metric = (config.get("elevater") or {}).get("hateful_memes_metric")
    return f"MVLPT_HATEFUL_MEMES_METRIC={shlex.quote(metric)}" if metric else ""


def train_args(wildcards):
    """The config's part of a training command (a param: changing it reruns the jobs)."""
    method_opts = (config.get("method_options") or {}).get(wildcards.method) or {}
    args = ["--method", wildcards.method, "--shots", SHOTS]
    if TRAIN:
        args += ["--train-options", json.dumps(TRAIN, sort_keys=True)]
    if method_opts:
        args += ["--method-options", json.dumps(method_opts, sort_keys=True)]
    if wildcards.method == "coop" and USE_FEATURES:
        args += ["--cache-dir", CACHE]
    return f"{q(args)} {model_args()}"


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
    return [*all_results(), *analysis_targets()]


# ------------------------------------------------------------------------------------------------
# Analysis (workflow/rules/analysis.smk): tables, task similarity, correlations, figures
# ------------------------------------------------------------------------------------------------
ANALYSIS_CFG = config.get("analysis") or {}
SIMILARITY_CFG = config.get("similarity") or {}
TABLES_DIR = f"{RESULTS}/tables"
SIMILARITY_DIR = f"{RESULTS}/similarity"
FIGURES_DIR = f"{RESULTS}/figures"
EMBED_DIR = f"{CACHE}/similarity"
SIMILARITY_MEASURES = ["visual_cosine", "visual_frechet", "label_match", "label_cosine"]
MATRIX_STATS = ["mean", "std", "gain", "gain_rel"]
TABLE_NAMES = ["runs", "pairs", "best_source", "source_gain", "target_gain"]


def _study_selection():
    return f"--methods {q(METHODS)} --tasks {q(TASKS)} --seeds {q(SEEDS)}"


def _embed_split_seeds():
    return [int(s) for s in SIMILARITY_CFG.get("fewshot_seeds", SEEDS)]


def _embed_shots():
    return int(SIMILARITY_CFG.get("shots", config.get("shots", 5)))


def _use_split_files():
    """Use the study's pinned split files (data.smk) when they are the ones asked for."""
    return (_embed_shots() == int(config.get("shots", 5))
            and set(_embed_split_seeds()) <= set(int(s) for s in SEEDS))


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
        "--sample-size", SIMILARITY_CFG.get("sample_size", 256),
        "--sample-seed", SIMILARITY_CFG.get("sample_seed", 0),
        "--batch-size", SIMILARITY_CFG.get("batch_size", 128),
    ]
    return f"{model_args(SIMILARITY_CFG.get('device'))} {q(args)} {seeds_arg}"


def embed_label_args(wildcards):
    return f"{model_args(SIMILARITY_CFG.get('device'))} --templates {q([SIMILARITY_CFG.get('templates', 'default')])}"


def image_embeddings(wildcards=None):
    return expand(f"{EMBED_DIR}/{{task}}.images.npz", task=TASKS)


def label_embeddings(wildcards=None):
    return expand(f"{EMBED_DIR}/{{task}}.labels.npz", task=TASKS)


def similarity_tables(wildcards=None):
    return expand(f"{SIMILARITY_DIR}/{{measure}}.parquet", measure=SIMILARITY_MEASURES)


def frechet_args(wildcards=None):
    return q(["--shrinkage", SIMILARITY_CFG.get("shrinkage", "ledoit_wolf"), "--ridge", SIMILARITY_CFG.get("ridge", 1e-3)])


def correlate_args(wildcards=None):
    measures = ANALYSIS_CFG.get("model_measures", ["visual_cosine", "label_match"]) or ["none"]
    args = ["--n-boot", ANALYSIS_CFG.get("n_boot", 2000), "--n-perm", ANALYSIS_CFG.get("n_perm", 2000),
            "--seed", ANALYSIS_CFG.get("seed", 0)]
    return f"{q(args)} --model-measures {q(measures)} --methods {q(METHODS)}"


def cluster_flag(wildcards=None):
    return "--cluster" if ANALYSIS_CFG.get("cluster", False) else ""


def analysis_targets():
    """Every table and figure of the analysis (for `rule all`)."""
    return (
        [f"{TABLES_DIR}/{t}.csv" for t in TABLE_NAMES]
        + expand(f"{TABLES_DIR}/matrices/{{method}}_{{stat}}.csv", method=METHODS, stat=MATRIX_STATS)
        + expand(f"{SIMILARITY_DIR}/{{measure}}.csv", measure=SIMILARITY_MEASURES)
        + [f"{TABLES_DIR}/correlations.csv"]
        + expand(f"{FIGURES_DIR}/gain_{{method}}.{{ext}}", method=METHODS, ext=["png", "pdf"])
        + expand(f"{FIGURES_DIR}/similarity_{{measure}}.{{ext}}", measure=SIMILARITY_MEASURES, ext=["png", "pdf"])
        + expand(f"{FIGURES_DIR}/scatter_{{method}}.{{ext}}", method=METHODS, ext=["png", "pdf"])
        + expand(f"{FIGURES_DIR}/summary.{{ext}}", ext=["png", "pdf"])
    )


# Global constraints from the known names: keep `{source}__{target}` and friends unambiguous.
wildcard_constraints:
    method=alternation(METHODS),
    seed=alternation(SEEDS),
    task=alternation(TASKS),
    source=alternation(TASKS),
    target=alternation(TASKS),
