# Functions of studies.smk: the studies inside the study (a module of the Snakefile each) and their targets.

import os

from mvlpt.study import layout


def sub_study_modules():
    """The studies inside this study, name -> config: one per shot count of a shots axis (``shots5``:
    mvlpt.study.settings.shot_study), and the Table 1 study (``table1``) when the run asks for it. Each is
    the Snakefile as a Snakemake module (studies.smk), its rules imported as ``{name}_{rule}``
    (``shots5_train_single``); its logs lie below ``logs/{name}`` (common.smk) and it never starts the
    preflight or the run record (only the main Snakefile's onstart does)."""
    out = {}
    if settings.shot_axis(config):
        out.update({layout.SHOT_STUDY.relative(shots=n): settings.shot_study(config, n) for n in settings.shot_counts(config)})
    if table1_requested():
        out[layout.TABLE1_STUDY.relative()] = table1_config()
    return out


def sub_inputs(name, rule):
    """The input files of one of study ``name``'s target rules (all, analysis, multitask, ...)."""
    return list(getattr(rules, f"{name}_{rule}").input)


def table1_config():
    """The Table 1 study's config (mvlpt.study.settings.table1_study), checked as a study of its own; its
    problems in one sentence that names the setting."""
    try:
        cfg = settings.table1_study(config)
        found = settings.problems(cfg, multitask=True)
    except MvlptError as e:
        raise WorkflowError(str(e))
    if found:
        raise WorkflowError(f"table1: the Table 1 study cannot be made: {'; '.join(found)} (config section `table1`, "
                            "docs/multitask.md#the-papers-table-1).")
    return cfg


def table1_requested():
    """Whether this run asks for the paper's Table 1 setting: `snakemake table1`, a file below a `table1/`
    folder, or one of its jobs (a cluster job names its rule, `--target-jobs table1_train_single:...`). Its
    module is made only then, since its tasks need data most studies never fetch."""
    return any(a == "table1" or "table1/" in a or a.startswith("table1_") for a in sys.argv[1:])


# ------------------------------------------------------------------------------------------------
# A study over several shot counts: its targets across the counts' studies
# ------------------------------------------------------------------------------------------------
def shot_study_names():
    """shot count -> the name of its study (5 -> "shots5")."""
    return {n: layout.SHOT_STUDY.relative(shots=n) for n in settings.shot_counts(config)}


def shots_table_inputs(name):
    """The ``name`` table (gain_summary, baselines) of every shot count's study."""
    return [layout.TABLE.template(layout.TABLES_DIR.template(settings.shot_study(config, n)["results_dir"]), name, "parquet")
            for n in settings.shot_counts(config)]


def shots_study_args(wildcards, input):
    """`mvlpt shots table`'s --study N=TABLES of every shot count."""
    return " ".join(f"--study {n}={os.path.dirname(p)}" for n, p in zip(settings.shot_counts(config), input.summaries))


def shots_targets():
    """The table across shot counts, and its figure when there are several."""
    return [SHOTS_TABLE, layout.TABLE.template(TABLES_DIR, "shots", "parquet")] + (
        SHOTS_FIGURE if len(settings.shot_counts(config)) > 1 else [])


def shot_axis_targets():
    """What `snakemake` builds in a study over several shot counts: every count's study's own targets,
    then the tables across them (and their figure)."""
    return [f for name in shot_study_names().values() for f in sub_inputs(name, "all")] + shots_targets()


def shot_study_inputs(rule):
    """The inputs of ``rule`` (analysis, predictors, multitask) of every shot count's study."""
    return [f for name in shot_study_names().values() for f in sub_inputs(name, rule)]
