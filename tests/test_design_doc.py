"""docs/design.md is the design the code cites (issue 21 item 8).

Every anchor of docs/design.md written in the code, configs and docs names one
of its headings, every test that docs/design.md cites as checking a known
answer exists, and nothing cites the unshipped brief the design replaced.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
SOURCES = ("attn_env", "agents", "training", "runner", "attn_market", "tests")
SOURCES += ("docs", "configs", "examples", "benchmarks", "scripts")
SUFFIXES = {".py", ".md", ".yaml", ".toml"}
OLD_NAME = "DESIGN" + ".md"  # spelled apart so that this file does not cite it


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation out, dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """The anchors of every heading of ``markdown``."""
    return {slug(m) for m in re.findall(r"^#+ (.+)$", markdown, flags=re.M)}


def project_files() -> list[Path]:
    """The project's own source, config and doc files."""
    files = [ROOT / "README.md"]
    for top in SOURCES:
        files += [p for p in (ROOT / top).rglob("*") if p.suffix in SUFFIXES]
    return [p for p in files if p.is_file()]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("The action recipe", "the-action-recipe"),
        ("Known answers", "known-answers"),
        ("Does r pick relevant ads?", "does-r-pick-relevant-ads"),
        ("Use it from your RL library", "use-it-from-your-rl-library"),
        ("Learning to bid (`training/`)", "learning-to-bid-training"),
    ],
)
def test_slug_by_hand(heading, anchor) -> None:
    assert slug(heading) == anchor


def test_every_design_anchor_cited_exists() -> None:
    known = anchors(DESIGN.read_text(encoding="utf-8"))
    bad = [
        f"{path.relative_to(ROOT)}: #{anchor}"
        for path in project_files()
        for anchor in re.findall(r"design\.md#([\w-]+)", path.read_text("utf-8"))
        if anchor not in known
    ]
    assert bad == [], f"anchors missing from docs/design.md: {bad}"


def test_every_test_the_design_cites_exists() -> None:
    cited = re.findall(r"(tests/\w+\.py)::(\w+)", DESIGN.read_text("utf-8"))
    assert len(cited) >= 20  # one or more per known answer
    missing = [
        f"{file}::{name}"
        for file, name in cited
        if not re.search(rf"^def {name}\(", (ROOT / file).read_text("utf-8"), re.M)
    ]
    assert missing == []


def test_nothing_cites_the_unshipped_brief() -> None:
    citing = [
        str(p.relative_to(ROOT)) for p in project_files() if OLD_NAME in p.read_text()
    ]
    assert citing == []
