"""The package declares every file its modules read, so a built (non-editable) install has them too.

`.ci/wheel-smoke` builds and runs the wheel itself; this is the fast check of the declaration.
"""

import fnmatch
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_data_file_of_the_packages_is_package_data():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = tool.get("package-data", {})
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *tool["packages"]],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    data = [Path(name) for name in listed if not name.endswith(".py")]
    assert data, "no data files found: is this a git checkout?"
    missing = [
        str(path) for path in data
        if not any(fnmatch.fnmatch(path.name, pattern) for pattern in declared.get(path.parts[0], []))
    ]
    assert not missing, f"add to [tool.setuptools.package-data]: {missing}"
