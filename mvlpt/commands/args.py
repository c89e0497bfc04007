"""Argument helpers the CLI verbs share: the model options (:func:`add_model_args`), the scoring options
(:func:`add_metric_args`), what ``--pretrained`` means (:func:`pretrained_arg`), the data folder's check
(:func:`check_data_dir`) and the help formatter that shows defaults (:class:`DefaultsHelpFormatter`).
Cheap to import: every ``mvlpt`` command builds its parser with them."""

from __future__ import annotations

import argparse

# Without --pretrained a model gets the weights mvlpt ships for it (mvlpt.models.clip.TINY_WEIGHTS),
# else a random init (as open_clip.create_model without pretrained); `--pretrained none`: random init.
SHIPPED_WEIGHTS = {"mvlpt-tiny": "synthetic"}


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, except a default of None: that option's help says
    what happens without it."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def pretrained_arg(model: str, value: str | None) -> str | None:
    """The weights a --model/--pretrained pair means: None = random init (see SHIPPED_WEIGHTS)."""
    if value is None:
        return SHIPPED_WEIGHTS.get(model)
    return None if value.strip() in ("", "none", "None") else value


def check_data_dir(value: str | None) -> None:
    """A data folder that is a file is said to be one (not reported as missing data later)."""
    from mvlpt.datasets.paths import resolve_data_dir
    from mvlpt.io import check_folder

    check_folder(resolve_data_dir(value), "data folder")


def add_model_args(p) -> None:
    """--model, --pretrained, --init-seed, --device, --data-dir: every verb that loads the frozen CLIP."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model", default="mvlpt-tiny", help="open_clip model name; the paper: ViT-B-16-quickgelu (default: %(default)s)"
    )
    g.add_argument(
        "--pretrained",
        default=None,
        help="open_clip pretrained tag (the paper: openai) or a weights file; none: random init "
        "(default: the weights mvlpt ships for the model, i.e. synthetic for mvlpt-tiny; else random init)",
    )
    g.add_argument(
        "--init-seed", type=int, default=0, help="seed of the random init when no weights are given (default: %(default)s)"
    )
    g.add_argument(
        "--device", default="auto", help="auto (a free GPU if any, else CPU), cpu, cuda or cuda:N (default: %(default)s)"
    )
    g.add_argument(
        "--data-dir", default=None, help="where task data lives (ELEVATER tasks; default: $MVLPT_DATA_DIR or ~/.cache/mvlpt/data)"
    )


def add_metric_args(p) -> None:
    """--hateful-memes-metric: every verb that scores a task on its test or validation split (checked by
    mvlpt.tasks.elevater.scored_task: importing the suite here would slow every command's start)."""
    p.add_argument(
        "--hateful-memes-metric",
        metavar="METRIC",
        default=None,
        help="how ELEVATER's hateful-memes is scored: roc_auc (ELEVATER's, the default) or accuracy "
        "(the MVLPT reference code's); the config key elevater.hateful_memes_metric",
    )
