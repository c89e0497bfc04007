"""The study config's rules, in one place (issue 24, class 5): the workflow
(``workflow/rules/config.smk``, ``check_config``) and ``mvlpt preflight`` (:func:`mvlpt.running.preflight.run`)
both call :func:`rule_problems`, so a config one of them accepts the other accepts too.

The rules, in order (each problem is one clause; the callers make the sentence):

0. ``shots`` (:func:`shots_problem`): a count, or a list of distinct counts (a study axis, docs/shots.md),
   named in one sentence rather than the schema's "not valid under any of the given schemas";
1. the JSON schema ``mvlpt/study/config.schema.yaml`` (:func:`schema_problem`; :mod:`mvlpt.study.settings`): keys, types,
   ranges, ``seeds`` non-empty and non-negative, ``device`` one of auto/cpu/cuda[:N],
   unique multitask strategies and modes, ``analysis.n_boot``/``n_perm`` >= 10, ``level`` in (0, 1);
2. what the schema cannot say well (:func:`config_problems`): task, method and measure names against
   mvlpt's registries (so a new method needs no schema edit), values listed twice in ``tasks``,
   ``methods`` or ``seeds``;
3. the ``multitask`` section (:func:`mvlpt.running.multitask_check.multitask_problems`) and the ``budget``
   section (:func:`mvlpt.study.budget.budget_problems`: fractions and numbers of pairs, enough tasks), when the
   run asks for that study;
4. the ``train`` section through :class:`mvlpt.training.config.TrainConfig` (what ``mvlpt train`` refuses), and
   ``multitask.task_conditioned_train`` over it.

Cheap: no torch; the task registry needs numpy and Pillow.
"""

from __future__ import annotations

import functools

from mvlpt.errors import MvlptError
from mvlpt.study import vocabulary


@functools.lru_cache(maxsize=1)
def _validator():
    import jsonschema

    from mvlpt.study.settings import schema

    return jsonschema.Draft202012Validator(schema())


def schema_problem(cfg) -> str | None:
    """The first schema violation of ``cfg`` as ``key.path: message`` (None: none)."""
    import jsonschema

    from mvlpt.training.config import yaml_text_number

    error = jsonschema.exceptions.best_match(_validator().iter_errors(cfg))
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path)
    message = error.message
    expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
    number = yaml_text_number(error.instance)
    if error.validator == "type" and "number" in expected and number is not None:  # `lr: 2e-3` is text to YAML 1.1
        message += f": YAML reads {error.instance} as text, write {number!r} instead"
    return f"{where}: {message}" if where else message


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def shots_problem(value) -> str | None:
    """What is wrong with config key ``shots`` (None: nothing): an integer >= 1, or a non-empty list of
    distinct ones (the shot counts of a study axis)."""
    if _is_count(value):
        return None
    if isinstance(value, list) and value and all(_is_count(v) for v in value):
        dups = _duplicates(value)
        return f"shots: {', '.join(map(str, dups))} listed more than once (give each shot count once)" if dups else None
    return (
        f"shots: {value!r} is neither a number of images per class (an integer >= 1) nor a list of distinct "
        "ones such as [1, 5, 20]"
    )


def _duplicates(values):
    seen, dups = set(), []
    for v in values:
        if v in seen and v not in dups:
            dups.append(v)
        seen.add(v)
    return dups


def config_problems(cfg) -> list[str]:
    """What the schema cannot say well, each as one clause (empty list: none); ``cfg`` has passed the schema."""
    from mvlpt.tasks import list_tasks  # numpy and Pillow, not torch

    problems = []
    known = set(list_tasks())
    unknown = [t for t in cfg["tasks"] if t not in known]
    if unknown:
        problems.append(f"unknown task(s) in `tasks`: {', '.join(unknown)} (known tasks: {', '.join(sorted(known))})")
    methods = cfg.get("methods") or []
    pairwise = [m.name for m in vocabulary.PAIRWISE_METHODS]
    unknown = [m for m in methods if m not in vocabulary.METHODS]
    if unknown:
        problems.append(f"unknown method(s) in `methods`: {', '.join(map(str, unknown))} (known: {', '.join(pairwise)})")
    only = [m for m in methods if m in vocabulary.METHODS and vocabulary.METHODS[m].multitask_only]
    if only:
        problems.append(
            f"method(s) {', '.join(only)} in `methods` train multitask only; list them under "
            f"`multitask.methods` (the study's `methods` are {', '.join(pairwise)})"
        )
    unknown = [m for m in (cfg.get("method_options") or {}) if m not in vocabulary.METHODS]
    if unknown:
        problems.append(
            f"unknown method(s) in `method_options`: {', '.join(map(str, unknown))} (known: {', '.join(vocabulary.METHODS)})"
        )
    for key in ("tasks", "methods", "seeds"):
        dups = _duplicates(cfg.get(key) or [])
        if dups:
            problems.append(f"value(s) listed more than once in `{key}`: {', '.join(map(str, dups))}")
    measures = (cfg.get("analysis") or {}).get("model_measures") or []
    unknown = [m for m in measures if m not in vocabulary.MEASURES]
    if unknown:
        problems.append(
            f"unknown similarity measure(s) in `analysis.model_measures`: {', '.join(unknown)} "
            f"(known: {', '.join(vocabulary.MEASURES)})"
        )
    return problems


def rule_problems(cfg, *, multitask: bool = False, budget: bool = False) -> list[str]:
    """Every rule of the module docstring, in order; a schema violation stops there (the later rules
    assume its types). Clauses without a final period."""
    problem = shots_problem(cfg["shots"]) if isinstance(cfg, dict) and "shots" in cfg else None
    problem = problem or schema_problem(cfg)
    if problem:
        return [f"{problem} (see config/README.md)"]
    problems = config_problems(cfg)
    if multitask:
        from mvlpt.running.multitask_check import multitask_problems

        problems += [p.rstrip(".") for p in multitask_problems(cfg)]
    if budget:
        from mvlpt.study.budget import budget_problems

        problems += budget_problems(cfg)
    if problems:
        return problems
    from mvlpt.training.config import TrainConfig

    try:
        TrainConfig.from_dict(cfg.get("train"))  # the rules `mvlpt train` applies
    except MvlptError as e:
        return [f"train: {str(e).rstrip('.')} (see config/README.md)"]
    conditioned = (cfg.get("multitask") or {}).get("task_conditioned_train")
    try:
        TrainConfig.from_dict({**(cfg.get("train") or {}), **(conditioned or {})})
    except MvlptError as e:
        return [f"multitask.task_conditioned_train: {str(e).rstrip('.')} (see config/README.md)"]
    return []
