"""The docs stay true to the code: generated flag tables are current, relative links resolve."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pipelines.flag_tables import split_default, stale_pages, tables

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The page without fenced code blocks."""
    return _FENCE.sub("", text)


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -N
    for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(_prose(text)):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", plain.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_flag_tables_match_the_code():
    stale, missing = stale_pages()
    assert not stale, (
        f"the flag tables in {', '.join(str(p.relative_to(ROOT)) for p in stale)} differ "
        "from the code; run `make docs`"
    )
    assert not missing, f"no flag table in docs/ for {', '.join(missing)}: add its markers"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    broken = []
    for target in _LINK.findall(_CODE.sub("", _prose(page.read_text()))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_anchors_follow_github_rules():
    text = "# A `b_c` (d)\n## Why: I/O, in series\n```\n# no heading\n```\n## Why: I/O, in series\n"
    assert anchors(text) == {"a-b_c-d", "why-io-in-series", "why-io-in-series-1"}


def test_a_table_row_per_flag_with_its_default_split_out():
    parser = argparse.ArgumentParser()
    parser.add_argument("src", help="where from")
    group = parser.add_argument_group("What to do")
    group.add_argument("--size", metavar="INT", help="side in pixels (default: 64)")
    group.add_argument("--fresh", action="store_true", help="start over (default: False)")
    group.add_argument("--mode", metavar="STR", choices=("a", "b"), help="a | b (required)")
    group.add_argument("--hidden", help=argparse.SUPPRESS)
    assert tables(parser) == [
        ("Positional arguments", ["| `SRC` | where from |  |"]),
        (
            "What to do",
            [
                "| `--size INT` | side in pixels | `64` |",
                "| `--fresh` | start over | off |",
                "| `--mode STR` | a \\| b | required |",
            ],
        ),
    ]
    assert split_default("x; unset: as validated") == ("x", "as validated")
    assert split_default("no default here") == ("no default here", None)


_CODE_LINK = re.compile(r"docs/(\w+\.md)(?:#([\w-]+))?")


def test_the_codes_links_into_docs_point_at_headings_that_exist():
    """Comments cite docs/design.md#... for the measurements behind a choice."""
    broken = []
    for path in sorted(
        p for d in ("pipelines", "pix2pix_core", "benchmarks") for p in (ROOT / d).rglob("*.py")
    ):
        for page, anchor in _CODE_LINK.findall(path.read_text()):
            dest = ROOT / "docs" / page
            if not dest.exists() or (anchor and anchor not in anchors(dest.read_text())):
                broken.append(f"{path.relative_to(ROOT)}: docs/{page}#{anchor}")
    assert not broken, broken
