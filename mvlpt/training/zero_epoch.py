"""The zero-epoch transfer measure: a source's trained prompt applied to a target as it is.

The source's single-task prompt (its baseline run's best prompt file, as a sequential run starts from)
is loaded into a prompt learner built with the *target's* class names and evaluated on the target's
validation and test sets, with no training on the target. Its gain is that test metric minus the
target's baseline, like every other cell (``mvlpt collect``), with the test set's paired bootstrap
replicates (:func:`mvlpt.training.metrics.bootstrap_record`), so :mod:`mvlpt.analysis.gainstats` gives its intervals.

It is the ``zero_epoch`` mode of a study (config ``mode: zero_epoch``, rule
``transfer_zero_epoch`` in workflow/rules/zero_epoch.smk) and ``mvlpt train --zero-epoch`` on the
command line. A result records ``mode: zero_epoch`` and ``best_epoch: 0``; ``epochs`` is the study's
training setting (the source prompt's), so the cell and its baseline share one setting. The prompt
methods need no change: a prompt whose parameters do not depend on the classes (CoOp's shared
context, VPT's and UPT's prompts) fits any target, as for a sequential run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

from mvlpt.errors import MvlptError
from mvlpt.training.checkpoints import source_prompts
from mvlpt.training.config import RunSpec
from mvlpt.training.train import Trainer


@dataclasses.dataclass
class ZeroEpochSpec(RunSpec):
    """A :class:`RunSpec` whose target is evaluated with the source's prompt, untrained."""

    @property
    def mode(self) -> str:
        return "zero_epoch"

    def validate(self) -> ZeroEpochSpec:
        super().validate()
        if not self.init_from:
            raise MvlptError(
                "a zero-epoch transfer needs the source's prompt (--init-from): it evaluates that prompt on the target."
            )
        if self.save_prompts or self.save_group_prompt or self.state_path:
            raise MvlptError("a zero-epoch transfer trains nothing: it saves no prompt and keeps no training state.")
        return self

    def config_hash(self, seed: int) -> str:
        return hashlib.sha256(json.dumps({"zero_epoch": super().config_hash(seed)}).encode()).hexdigest()[:16]

    @classmethod
    def of(cls, spec: RunSpec) -> ZeroEpochSpec:
        return cls(**{f.name: getattr(spec, f.name) for f in dataclasses.fields(RunSpec)})


class ZeroEpoch(Trainer):
    """Evaluates the loaded source prompt (``spec.init_from``) on the target; trains nothing."""

    def run(self) -> list[dict]:
        spec = self.spec
        t0 = time.time()
        self._compile_start = {}
        spec.check_paths()
        spec.source, self.init_prompts = source_prompts(spec)
        for m, values in zip(self.members, self.validation()):
            # epoch -1: reported as best_epoch 0, the source prompt as loaded
            m.best = {name: {"metric": value, "loss": loss, "epoch": -1, "state": None} for name, (value, loss) in values.items()}
        return self._finish(time.time() - t0)


SOURCE_SLOT = "{source}"


def pair_specs(spec: RunSpec, sources: list[str]) -> list[ZeroEpochSpec]:
    """The zero-epoch cells of every target of ``spec.tasks`` from every other task of ``sources``, one
    :class:`ZeroEpochSpec` each, evaluated in one process (one job of the ``zero_epoch`` mode per method:
    the imports, the frozen model and the targets' data are paid once, not once per cell). ``spec.init_from``
    and each target's output path hold a ``{source}`` slot the source's name fills (``{seed}`` stays for
    :meth:`RunSpec.path`); with a single source and target the slot may be left out."""
    targets, sources = list(spec.tasks), list(dict.fromkeys(sources))
    if not sources:
        raise MvlptError("a zero-epoch transfer needs the source task(s) (--source) whose prompts it evaluates.")
    several = len(targets) * len(sources) > 1
    templates = [spec.init_from or "", *spec.outputs.values()]
    if several and not all(SOURCE_SLOT in t for t in templates):
        raise MvlptError(
            "zero-epoch transfers of several sources or targets need a {source} slot in --init-from and in every "
            "--output path (e.g. --init-from 'prompts/{source}/seed{seed}.safetensors')."
        )
    if several and set(spec.outputs) != set(targets):
        raise MvlptError("give one --output TARGET=PATH for every --task of a zero-epoch run of several cells.")
    out = []
    for target in targets:
        for source in sources:
            if source == target:
                continue
            one = ZeroEpochSpec.of(spec)
            one.tasks = [target]
            one.source = source
            one.init_from = spec.init_from.replace(SOURCE_SLOT, source) if spec.init_from else None
            one.split_files = {k: v for k, v in spec.split_files.items() if k == target}
            one.outputs = {k: v.replace(SOURCE_SLOT, source) for k, v in spec.outputs.items() if k == target}
            out.append(one.validate())
    if not out:
        raise MvlptError("no zero-epoch cell to evaluate: every --source is the --task itself (that is the baseline).")
    return out


def run(spec: RunSpec) -> list[dict]:
    """Evaluate ``spec.init_from``'s prompt on ``spec.tasks[0]``; writes and returns the results."""
    return ZeroEpoch(spec if isinstance(spec, ZeroEpochSpec) else ZeroEpochSpec.of(spec)).run()
