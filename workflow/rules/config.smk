# The study config: read, coerced and checked before any job runs; every problem is one sentence.
#
# The Snakefile calls `readable_config_file` on its default config file and `check_config(config)`
# once the config is complete:
#   1. `--config` values: Snakemake reads `seeds=[1]` or `train={epochs: 3}` as lists and objects of
#      *strings*; their scalars are re-read as YAML, as they would be in a config file.
#   2. mvlpt.study.settings.load: the one check of the package (the JSON schema mvlpt/study/config.schema.yaml,
#      task and measure names, duplicates, the multitask section, the `train` section as `mvlpt train`
#      checks it; `mvlpt preflight` applies the same rules), and the schema's defaults filled in.
#
# Cheap on purpose: every Snakemake start (and every cluster job) runs this; nothing imports torch
# (mvlpt.study.settings and mvlpt.study import neither torch nor numpy; the task registry needs numpy and
# Pillow: about 0.2 s).

import os
import sys

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config

try:
    from mvlpt.study import settings, vocabulary
    from mvlpt.training.config import COMPILE_CACHE, TrainConfig
    from mvlpt.errors import MvlptError
except ImportError as e:
    raise WorkflowError(
        f"config check: cannot import mvlpt ({e}); run Snakemake from the environment where mvlpt is installed "
        "(pip install -e '.[workflow]')."
    )


def readable_config_file(path):
    """``path``, once it parses as YAML; else one sentence naming the file, line and column.

    (Snakemake's own message names neither. It reads files given with --configfile before this
    workflow runs, so only the Snakefile's default config file gets this check.)"""
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as fh:
                yaml.safe_load(fh)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            what = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise WorkflowError(f"invalid config: {path}{where} is not valid YAML ({what}).")
    return path


# ------------------------------------------------------------------------------------------------
# 1. --config values
# ------------------------------------------------------------------------------------------------
def _yaml_scalar(value):
    """A string scalar read as YAML would read it in a config file (``"3"`` -> 3, ``"false"`` -> False,
    ``"null"`` -> None); strings that stay strings, or would become lists/objects, are kept."""
    if not isinstance(value, str) or not value.strip():
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if parsed is None or isinstance(parsed, (bool, int, float)) else value


def _typed(value):
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return _yaml_scalar(value)


def coerce_command_line_config(cfg):
    """Re-read the scalars of the ``--config`` values (Snakemake keeps the scalars inside a list or an
    object as strings) in ``cfg``, in place."""
    given = workflow.config_settings.config if workflow.config_settings is not None else None
    if given:
        update_config(cfg, _typed(dict(given)))


def in_sub_study():
    """Whether this copy of the workflow is a study inside the study: a Snakemake module of the Snakefile
    (workflow/rules/studies.smk: one per shot count of a shots axis, and the Table 1 setting)."""
    return not workflow.modifier.is_main_snakefile()


def sub_study_name():
    """The module's name of a study inside the study (``shots5``, ``table1``: its folder below the
    results, cache and logs folders, mvlpt.study.layout.SHOT_STUDY / TABLE1_STUDY), else None."""
    return workflow.modifier.namespace if in_sub_study() else None


def shot_axis_study(cfg):
    """Whether this (main) workflow is a study over several shot counts (`shots` a list): it then holds one
    module of the Snakefile per count (workflow/rules/studies.smk) and the tables across them."""
    if in_sub_study():
        return False
    coerce_command_line_config(cfg)
    return settings.shot_axis(cfg)


def multitask_requested():
    """Whether this run asks for the multitask study (`snakemake multitask`, or one of its files as the
    target: anything under a `multitask/` folder, or the `multitask*` tables and figures): its section
    is checked and priced only then (Snakemake fills it with defaults for every config). The targets
    are known to Snakemake only after the Snakefile is read (`workflow.dag_settings.targets` is still
    None here): the command line tells."""
    outputs = (".csv", ".parquet", ".png", ".pdf", ".json", ".safetensors")
    if sub_study_name() == "table1":  # the Table 1 setting is a multitask study (workflow/rules/studies.smk)
        return True
    return any(a == "multitask" or "multitask/" in a or (os.path.basename(a).startswith("multitask") and a.endswith(outputs))
               for a in sys.argv[1:])


def budget_requested():
    """Whether this run asks for the budgeted study (`snakemake budgeted`, or one of its files: anything
    under the results' `budget/` folder): its section is checked, planned and priced only then (Snakemake
    fills it with defaults for every config). The command line tells, as for multitask_requested."""
    return any(a == "budgeted" or ("budget/" in a and "=" not in a) for a in sys.argv[1:])


# ------------------------------------------------------------------------------------------------
# All of it
# ------------------------------------------------------------------------------------------------
def check_config(cfg):
    """The study config (mvlpt.study.settings.StudyConfig); ``cfg`` gets the schema's defaults, in place.
    Checked by the main process; a cluster job, which parses the workflow again with the config the main
    process checked, only types it (no jsonschema, no task registry: a third of a second per job)."""
    if not in_sub_study():  # a module's config is made from the checked one (studies.smk), not the command line's
        coerce_command_line_config(cfg)
    try:
        checked = settings.load(cfg, multitask=multitask_requested(), budget=budget_requested(),
                                checked=not workflow.is_main_process)
    except MvlptError as e:
        raise WorkflowError(str(e))
    cfg.update(checked.as_dict())
    return checked


# ------------------------------------------------------------------------------------------------
# Preflight: data, weights, devices and disk of the whole study, checked before the first job
# ------------------------------------------------------------------------------------------------
def gpu_rules():
    """The rules whose jobs take a GPU (`resources: gpu=1`), for preflight's read-back of a SLURM profile."""
    declared = ((r.name, dict(r.resources).get("gpu")) for r in workflow.rules)
    # a callable resource counts as a GPU one (it may give one); a number says itself
    return [name for name, gpu in declared if gpu is not None and (gpu.is_evaluable() or gpu.value)]


def slurm_profile_used():
    """The profile (folder) of this run when it submits to SLURM (`--workflow-profile` or `--profile`,
    `executor: slurm`), else None: Snakemake keeps no record of it, the command line tells."""
    args = sys.argv[1:]
    for i, a in enumerate(args):
        for flag in ("--workflow-profile", "--profile"):
            value = a.split("=", 1)[1] if a.startswith(flag + "=") else (args[i + 1] if a == flag and i + 1 < len(args) else None)
            if value:
                path = value if os.path.isdir(value) else os.path.join("profiles", value)
                try:
                    with open(os.path.join(path, "config.yaml"), encoding="utf-8") as fh:
                        if (yaml.safe_load(fh) or {}).get("executor") == "slurm":
                            return path
                except (OSError, yaml.YAMLError):
                    pass
    return None


def run_preflight():
    """`mvlpt preflight`'s problems for this config, as one error before any job starts (the report:
    `mvlpt preflight --configfile ...`). Skipped with `preflight: false`."""
    if not config.get("preflight", True):
        return
    import logging

    from mvlpt.running.preflight import problems

    # open_clip logs through the root logger (logging.info), which would otherwise install a handler that
    # prints every Snakemake message a second time
    if not logging.root.handlers:
        logging.root.addHandler(logging.NullHandler())

    report_file = os.path.join("logs", "preflight.json")
    found = problems(config, report_path=report_file, multitask=multitask_requested(), budget=budget_requested(),
                     profile=slurm_profile_used(), table1=table1_requested(), gpu_rules=gpu_rules())
    if found:
        raise WorkflowError(
            f"preflight: the study cannot run through, {len(found)} problem(s) (the full report: {report_file}, or "
            f"`mvlpt preflight --configfile FILE`; `--config preflight=false` skips the check):\n"
            + "\n".join(f"  - {p}" for p in found))
