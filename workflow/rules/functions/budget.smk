# Names, input functions and params of budget.smk (the budgeted study, docs/budget.md).

from mvlpt.study import budget as budget_arith

BUDGET_DIR = layout.BUDGET_DIR.template(RESULTS)
BUDGET_TABLES = ("completed", "best_source", "progress")
BUDGET_FIGURES = ("completed", "progress")


@functools.cache
def budget_plan():
    """The budgeted study's plan (mvlpt.study.budget.plan: pairs, rounds and their sizes); read only when a
    run asks for it (the config check has then checked the section: budget_requested)."""
    try:
        return budget_arith.plan(config)
    except MvlptError as e:
        raise WorkflowError(str(e))


def budget_plan_message():
    """What `snakemake budgeted` says first: its pairs, rounds and training jobs (the Snakefile prints it)."""
    return budget_arith.plan_message(budget_plan(), METHODS, len(SEEDS), STACK)


def budget_round_file(method, r):
    return layout.BUDGET_ROUND.template(BUDGET_DIR, method=method, round=r)


def budget_rounds_done(method, upto):
    """The files of rounds 0 .. upto-1 of ``method``, each once its checkpoint has run (until then
    Snakemake's checkpoints.get raises, and the asking job waits for that round)."""
    return [checkpoints.budget_round.get(method=method, round=r).output[0] for r in range(upto)]


def budget_pair_results(method, pairs):
    """The result files of ``pairs`` (both directions of a joint pair, every seed): the full study's files,
    made by its training rules (a joint run serves both directions, stacked seeds train together)."""
    cells = budget_arith.cells_of(pairs, MODE == "joint")
    return [result_path(method, s, t, seed) for s, t in cells for seed in SEEDS]


def budget_baselines(method=None):
    methods = METHODS if method is None else [method]
    return [result_path(m, t, t, seed) for m in methods for t in TASKS for seed in SEEDS]


def budget_side_files(method):
    """The files of the completion's side information (budget.side): a measure's similarity table, a
    predictor's matrix (the method's own for a prompt predictor); the baselines need none."""
    out = {}
    for name in budget_plan().side:
        if name == budget_arith.BASELINE:
            continue
        if name in vocabulary.MEASURES:
            out[name] = layout.SIMILARITY.template(SIMILARITY_DIR, name, "csv")
        elif vocabulary.PREDICTORS[name].per_method:
            out[name] = layout.PROMPT_PREDICTOR.template(PREDICTORS_DIR, method, name, "csv")
        else:
            out[name] = layout.PREDICTOR.template(PREDICTORS_DIR, name, "csv")
    return out


def budget_side_args(method):
    files = budget_side_files(method)
    return [a for name in budget_plan().side for a in ("--side", f"{name}={files[name]}" if name in files else name)]


def budget_round_inputs(wildcards):
    """What round r is chosen from: the files of the rounds before it and the results of every pair they
    list (all of a list: only a budget's last round trains part of it), and the baselines. Round 0, the
    initial design, needs no result."""
    r = int(wildcards.round)
    if r == 0:
        return {}
    earlier = budget_rounds_done(wildcards.method, r)
    pairs = [p for path in earlier for p in budget_arith.read_round(path)]
    return {
        "earlier": earlier,
        "results": budget_pair_results(wildcards.method, pairs) + budget_baselines(wildcards.method),
        # deterministic given the config (whose changes are in the params): a remade file does not choose again
        "side": [ancient(f) for f in budget_side_files(wildcards.method).values()],
    }


def budget_select_args(wildcards):
    """The options of `mvlpt budget select` (params, so a change of them chooses the round again). Not
    the total budget: a round's file is the same under any budget that reaches it, so a larger budget
    keeps every round and every job already done. Round 0 does not read the rule."""
    p, r = budget_plan(), int(wildcards.round)
    args = ["--method", wildcards.method, "--tasks", *TASKS, "--mode", MODE, "--round", r, "--k", p.chosen[r], "--seed", p.seed]
    if r > 0:
        args += ["--results-dir", RESULTS, "--seeds", *SEEDS, "--rule", p.rule, "--level", ANALYSIS["level"],
                 *budget_side_args(wildcards.method), "--earlier", *[budget_round_file(wildcards.method, i) for i in range(r)]]
    else:
        args += ["--seeds", *SEEDS]
    return q(args)


def budget_complete_inputs(wildcards):
    """Every round file of the method and the results of the pairs the budget trains (each round's first
    ``sizes[r]``), with the baselines."""
    p = budget_plan()
    rounds = budget_rounds_done(wildcards.method, p.rounds)
    pairs = [pair for path, size in zip(rounds, p.sizes) for pair in budget_arith.read_round(path)[:size]]
    return {
        "rounds": rounds,
        "results": budget_pair_results(wildcards.method, pairs) + budget_baselines(wildcards.method),
        "side": [ancient(f) for f in budget_side_files(wildcards.method).values()],
    }


def budget_complete_args(wildcards):
    p = budget_plan()
    return q(["--results-dir", RESULTS, "--method", wildcards.method, "--tasks", *TASKS, "--seeds", *SEEDS, "--mode", MODE,
              "--rounds", *[budget_round_file(wildcards.method, r) for r in range(p.rounds)], "--sizes", *p.sizes,
              "--level", ANALYSIS["level"], "--seed", p.seed, *budget_side_args(wildcards.method), "--out-dir", BUDGET_DIR])


def budget_outputs(method="{method}", reported=False):
    """The tables (CSV + parquet) and figures (PNG + PDF) of one method's budgeted study (``reported``: the
    PNGs marked for `snakemake --report`, with their captions workflow/report/budget_*.rst)."""
    def figure(name, ext):
        path = layout.BUDGET_FIGURE.template(BUDGET_DIR, method=method, name=name, ext=ext)
        if reported and ext == "png":
            return report(path, caption=f"../report/budget_{name}.rst", category="Budget", labels={"figure": name, "method": method})
        return path

    return (
        [layout.BUDGET_TABLE.template(BUDGET_DIR, method=method, name=n, ext=e) for n in BUDGET_TABLES for e in ("csv", "parquet")]
        + [figure(n, e) for n in BUDGET_FIGURES for e in ("png", "pdf")]
    )


def budget_targets():
    """What `snakemake budgeted` builds: every baseline, and per method its completed matrix, best sources,
    progress and figures (which need every round). Nothing unless the run asks for the budgeted study."""
    if not budget_requested():
        return []
    return budget_baselines() + [f for m in METHODS for f in budget_outputs(m)]
