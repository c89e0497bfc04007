"""The study config, typed, with one home for its defaults (issue 23).

* **One schema**: ``mvlpt/study/config.schema.yaml`` (package data) states the keys, types, ranges and the
  defaults of the study config. Everything else reads them from it: :data:`DEFAULTS` (top level),
  :data:`ANALYSIS_DEFAULTS`, :data:`SIMILARITY_DEFAULTS`, :data:`PREDICTOR_DEFAULTS`,
  :data:`MULTITASK_DEFAULTS`, :data:`BUDGET_DEFAULTS` (a key the schema gives no default is None: "the study's own", see the
  schema's descriptions) and the section dataclasses below are derived from it on import. The one
  exception is ``train``: its defaults are :class:`mvlpt.training.config.TrainConfig`'s (what ``mvlpt train``
  uses without a config); the schema states only the types of its keys.
* **One check**: :func:`load` (a config dict -> :class:`StudyConfig`, or one sentence,
  :class:`~mvlpt.errors.MvlptError`) applies :func:`mvlpt.study.configcheck.rule_problems` and fills in the
  defaults. The workflow calls it once at start (``workflow/rules/config.smk``), ``mvlpt preflight``
  applies the same rules (:func:`problems`).

Cheap on purpose: every Snakemake start and every job imports this (PyYAML's C loader reads the
schema in milliseconds; no torch, no numpy).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from importlib import resources
from pathlib import Path
from typing import Any

from mvlpt.errors import MvlptError
from mvlpt.training.config import TrainConfig

SCHEMA_FILE = "config.schema.yaml"


def schema_path() -> Path:
    """The config schema's file (package data; a JSON schema written as YAML)."""
    return Path(str(resources.files(__package__).joinpath(SCHEMA_FILE)))


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8"), Loader=loader)


def schema() -> dict:
    """The config schema (a fresh copy: callers may change it)."""
    return copy.deepcopy(_schema())


def _defaults_of(properties: dict) -> dict:
    return {k: copy.deepcopy(p.get("default")) for k, p in properties.items()}


def section_defaults(section: str) -> dict:
    """Every key of config section ``section`` with the schema's default (None where it states none)."""
    try:
        props = _schema()["properties"][section]["properties"]
    except KeyError:
        raise MvlptError(f"the config has no section {section!r}; see config/README.md.") from None
    return _defaults_of(props)


def choices(*key: str) -> list:
    """The values the schema allows for config key ``key`` (a path: ``choices("analysis", "fdr")``): for
    command-line options that mirror a config key, without importing the module that implements them."""
    node = _schema()
    for k in key:
        node = node["properties"][k]
    return list(node["enum"])


def fill_defaults(cfg: dict) -> dict:
    """``cfg`` with the schema's defaults filled in, in place and returned: a missing key with a default
    gets it, and every mapping (given or defaulted) gets its own keys' defaults; keys without one stay
    absent. What Snakemake's ``validate`` does with a schema's defaults."""

    def fill(instance, sch):
        if not isinstance(instance, dict):
            return
        for key, sub in (sch.get("properties") or {}).items():
            if "default" in sub and key not in instance:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance and sub.get("properties"):
                fill(instance[key], sub)

    fill(cfg, _schema())
    return cfg


# The defaults, derived from the schema (above: one home).
DEFAULTS: dict[str, Any] = fill_defaults({})  # every key but `tasks`, sections with their own defaults
ANALYSIS_DEFAULTS: dict[str, Any] = section_defaults("analysis")
SIMILARITY_DEFAULTS: dict[str, Any] = section_defaults("similarity")
PREDICTOR_DEFAULTS: dict[str, Any] = section_defaults("predictors")
MULTITASK_DEFAULTS: dict[str, Any] = section_defaults("multitask")
BUDGET_DEFAULTS: dict[str, Any] = section_defaults("budget")
MODEL_DEFAULTS: dict[str, Any] = section_defaults("model")
ELEVATER_DEFAULTS: dict[str, Any] = section_defaults("elevater")


def _section_class(section: str, doc: str) -> type:
    """A frozen dataclass with the fields of config section ``section`` and the schema's defaults."""
    fields = []
    for key, value in section_defaults(section).items():
        if isinstance(value, (list, dict)):
            fields.append((key, Any, dataclasses.field(default_factory=functools.partial(copy.deepcopy, value))))
        else:
            fields.append((key, Any, dataclasses.field(default=value)))
    cls = dataclasses.make_dataclass(
        section.title().replace("_", "") + "Settings", fields, frozen=True, namespace={"__doc__": doc, "__module__": __name__}
    )
    return cls


ModelSettings = _section_class("model", "The frozen CLIP: open_clip name, weights (None: random init), init seed.")
ElevaterSettings = _section_class("elevater", "Options of the ELEVATER suite (hateful_memes_metric None: ELEVATER's, ROC-AUC).")
SimilaritySettings = _section_class("similarity", "Task-similarity options (None: the study's own seeds, shots, device).")
AnalysisSettings = _section_class("analysis", "Correlation, resampling and figure options.")
PredictorSettings = _section_class("predictors", "Transferability predictors (names None: every one).")
MultitaskSettings = _section_class("multitask", "The multitask study (methods None: the study's, and SoftCPT with CoOp).")
BudgetSettings = _section_class(
    "budget", "The budgeted study (mvlpt.study.budget: pairs and rounds; initial None: every task twice each way)."
)


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """A checked study config with its defaults filled in (:func:`load`)."""

    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    shots: int
    fewshot_policy: str
    preflight: bool
    mode: str
    stack_seeds: bool
    model: ModelSettings
    train: TrainConfig  # the `train` section over TrainConfig's defaults
    train_options: dict  # the `train` section as given (the keys the config sets)
    method_options: dict
    elevater: ElevaterSettings
    device: str
    data_dir: str | None
    results_dir: str
    cache_dir: str
    similarity: SimilaritySettings
    analysis: AnalysisSettings
    predictors: PredictorSettings
    multitask: MultitaskSettings
    budget: BudgetSettings
    config: dict = dataclasses.field(repr=False, compare=False, default_factory=dict)

    def as_dict(self) -> dict:
        """The config as a plain dict, the schema's defaults filled in (what the workflow reads)."""
        return copy.deepcopy(self.config)


def problems(cfg: dict, *, multitask: bool = False, budget: bool = False) -> list[str]:
    """What is wrong with ``cfg`` (a config dict as read from YAML), one clause each, without a final
    period (empty: nothing): :func:`mvlpt.study.configcheck.rule_problems`, the one rule set."""
    from mvlpt.study.configcheck import rule_problems

    return rule_problems(copy.deepcopy(cfg), multitask=multitask, budget=budget)


def load(cfg: dict, *, multitask: bool = False, budget: bool = False, checked: bool = False) -> StudyConfig:
    """The study config ``cfg`` checked (``multitask``, ``budget``: its ``multitask`` or ``budget`` section
    too, for a run that asks for that study) and typed, with
    the schema's defaults filled in; otherwise one sentence naming every problem (:class:`MvlptError`).
    ``checked``: the same config was checked already (the workflow's jobs on a cluster parse the workflow
    again, with the config its main process checked): typed only, without the schema and the registries."""
    if not isinstance(cfg, dict):
        raise MvlptError(
            f"invalid config: the config must be a mapping of settings (see config/README.md), got {type(cfg).__name__}."
        )
    found = [] if checked else problems(cfg, multitask=multitask, budget=budget)
    if found:
        raise MvlptError(f"invalid config: {'; '.join(found)}.")
    full = fill_defaults(copy.deepcopy(cfg))
    return StudyConfig(
        tasks=tuple(full["tasks"]),
        methods=tuple(full["methods"]),
        seeds=tuple(int(s) for s in full["seeds"]),
        shots=int(full["shots"]),
        fewshot_policy=full["fewshot_policy"],
        preflight=bool(full["preflight"]),
        mode=full["mode"],
        stack_seeds=bool(full["stack_seeds"]),
        model=ModelSettings(**full["model"]),
        train=TrainConfig.from_dict(full["train"]),
        train_options=dict(full["train"]),
        method_options=copy.deepcopy(full["method_options"]),
        elevater=ElevaterSettings(**full["elevater"]),
        device=full["device"],
        data_dir=full["data_dir"],
        results_dir=full["results_dir"],
        cache_dir=full["cache_dir"],
        similarity=SimilaritySettings(**full["similarity"]),
        analysis=AnalysisSettings(**full["analysis"]),
        predictors=PredictorSettings(**full["predictors"]),
        multitask=MultitaskSettings(**full["multitask"]),
        budget=BudgetSettings(**full["budget"]),
        config=full,
    )
