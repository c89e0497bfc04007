"""The CLI verbs: each module has ``add_parser(subparsers)``, adding its verbs' parsers and their handlers
(``mvlpt.cli`` lists the modules and dispatches); :mod:`mvlpt.commands.args` holds the argument helpers they share."""
