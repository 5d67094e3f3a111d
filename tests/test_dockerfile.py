"""The Dockerfile, compose.yaml and the container's `newswatch` wrapper, checked without a container engine.

The image itself is built and smoke-tested where podman can run it (`image-check`, BENCHMARKS.md);
these checks read the files, and run the wrapper as an unprivileged user where the tests run as root.
"""

import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml

from extract.opml import read_opml
from flows.settings import Settings

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
INSTRUCTIONS = [
    line.strip() for line in DOCKERFILE.replace("\\\n", " ").splitlines() if line.strip() and not line.lstrip().startswith("#")
]
WRAPPER = ROOT / "docker" / "newswatch"


def instruction(name: str, instructions: list[str] = INSTRUCTIONS) -> list[str]:
    return [line[len(name):].strip() for line in instructions if line.upper().startswith(name + " ")]


def stages() -> list[list[str]]:
    """The instructions of each stage, FROM first."""
    found: list[list[str]] = []
    for line in INSTRUCTIONS:
        if line.upper().startswith("FROM "):
            found.append([])
        found[-1].append(line)
    return found


def test_small_python_311_base_in_every_stage():
    assert [line.split()[0] for line in instruction("FROM")] == ["python:3.11-slim", "deps", "python:3.11-slim"]


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
    # Both exports are made at build time, so a container never exports (or falls back) at start.
    export = next(line for line in instruction("RUN") if "Embedder(" in line)
    assert "backend_in_use == 'openvino'" in export and "backend_in_use == 'openvino-int8'" in export


def test_dependencies_install_before_the_source_is_copied():
    """A code or README edit reuses the dependency layer (only pyproject.toml comes before it)."""
    deps, build = stages()[0], stages()[1]
    assert [line for line in deps if line.startswith("COPY")] == ["COPY pyproject.toml ./"]
    assert any("'.[openvino]'" in line for line in deps)
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    copies = " ".join(instruction("COPY", build))
    top_level = {package.split(".")[0] for package in packages}  # a subpackage comes with its folder
    assert all(f"{package} ./{package}" in copies for package in top_level), copies
    # The dependencies' stand-in packages are made from the same list, so a new package cannot break the build.
    assert any("tool']['setuptools']['packages']" in line for line in deps)
    final_install = max(i for i, line in enumerate(build) if "pip install --no-deps ." in line)
    assert final_install > max(i for i, line in enumerate(build) if line.startswith("COPY"))


def test_the_runtime_stage_copies_the_environment_not_the_build_leftovers():
    """The dependencies' layer is reused while they stay the same; the project comes last, on top."""
    runtime = stages()[2]
    copies = [line for line in runtime if line.startswith("COPY --from")]
    assert copies == ["COPY --from=deps /opt/newswatch /opt/newswatch", "COPY --from=build /stage/ /"]
    assert runtime.index(copies[1]) > max(i for i, line in enumerate(runtime) if line.startswith("RUN"))
    assert not [line for line in runtime if "pip install" in line]
    assert any("rm -rf /tmp/* /root/.cache" in line for line in runtime)


def test_data_volume_ports_health_check_and_serve():
    assert instruction("VOLUME") == ['["/data"]']
    # The Prefect UI, the dashboard and the HTTP API (on its default port, `newswatch api`).
    assert instruction("EXPOSE") == [f"4200 8501 {Settings.model_fields['api_port'].default}"]
    for setting in ("NEWSWATCH_DB=/data/", "NEWSWATCH_PREFECT_HOME=/data/", "NEWSWATCH_PREFECT_HOST=0.0.0.0",
                    "NEWSWATCH_DASHBOARD_HOST=0.0.0.0", "PREFECT_UI_STATIC_DIRECTORY=/opt/newswatch/prefect-ui"):
        assert setting in DOCKERFILE
    (check,) = instruction("HEALTHCHECK")
    assert "newswatch" in check and "status" in check and "--check" in check
    assert int(re.search(r"--interval=(\d+)s", check).group(1)) <= 15  # the first check comes early
    assert instruction("CMD") == ['["newswatch", "serve"]']


def test_prefect_ui_is_prepared_at_build_time_in_a_folder_the_service_user_owns():
    (prepare,) = [line for line in instruction("RUN", stages()[2]) if "create_ui_app" in line]
    assert "test -f /opt/newswatch/prefect-ui/v1/index.html" in prepare
    assert "chown -R 10001:0" in prepare and "/opt/newswatch/prefect-ui" in prepare


def test_the_wrapper_is_the_newswatch_on_the_path_and_never_runs_the_command_as_root():
    assert "COPY docker/newswatch /usr/local/bin/newswatch" in INSTRUCTIONS
    assert not instruction("USER")  # the wrapper drops to the service user itself
    assert "useradd --uid 10001 --gid 0" in DOCKERFILE
    text = WRAPPER.read_text()
    assert text.startswith("#!/opt/newswatch/bin/python\n") and os.access(WRAPPER, os.X_OK)
    assert "os.setuid(user.pw_uid)" in text and text.index("os.setuid") < text.index("os.execv")


def test_dockerignore_keeps_the_context_to_what_is_copied():
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "**"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = {line.split()[1].rstrip("/") for line in INSTRUCTIONS if line.startswith("COPY ") and "--from" not in line}
    assert copied
    for source in copied:
        assert any(source == rule or source.startswith(rule + "/") for rule in allowed), source


def test_compose_runs_the_service_and_the_dashboard_on_one_volume():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    service, dashboard = compose["services"]["newswatch"], compose["services"]["dashboard"]
    assert service["command"] == ["newswatch", "serve"] and dashboard["command"] == ["newswatch", "dashboard"]
    assert service["build"] == "." and dashboard["image"] == service["image"]
    assert "newswatch-data:/data" in service["volumes"] and "newswatch-data:/data" in dashboard["volumes"]
    assert "newswatch-data" in compose["volumes"]
    feeds = service["environment"]["NEWSWATCH_FEEDS_FILE"]
    (mount,) = [volume for volume in service["volumes"] if volume.split(":")[1] == feeds]
    # The mounted file ships with the project (a missing one would be mounted as an empty folder).
    assert read_opml((ROOT / mount.split(":")[0]).read_bytes()) == []
    assert service["healthcheck"]["test"] == ["CMD", "newswatch", "status", "--check"]
    assert {service["restart"], dashboard["restart"]} == {"unless-stopped"}
    # Published on the host's loopback only: neither UI has a login.
    assert service["ports"] == ["127.0.0.1:4200:4200"] and dashboard["ports"] == ["127.0.0.1:8501:8501"]


def test_compose_runs_the_api_only_in_its_profile_on_loopback_with_a_token():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    service, api = compose["services"]["newswatch"], compose["services"]["api"]
    port = Settings.model_fields["api_port"].default
    assert api["command"] == ["newswatch", "api"] and api["image"] == service["image"]
    assert api["profiles"] == ["api"]  # `docker compose up` alone does not start it
    assert "newswatch-data:/data" in api["volumes"]
    # Every interface inside the container (so -p reaches it), which the API accepts only with a token;
    # published on the host's loopback only, at the port the image exposes.
    assert api["environment"]["NEWSWATCH_API_HOST"] == "0.0.0.0"
    assert api["environment"]["NEWSWATCH_API_TOKEN"].startswith("${NEWSWATCH_API_TOKEN")
    assert api["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert str(port) in instruction("EXPOSE")[0].split()
    # /health is the one endpoint that never asks for the token.
    assert f"http://127.0.0.1:{port}/health" in " ".join(api["healthcheck"]["test"])
    assert api["restart"] == "unless-stopped"


def _load_wrapper():
    namespace: dict = {"__name__": "wrapper"}
    exec(compile(WRAPPER.read_text(), str(WRAPPER), "exec"), namespace)
    return namespace


needs_root = pytest.mark.skipif(os.getuid() != 0, reason="changing owners and users needs root")


@needs_root
def test_the_wrapper_hands_a_root_owned_data_folder_to_the_service_user(tmp_path):
    data = tmp_path / "data"
    (data / "prefect").mkdir(parents=True)
    (data / "newswatch.duckdb").write_bytes(b"")
    _load_wrapper()["give_to"](str(data), 10001)
    for path in (data, data / "prefect", data / "newswatch.duckdb"):
        assert (path.stat().st_uid, path.stat().st_gid) == (10001, 0)
    assert data.stat().st_mode & 0o2070 == 0o2070  # group-writable, new files keep group 0


@needs_root
def test_the_wrapper_explains_a_data_folder_another_user_cannot_write():
    # A folder every user can reach (pytest's own temporary folders are root's alone).
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        _explains_an_unwritable_data_folder(Path(folder))


def _explains_an_unwritable_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    tmp_path.chmod(0o755)
    data.chmod(0o755)  # root's, as a host folder usually is

    def become_nobody():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    # The wrapper needs only the standard library; the system Python is one any user may run.
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 for an unprivileged user")
    wrapper = tmp_path / "newswatch"
    shutil.copy(WRAPPER, wrapper)
    wrapper.chmod(0o755)
    result = subprocess.run(
        [python, str(wrapper), "run"], env={**os.environ, "NEWSWATCH_DB": str(data / "newswatch.duckdb")},
        capture_output=True, text=True, timeout=60, preexec_fn=become_nobody,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("newswatch: error: ") and "not writable by uid 65534" in line and "--user 65534:0" in line
