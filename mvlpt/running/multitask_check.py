"""The ``multitask`` section of a study config: what is wrong with it, one sentence each
(:func:`multitask_problems`). Reads the config only: the preflight and the workflow's config check
(:mod:`mvlpt.study.configcheck`) call it."""

from __future__ import annotations

from mvlpt.study import settings, vocabulary

RANKED_STRATEGIES = ("gain", "similarity", "predictor")  # rank the other tasks: need at least 3 tasks


def multitask_problems(cfg: dict) -> list[str]:
    """What is wrong with ``cfg``'s ``multitask`` section, one sentence each (empty: nothing, or no
    section). Reads the config only (no torch, no data): the workflow's config check calls it too.

    A method must be known; one of the pairwise study must be among the study's ``methods`` (its pairwise
    results choose strategy gain's groups and give its baseline); a multitask-only one (SoftCPT) needs its
    baseline method there; ``k`` >= 1; ``similarity`` a measure, ``predictor`` a predictor and, when
    strategy predictor is used, one the study computes (``predictors.names``); the strategies that
    rank the other tasks (gain, similarity, predictor) need at least 3 tasks, any multitask study 2."""
    section = cfg.get("multitask")
    if section is None:
        return []
    if not isinstance(section, dict):
        return [f"multitask: the section must be a mapping of settings (docs/multitask.md), got {section!r}."]
    out = []
    unknown = [str(key) for key in section if key not in settings.MULTITASK_DEFAULTS]
    if unknown:
        out.append(
            f"multitask: unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(settings.MULTITASK_DEFAULTS)}."
        )
    study_methods = cfg["methods"] if "methods" in cfg else settings.DEFAULTS["methods"]
    study_methods = list(study_methods or [])
    tasks = cfg.get("tasks") if isinstance(cfg.get("tasks"), list) else []
    s = vocabulary.multitask_settings(section, study_methods)

    def names(key, known, what):
        v = s[key]
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            out.append(f"multitask: `{key}` must be a non-empty list of {what} ({', '.join(known)}), got {v!r}.")
            return []
        bad = [x for x in v if x not in known]
        if bad:
            out.append(f"multitask: unknown {what} {', '.join(bad)} in `{key}`; choose from {', '.join(known)}.")
        return [x for x in v if x in known]

    methods = names("methods", list(vocabulary.METHODS), "method(s)")
    names("modes", vocabulary.MULTITASK_MODES, "mode(s)")
    strategies = names("strategies", vocabulary.GROUPING_STRATEGIES, "strategy(ies)")
    for m in methods:
        meth = vocabulary.METHODS[m]
        if meth.multitask_only:
            if meth.baseline and meth.baseline not in study_methods:
                out.append(
                    f"multitask: method {m} is compared with {meth.baseline}'s single-task results, so the study's "
                    f"`methods` must include {meth.baseline}."
                )
        elif m not in study_methods:
            out.append(
                f"multitask: method {m} is not among the study's `methods` ({', '.join(map(str, study_methods))}), "
                f"whose pairwise results it needs (strategy gain and its baseline); add it there or drop it here."
            )
    k = s["k"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        out.append(f"multitask: `k` (sources per group) must be an integer >= 1, got {k!r}.")
    if s["similarity"] not in vocabulary.MEASURES:
        out.append(
            f"multitask: `similarity` must be a similarity measure ({', '.join(vocabulary.MEASURES)}), got {s['similarity']!r}."
        )
    if s["predictor"] not in vocabulary.PREDICTORS:
        out.append(
            f"multitask: `predictor` must be a transferability predictor ({', '.join(vocabulary.PREDICTORS)}), "
            f"got {s['predictor']!r}."
        )
    elif "predictor" in strategies:
        computed = (cfg.get("predictors") or {}).get("names")
        if computed is not None and s["predictor"] not in computed:
            out.append(
                f"multitask: strategy predictor reads predictor {s['predictor']}, which the study does not compute; "
                f"add it to `predictors.names` or choose one of {', '.join(map(str, computed))}."
            )
    seed = s["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        out.append(f"multitask: `seed` (of strategy random) must be an integer, got {seed!r}.")
    fixed = s.get("sources")
    if ("fixed" in strategies) != (fixed is not None):
        out.append(
            "multitask: strategy fixed takes every target's group from `sources`, and `sources` serves strategy fixed "
            "only; give both or neither."
        )
    elif fixed is not None:
        if strategies != ["fixed"]:
            out.append(f"multitask: `sources` (strategy fixed) allows no other strategy, got {', '.join(strategies)}.")
        missing = [t for t in fixed if t not in tasks]
        if missing:
            out.append(f"multitask: `sources` names {', '.join(map(str, missing))}, not among the study's `tasks`.")
        elif not [t for t in tasks if t not in set(fixed)]:
            out.append("multitask: `sources` lists every task; strategy fixed needs another task as its target.")
    ranked = [x for x in strategies if x in RANKED_STRATEGIES]
    pairwise = any(not vocabulary.METHODS[m].multitask_only for m in methods)
    if len(tasks) < 2:
        out.append(f"multitask: the multitask study needs at least 2 tasks, the config has {len(tasks)}.")
    elif ranked and pairwise and len(tasks) < 3:
        many = len(ranked) > 1
        out.append(
            f"multitask: strateg{'ies' if many else 'y'} {', '.join(ranked)} rank{'' if many else 's'} the other tasks, "
            f"which needs at least 3 tasks (the config has {len(tasks)}); add tasks or drop {'them' if many else 'it'}."
        )
    return out
