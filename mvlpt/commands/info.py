"""CLI verb ``mvlpt info``: versions and the devices torch sees."""

from __future__ import annotations

from mvlpt import __version__


def run_info(args) -> int:
    import open_clip
    import torch

    print(
        f"mvlpt {__version__}, torch {torch.__version__}, open_clip {open_clip.__version__}, "
        f"cuda available: {torch.cuda.is_available()} ({torch.cuda.device_count()} devices)"
    )
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="versions and devices", description="Print versions and the devices torch sees.")
    p.set_defaults(func=run_info)
