"""The documentation holds together: links resolve, the README stays short and says what CI and the CLI do."""

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"(`+).*?\1", re.DOTALL)


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def code_blocks(text: str) -> list[str]:
    """The contents of the fenced code blocks of a Markdown text."""
    blocks, current = [], None
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower-case, punctuation removed, spaces to hyphens."""
    text = heading.strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeated ones."""
    seen: dict[str, int] = {}
    result = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> list[str]:
    """The targets of the links and images of a Markdown file (code left out; link text may wrap)."""
    prose = "\n".join(prose_lines(path.read_text(encoding="utf-8")))
    return _LINK.findall(_INLINE_CODE.sub("", prose))


def headings(path: Path) -> set[str]:
    """The heading texts of a Markdown file."""
    return {
        match.group(1)
        for line in prose_lines(path.read_text(encoding="utf-8"))
        if (match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line))
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http(s), mailto: not fetched
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{target} (no file {resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved})")
        elif anchor:
            if resolved.suffix != ".md":
                broken.append(f"{target} (an anchor into a file that is not Markdown)")
            elif anchor not in anchors(resolved):
                broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    assert not broken, f"broken links in {page.relative_to(ROOT)}: {broken}"


def test_the_slug_rules_are_githubs():
    assert slug("Big runs, progress and stopping") == "big-runs-progress-and-stopping"
    assert slug("On 16 cores and a GPU: where the time goes (2026-11-26)") == "on-16-cores-and-a-gpu-where-the-time-goes-2026-11-26"
    assert slug("`newswatch serve`") == "newswatch-serve"


@pytest.mark.parametrize(
    "page", [page for page in PAGES[1:] if page.name != "settings.md"],  # settings.md is generated
    ids=lambda page: str(page.relative_to(ROOT)),
)
def test_every_page_links_back_to_the_readme(page):
    assert README.resolve() in {(page.parent / target.partition("#")[0]).resolve() for target in links(page)}


def test_the_readme_reads_in_five_minutes():
    words = len(README.read_text(encoding="utf-8").split())
    assert words < 1500, f"README.md has {words} words; move detail to docs/"


def test_the_readme_lists_every_documentation_page():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}
    pages = [ROOT / "BENCHMARKS.md", *(ROOT / "docs").glob("*.md")]
    assert not [page.name for page in pages if page.resolve() not in linked]


def _setup_commands() -> list[str]:
    commands = [
        block.strip() for block in code_blocks(README.read_text(encoding="utf-8"))
        if block.strip().startswith("python3 -m venv .venv")
    ]
    assert len(commands) == 2, "the README has two set-up commands"
    return commands


def _ci_install_and_test() -> str:
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    matches = [line for line in lines if line.startswith("python3 -m venv .venv")]
    assert len(matches) == 1, ".ci/run installs and tests in one line"
    return matches[0]


def test_the_readme_test_command_is_what_ci_runs():
    _, test_command = _setup_commands()
    ci_steps = _ci_install_and_test().split(" && ")
    assert test_command.split(" && ") == ci_steps
    assert any("pip install -e" in step and "test" in step for step in ci_steps)
    assert ci_steps[-1] == ".venv/bin/python -m pytest"


def test_the_readme_main_job_installs_as_ci_does_without_the_test_extra():
    main_job, _ = _setup_commands()
    steps = main_job.split(" && ")
    ci_steps = _ci_install_and_test().split(" && ")
    assert steps[:-1] == [step.replace("'.[openvino,test]'", "'.[openvino]'") for step in ci_steps[:-1]]
    assert steps[-1] == ".venv/bin/newswatch run --fixtures tests/fixtures/seeds"
    assert list((ROOT / "tests" / "fixtures" / "seeds").glob("*.txt"))


def _readme_command_list() -> list[str]:
    """The commands of the README's block of `newswatch ...` lines (a line may continue as an indented comment)."""

    def is_command_block(block: str) -> bool:
        lines = block.strip().splitlines()
        return bool(lines) and lines[0].startswith("newswatch ") and all(
            line.startswith("newswatch ") or line.strip().startswith("#") for line in lines
        )

    blocks = [block for block in code_blocks(README.read_text(encoding="utf-8")) if is_command_block(block)]
    assert len(blocks) == 1, "the README has one block of newswatch commands"
    return [line.split()[1] for line in blocks[0].strip().splitlines() if line.startswith("newswatch ")]


def _registered_commands() -> set[str]:
    from flows.cli import app

    return {
        command.name or command.callback.__name__.replace("_", "-")
        for command in app.registered_commands
        if not command.hidden  # an earlier name still accepted (`clusters`)
    }


def test_every_cli_command_is_in_the_readme_command_list():
    listed = set(_readme_command_list())
    missing = sorted(_registered_commands() - listed)
    assert not missing, f"README command list lacks: {missing}"


def test_the_readme_command_list_names_only_real_commands():
    unknown = sorted(set(_readme_command_list()) - _registered_commands())
    assert not unknown, f"README lists commands newswatch does not have: {unknown}"


def test_sections_quoted_in_the_code_exist():
    """A comment that cites a section of the README or BENCHMARKS.md by its quoted name names a heading there."""
    quote = re.compile(r"\((README|BENCHMARKS)(?:\.md)?, \"([^\"]+)\"\)")
    sources = [
        path for folder in ("extract", "monitoring", "reading", "flows", "warehouse", "dashboards", "bench", "tests", "docker")
        for path in (ROOT / folder).rglob("*") if path.is_file() and path.suffix in {".py", ""}
    ] + [ROOT / "Dockerfile", ROOT / "compose.yaml"]
    missing = []
    for path in sources:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for document, section in quote.findall(text):
            if section not in headings(ROOT / f"{document}.md"):
                missing.append(f"{path.relative_to(ROOT)}: {document}, {section!r}")
    assert not missing, missing
