"""The Dockerfile, checked statically (no Docker engine is needed to read it)."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
INSTRUCTIONS = [
    line.strip() for line in DOCKERFILE.replace("\\\n", " ").splitlines() if line.strip() and not line.lstrip().startswith("#")
]


def instruction(name: str) -> list[str]:
    return [line[len(name):].strip() for line in INSTRUCTIONS if line.upper().startswith(name + " ")]


def test_small_python_311_base():
    assert instruction("FROM") == ["python:3.11-slim"]


def test_cpu_torch_is_installed_first_with_the_pyproject_pin():
    pins = [d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"] if d.startswith("torch")]
    assert pins == ["torch==2.13.0"]
    runs = instruction("RUN")
    torch_install = next(i for i, line in enumerate(runs) if "torch" in line)
    project_install = next(i for i, line in enumerate(runs) if re.search(r"pip install (-e )?'?\.(\[[\w,]+\])?'?( |$)", line))
    assert torch_install < project_install
    assert pins[0] in runs[torch_install] and "download.pytorch.org/whl/cpu" in runs[torch_install]


def test_the_openvino_runtime_is_installed_as_the_readme_installs_it():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pin = re.search(r"pip install --no-deps (optimum-intel==[\d.]+)", readme).group(1)
    install = next(line for line in instruction("RUN") if "optimum-intel" in line)
    assert "'.[openvino]'" in install and f"pip install --no-deps {pin}" in install
    # The export is made at build time, so a container never exports (or falls back) at start.
    assert "backend='openvino'" in install and "backend_in_use == 'openvino'" in install


def test_every_package_is_copied_before_the_install():
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    copies = " ".join(instruction("COPY"))
    assert all(f"{package} ./{package}" in copies for package in packages), copies


def test_runs_as_a_non_root_user_with_a_data_volume_a_health_check_and_serve():
    user = instruction("USER")
    assert user and user[-1] not in ("root", "0")
    assert instruction("VOLUME") == ['["/data"]']
    assert "NEWSWATCH_DB=/data/" in DOCKERFILE and "NEWSWATCH_PREFECT_HOME=/data/" in DOCKERFILE
    assert any("newswatch" in check and "status" in check for check in instruction("HEALTHCHECK"))
    assert instruction("CMD") == ['["newswatch", "serve"]']
    assert INSTRUCTIONS.index(next(l for l in INSTRUCTIONS if l.startswith("USER"))) < INSTRUCTIONS.index(
        next(l for l in INSTRUCTIONS if l.startswith("CMD")))
