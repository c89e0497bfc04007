"""CLI verbs beyond the core ones: each module has ``add_parser(subparsers)``; see ``mvlpt.cli``."""

import argparse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, except a default of None: that option's help says
    what happens without it."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)
