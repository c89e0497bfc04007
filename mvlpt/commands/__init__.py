"""CLI verbs beyond the core ones: each module has ``add_parser(subparsers)``; see ``mvlpt.cli``."""
