"""The README is the user's manual and says what the code does: its options table has one row
for each option of the option table (``s3pput/options.py``), every flag it names anywhere
exists, the commands it shows parse, and its layout table names the package's modules as
they are. Pure: no server."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Dict, List, Set

import pytest

from s3pput import cli, options

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PACKAGE = ROOT / "s3pput"

# Flags of other programs that the README shows (Dask's worker in "More than one machine",
# rclone's in "Benchmark").
FOREIGN_FLAGS = {"--nworkers", "--nthreads", "--transfers"}
# Flags the command line has beside the option table's.
PARSER_ONLY = {"-h", "--help", "--version"}

LONG_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
ANY_FLAG = re.compile(r"(?<![\w-])--?[a-zA-Z][a-zA-Z0-9-]*")


def section(title: str) -> str:
    """The text of the README's section TITLE (a ``## `` heading), up to the next one."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"(?ms)^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text)
    assert match, f"the README has no section {title!r}"
    return match.group(1)


def first_cells(text: str) -> List[str]:
    """The first cell of each body row of the tables in TEXT (header and rule rows left out)."""
    cells = []
    for line in text.splitlines():
        if not line.startswith("|") or re.match(r"^\|[-| ]+\|$", line):
            continue
        cell = re.split(r"(?<!\\)\|", line)[1].strip()
        cells.append(cell)
    return cells[1:] if cells else cells  # the first row of a table is its header


def option_rows() -> List[Set[str]]:
    """The flags named in the first cell of each row of the options table."""
    return [set(ANY_FLAG.findall(cell)) for cell in first_cells(section("Options"))]


def table_flags() -> Dict[str, options.Option]:
    return {flag: option for option in options.OPTIONS for flag in option.flags}


def test_every_option_of_the_table_has_one_row_in_the_readme():
    rows = option_rows()
    for option in options.OPTIONS:
        holding = [row for row in rows if set(option.flags) & row]
        assert holding, f"{option.flag} is missing from the README's options table"
        assert len(holding) == 1, f"{option.flag} is in {len(holding)} rows of the options table"
        assert set(option.flags) <= holding[0], \
            f"the row of {option.flag} does not name all its spellings {option.flags}"


def test_each_row_of_the_options_table_is_one_option_that_exists():
    known = table_flags()
    for row in option_rows():
        unknown = row - set(known) - PARSER_ONLY
        assert not unknown, f"the options table names flags that do not exist: {unknown}"
        names = {known[flag].name for flag in row if flag in known}
        assert len(names) <= 1, f"one row of the options table holds several options: {row}"


def test_the_readme_names_no_flag_that_does_not_exist():
    parser = cli.build_parser()
    real = {flag for action in parser._actions for flag in action.option_strings}
    named = set(LONG_FLAG.findall(README.read_text(encoding="utf-8")))
    unknown = named - real - FOREIGN_FLAGS
    assert not unknown, f"the README names flags s3pput does not have: {sorted(unknown)}"


def shown_commands() -> List[str]:
    """Every s3pput command line in the README's code blocks (continued lines joined; a cron
    schedule and shell redirections left out)."""
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"(?ms)^```[a-z]*\n(.*?)^```", text):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"^(\S+ ){5}(?=s3pput )", "", line.strip())  # a crontab line
            if line.startswith("s3pput "):
                commands.append(re.split(r"\s(?:\d?>>?|\|)\s", line)[0])
    return commands


def test_the_readme_shows_commands():
    assert len(shown_commands()) >= 8


@pytest.mark.parametrize("command", shown_commands())
def test_every_command_the_readme_shows_parses(command):
    args = shlex.split(command, comments=True)[1:]
    values = cli.values_from_argv(args)
    assert values["sources"], command


def test_the_layout_table_names_every_module_of_the_package_and_no_other():
    named = set()
    for cell in first_cells(section("Development")):
        named.update(re.findall(r"`([\w/]+\.py)`", cell))
    present = {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")}
    assert not present - named, f"modules missing from the layout table: {sorted(present - named)}"
    assert not named - present, f"the layout table names modules that do not exist: " \
        f"{sorted(named - present)}"
