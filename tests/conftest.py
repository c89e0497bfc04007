import os
from typing import NamedTuple

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub


@pytest.fixture(scope="session")
def tiny_clip():
    from mvlpt.models.clip import load_clip

    return load_clip("mvlpt-tiny", None, device="cpu", init_seed=0)


class CliRun(NamedTuple):
    """What an in-process ``mvlpt`` call gave: exit status, its ``mvlpt: error:`` lines, all of stderr."""

    rc: int
    errors: list
    stderr: str


@pytest.fixture
def run_mvlpt(capsys):
    """``run_mvlpt(*args)`` runs ``mvlpt ARGS`` in-process through :func:`mvlpt.cli.main` (paths and numbers
    may be passed as they are) and returns a :class:`CliRun`, which unpacks as ``rc, errors, stderr``."""
    from mvlpt.cli import main

    def run(*args) -> CliRun:
        rc = main([str(a) for a in args])
        err = capsys.readouterr().err
        return CliRun(rc, [line for line in err.splitlines() if line.startswith("mvlpt: error:")], err)

    return run


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory):
    """The shared end-to-end study (tests/studies.py), built once per session with the README's command.
    Read it, never write into it: a test that reruns or extends it works on ``studies.copy_study``'s copy."""
    import studies

    return studies.build(tmp_path_factory.mktemp("finished-study"))
