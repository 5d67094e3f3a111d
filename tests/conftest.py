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


_LOOPBACK_NAMES = {None, "", "localhost", "localhost.localdomain", b"localhost"}


@pytest.fixture(autouse=True, scope="session")
def no_network():
    """Refuse DNS for any name but localhost, so no test can reach the network by mistake."""
    import ipaddress
    import socket

    real = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in _LOOPBACK_NAMES:
            try:
                ipaddress.ip_address(name.split("%")[0])  # a literal address needs no DNS
                literal = True
            except ValueError:
                literal = False
            if not literal:
                raise socket.gaierror(socket.EAI_NONAME, f"tests may not resolve {name!r}: loopback only")
        return real(host, *args, **kwargs)

    socket.getaddrinfo = loopback_only
    yield
    socket.getaddrinfo = real
