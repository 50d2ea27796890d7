"""The flag tables in docs/, generated from each verb's parser so that they cannot drift.

    python -m pipelines.flag_tables          # rewrite the tables in docs/*.md
    python -m pipelines.flag_tables --check  # exit 1, naming the pages out of date

A page holds a verb's tables between `<!-- flags: VERB -->` and `<!-- /flags: VERB -->`:
one `| flag | meaning | default |` table per argument group of `pix2pix VERB --help`, with
the help's "(default: X)" split out into the default column. A group that is the same as
one already shown on the page refers to it instead of repeating it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from pipelines.cli import VERBS, verb_parser

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"(<!-- flags: (?P<verb>[\w-]+) -->\n).*?(<!-- /flags: (?P=verb) -->)", re.S)
_DEFAULT = re.compile(r"\s*\((?:default: (?P<default>.*)|(?P<required>required))\)$", re.S)
_UNSET = re.compile(r";\s*unset: (?P<default>.*)$", re.S)


def split_default(help_text: str) -> tuple[str, str | None]:
    """("meaning", "default") from a help text; the default is None when it names none."""
    for pattern in (_DEFAULT, _UNSET):
        match = pattern.search(help_text)
        if match:
            default = "required" if match.groupdict().get("required") else match["default"]
            return help_text[: match.start()].strip(), default
    return help_text.strip(), None


def _cell(text: str) -> str:
    """One table cell: one line, pipes escaped, and asterisks outside `code`."""
    parts = " ".join(text.split()).split("`")
    parts[::2] = [part.replace("*", "\\*") for part in parts[::2]]
    return "`".join(parts).replace("|", "\\|")


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:  # positional
        return f"`{action.metavar or action.dest.upper()}`"
    value = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
    return ", ".join(f"`{spelling}{value}`" for spelling in action.option_strings)


def _row(action: argparse.Action) -> str:
    meaning, default = split_default(action.help or "")
    choices = [str(c) for c in action.choices or ()]
    if choices and not all(c in meaning for c in choices):
        meaning += f" (one of: {', '.join(choices)})"
    if action.nargs == 0 and default in ("False", "True"):  # a switch
        default = "on" if default == "True" else "off"
    elif default == "":
        default = '`""`'
    elif default and default != "required" and not re.search(r"\s", default):
        default = f"`{default}`"
    return f"| {_flag(action)} | {_cell(meaning)} | {_cell(default or '')} |"


def tables(parser: argparse.ArgumentParser) -> list[tuple[str, list[str]]]:
    """(group title, table rows) for each argument group of `parser`, in --help's order."""
    out = []
    for group in parser._action_groups:
        rows = [
            _row(action)
            for action in group._group_actions
            if action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)
        ]
        if rows:
            title = group.title or ""
            out.append((title[:1].upper() + title[1:], rows))
    return out


def render(verb: str, shown: dict[tuple[str, ...], str]) -> str:
    """The Markdown of `verb`'s tables. `shown`: the tables already on the page (updated)."""
    if verb not in VERBS:
        raise KeyError(f"<!-- flags: {verb} -->: no such verb; verbs: {', '.join(VERBS)}")
    parts = []
    for title, rows in tables(verb_parser(verb)[1]):
        key = (title, *rows)
        if key in shown:
            parts.append(f"**{title}**: as for `pix2pix {shown[key]}` above.\n")
            continue
        shown[key] = verb
        header = "| flag | meaning | default |\n| --- | --- | --- |\n"
        parts.append(f"**{title}**\n\n{header}" + "\n".join(rows) + "\n")
    return "\n".join(parts)


def update_page(text: str) -> str:
    """`text` (a docs page) with every flag block rendered anew."""
    shown: dict[tuple[str, ...], str] = {}
    return BLOCK.sub(lambda m: f"{m[1]}\n{render(m['verb'], shown)}\n{m[3]}", text)


def stale_pages(docs: Path = DOCS) -> tuple[dict[Path, str], list[str]]:
    """({page: its up-to-date text} for the pages out of date, verbs that have no table)."""
    stale, documented = {}, set()
    for page in sorted(docs.glob("*.md")):
        text = page.read_text()
        documented.update(m["verb"] for m in BLOCK.finditer(text))
        new = update_page(text)
        if new != text:
            stale[page] = new
    return stale, [verb for verb in VERBS if verb not in documented]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.flag_tables", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="only report pages out of date")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the docs folder")
    args = parser.parse_args(argv)
    stale, missing = stale_pages(args.docs)
    names = [os.path.relpath(page) for page in stale]
    if args.check and names:
        print(f"flag tables out of date in {', '.join(names)}; run `make docs`", file=sys.stderr)
    elif names:
        for page, text in stale.items():
            page.write_text(text)
        print(f"updated {', '.join(names)}")
    if missing:
        print(f"no flag table for {', '.join(missing)} in {args.docs}", file=sys.stderr)
    return 1 if missing or (args.check and names) else 0


if __name__ == "__main__":
    sys.exit(main())
