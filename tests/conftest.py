import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub


@pytest.fixture(scope="session")
def tiny_clip():
    from mvlpt.models.clip import load_clip

    return load_clip("mvlpt-tiny", None, device="cpu", init_seed=0)
