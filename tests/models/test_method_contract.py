"""The method contract (issue 23): a method is its learner module plus one registry entry, and nothing
else of mvlpt names it. A throwaway text-only method defined *in this test module* is registered and
run through the trainer, the configcheck, the cost model and the preflight without a line of
production code about it; no production module outside the vocabulary and the learners compares a
method name."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from mvlpt.errors import MvlptError
from mvlpt.models.prompts.base import PromptLearner
from mvlpt.models.prompts.text import TokenLayout
from mvlpt.running import calibration, disk_check, preflight
from mvlpt.study import vocabulary
from mvlpt.study.configcheck import rule_problems
from mvlpt.study.results import read_result
from mvlpt.training.config import RunSpec, TrainConfig
from mvlpt.training.train import run

REPO = Path(__file__).resolve().parents[2]
A, B = "shape-colours", "shapes"


class Twin(PromptLearner):
    """A text-only method unknown to mvlpt: the class context is the sum of two learned contexts."""

    method = "twin"

    def __init__(self, clip, classnames, n_ctx: int = 4, generator=None):
        super().__init__(clip, classnames)
        width = clip.model.token_embedding.weight.shape[1]
        self.a = nn.Parameter(torch.empty(n_ctx, width).normal_(0, 0.02, generator=generator))
        self.b = nn.Parameter(torch.empty(n_ctx, width).normal_(0, 0.02, generator=generator))
        self.layout = TokenLayout(clip, classnames, n_ctx, "end")
        self.n_ctx = n_ctx

    def options(self) -> dict:
        return {"n_ctx": self.n_ctx}

    @classmethod
    def parameter_count(cls, options, dims):
        return 2 * int(options["n_ctx"]) * dims["text_width"]

    def current_prompts(self) -> dict:
        return {"text": self.a + self.b, "visual": None}


class Uncounted(Twin):
    """Twin without its parameter count (the base class's)."""

    method = "uncounted"
    parameter_count = classmethod(PromptLearner.parameter_count.__func__)


@pytest.fixture
def twin():
    entry = vocabulary.register_method(
        vocabulary.Method(
            "twin",
            f"{__name__}:Twin",
            learns_text=True,
            learns_image=False,
            label="Twin",
            priced_as="coop",
        )
    )
    yield entry
    vocabulary.unregister_method("twin")


@pytest.fixture
def unpriced():
    vocabulary.register_method(
        vocabulary.Method("unpriced", f"{__name__}:Twin", learns_text=True, learns_image=False, label="Unpriced")
    )
    yield
    vocabulary.unregister_method("unpriced")


def test_a_method_from_a_test_module_trains_single_joint_and_sequential(twin, tmp_path):
    train = TrainConfig(epochs=2, lr=0.01)
    common = {
        "method": "twin",
        "seeds": [1],
        "shots": 5,
        "train": train,
        "pretrained": "synthetic",
        "cache_dir": str(tmp_path / "cache"),
    }
    single = run(
        RunSpec(tasks=[A], outputs={A: str(tmp_path / "a.json")}, save_prompts={A: str(tmp_path / "a.safetensors")}, **common)
    )[0]
    assert single["method"] == "twin" and single["method_options"] == {"n_ctx": 4}
    assert read_result(tmp_path / "a.json")["test"] == single["test"]
    joint = run(RunSpec(tasks=[A, B], outputs={A: str(tmp_path / "j.json")}, **common))[0]
    assert joint["source"] == B
    seq = run(
        RunSpec(tasks=[B], source=A, init_from=str(tmp_path / "a.safetensors"), outputs={B: str(tmp_path / "s.json")}, **common)
    )[0]
    assert seq["init_prompt"]["task"] == A


def test_the_config_check_accepts_it_without_a_schema_edit(twin):
    cfg = {"tasks": [A, B], "methods": ["coop", "twin"], "seeds": [1], "method_options": {"twin": {"n_ctx": 2}}}
    assert rule_problems(cfg) == []
    cfg["methods"] = ["coop", "twim"]
    problems = rule_problems(cfg)
    assert len(problems) == 1 and problems[0].startswith("unknown method(s) in `methods`: twim (known: coop, vpt, upt")
    assert "twin" in problems[0]


def _cfg(tmp_path, methods):
    return {
        "tasks": [A, B],
        "methods": methods,
        "seeds": [1, 2],
        "shots": 5,
        "model": {"name": "mvlpt-tiny", "pretrained": "synthetic"},
        "train": {"epochs": 2},
        "results_dir": str(tmp_path / "results"),
        "cache_dir": str(tmp_path / "cache"),
    }


def test_cost_and_preflight_price_it_from_a_calibrated_method_and_say_so(twin, tmp_path, monkeypatch):
    monkeypatch.setenv("MVLPT_COST_CALIBRATION", str(tmp_path / "none.json"))
    rep = preflight.run(_cfg(tmp_path, ["coop", "twin"]), multitask=False)
    assert rep.ok, rep.problems
    per = rep.cost["per_method"]
    assert per["twin"]["gpu_hours"] > 0 and per["twin"]["jobs"] == per["coop"]["jobs"] - 2  # coop's 2 feature jobs serve both
    note = [w for w in rep.warnings if w.startswith("cost: twin: the calibration has no figures of its own: priced with coop's")]
    assert len(note) == 1, rep.warnings
    # its prompt files are sized by its own parameter count
    assert disk_check.prompt_params("twin", {"n_ctx": 3}, 512, 768, 12) == 2 * 3 * 512


def test_a_method_without_figures_or_a_priced_as_is_refused_in_one_sentence(unpriced, tmp_path, monkeypatch):
    monkeypatch.setenv("MVLPT_COST_CALIBRATION", str(tmp_path / "none.json"))
    with pytest.raises(
        MvlptError,
        match=r"has no figures for method 'unpriced'; name a calibrated method .* as its "
        r"`priced_as` in mvlpt.study.vocabulary.METHODS\.$",
    ):
        calibration.shipped_calibration().coefficients("unpriced")
    rep = preflight.run(_cfg(tmp_path, ["unpriced"]), multitask=False)
    assert not rep.ok and any("`priced_as`" in p for p in rep.problems)


def test_a_learner_without_its_parameter_count_is_refused_not_priced_as_another(tmp_path):
    vocabulary.register_method(
        vocabulary.Method(
            "uncounted",
            f"{__name__}:Uncounted",
            learns_text=True,
            learns_image=False,
            label="Uncounted",
            priced_as="coop",
        )
    )
    try:
        with pytest.raises(
            MvlptError,
            match=r"^method 'uncounted'.s learner does not say how many parameters it has.*"
            r"give its class a parameter_count classmethod\.$",
        ):
            disk_check.prompt_params("uncounted", {}, 512, 768, 12)
    finally:
        vocabulary.unregister_method("uncounted")


def test_registering_a_taken_name_is_refused(twin):
    with pytest.raises(MvlptError, match="registered already"):
        vocabulary.register_method(twin)


# every module but the vocabulary and the learners, every rule file and the benchmarks (issue 23: none of them
# may test a method by its name)
_CHECKED = sorted(
    str(p.relative_to(REPO))
    for p in [*(REPO / "mvlpt").rglob("*.py"), *(REPO / "workflow").rglob("*.smk"), *(REPO / "benchmarks").rglob("*.py")]
    if p != REPO / "mvlpt" / "study" / "vocabulary.py" and (REPO / "mvlpt" / "models" / "prompts") not in p.parents
)


def test_no_method_name_is_compared_outside_the_vocabulary_and_the_learners():
    names = "|".join(map(re.escape, vocabulary.METHODS))
    quoted = rf"""["'](?:{names})["']"""
    compare = re.compile(rf"(?:==|!=|\bin)\s*{quoted}|{quoted}\s*(?:==|!=|\bin\b|\bnot in\b)")
    found = []
    for rel in _CHECKED:
        path = REPO / rel
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if compare.search(line.split("#")[0]):
                found.append(f"{rel}:{i}: {line.strip()}")
    assert not found, "\n".join(found)
