"""Shared fixtures: the seed articles and an environment that never reaches the network."""

import os
import shutil
from pathlib import Path

import pytest

# Before Prefect or transformers are imported by any test module.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SEEDS = Path(__file__).parent / "fixtures" / "seeds"
ORIGINAL, REWRITE, OTHER = sorted(path.name for path in SEEDS.glob("*.txt"))


@pytest.fixture
def seeds_copy(tmp_path: Path):
    """A function copying chosen seed files into a fresh folder and returning it."""

    def copy(*names: str, folder: str = "in") -> Path:
        target = tmp_path / folder
        target.mkdir(exist_ok=True)
        for name in names:
            shutil.copy(SEEDS / name, target / name)
        return target

    return copy
