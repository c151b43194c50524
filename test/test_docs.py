"""The documentation against the code: every CLI option in docs/cli.md, every preset in docs/trajectories.md,
a short README, and relative links (files and heading anchors) that resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from pipeline.cli import app
from trajectories import list_presets

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README_MAX_LINES = 250
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _commands(command, path=()):
    """Yield (command path, command) for every visible leaf command of the click tree under ``command``."""
    for name, sub in getattr(command, "commands", {}).items():
        if sub.hidden:  # internal (the torchrun worker), not part of the user's interface
            continue
        if hasattr(sub, "commands"):
            yield from _commands(sub, (*path, name))
        else:
            yield (*path, name), sub


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def _prose(text: str) -> str:
    """The text outside fenced code blocks (a '# comment' in a code block is not a heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#+\s+(.*?)\s*$", _prose(page.read_text()), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        yield slug if seen[slug] == 0 else f"{slug}-{seen[slug]}"


def test_every_cli_option_is_documented():
    cli_doc = (DOCS / "cli.md").read_text()
    commands = list(_commands(typer.main.get_command(app)))
    assert len(commands) >= 10, [" ".join(p) for p, _ in commands]
    missing = [" ".join(path) for path, _ in commands if f"`{' '.join(path)}`" not in cli_doc]
    missing += [f"{' '.join(path)} {opt}" for path, command in commands for param in command.params
                if param.param_type_name == "option" for opt in param.opts if f"`{opt}`" not in cli_doc]
    assert not missing, f"not in docs/cli.md (write each as `--option`): {missing}"


def test_every_preset_is_documented():
    text = (DOCS / "trajectories.md").read_text()
    presets = list_presets()
    assert presets
    assert not [name for name in presets if f"`{name}`" not in text], "presets missing from docs/trajectories.md"


def test_readme_is_short():
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference material to docs/"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in set(_anchors(dest)):
            broken.append(f"{target} (no heading with that anchor in {dest.name})")
    assert not broken, f"{page.name}: {broken}"
