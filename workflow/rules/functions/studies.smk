# Functions of studies.smk: the studies inside the study (a module of the Snakefile each) and their targets.


def sub_study(name, cfg):
    """A study inside the study: the Snakefile as a Snakemake module named ``name`` with config ``cfg`` (a
    complete, checked config: its own shots, results, cache; mvlpt.study.settings.shot_study / table1_study),
    its rules imported as ``{name}_{rule}`` (``shots5_train_single``). Its logs lie below ``logs/{name}``
    (common.smk) and it never starts the preflight or the run record (only the main Snakefile's onstart does)."""
    workflow.module(name, snakefile=workflow.main_snakefile, config=cfg)
    workflow.userule(rules=("*",), from_module=name, name_modifier=f"{name}_*")(lambda: None)


def sub_inputs(name, rule):
    """The input files of rule ``rule`` of study ``name`` (its targets: all, analysis, multitask, ...)."""
    return list(getattr(rules, f"{name}_{rule}").input)


def table1_requested():
    """Whether this run asks for the paper's Table 1 setting (`snakemake table1`, or a file below a `table1/`
    folder): its module is made only then, since its tasks need data most studies never fetch."""
    return any(a == "table1" or "table1/" in a for a in sys.argv[1:])
