"""``vinr --help`` and each command's: a description for every command, help for every
option and argument, examples where they help; wrapped prose, examples as written."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from vinr import __version__
from vinr.cli import build_parser
from vinr.cli.common import HelpFormatter


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str | None]]:
    """Every command, nested ones included: (its words, its parser, its one-line help)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), sub, helps.get(name)
                yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(build_parser()))


def test_every_command_is_reached() -> None:
    names = {" ".join(words) for words, _, _ in COMMANDS}
    assert {
        "migrate",
        "doctor",
        "account create",
        "account limits",
        "key create",
        "key list",
        "key revoke",
        "key roll",
        "keys",
        "invoices",
        "usage",
        "api",
        "up",
        "aggregator",
        "invoicer",
        "dispatcher",
        "devbroker",
        "watermark",
        "deadletters list",
        "replay",
        "retention",
    } <= names


@pytest.mark.parametrize(
    ("words", "parser", "summary"), COMMANDS, ids=[" ".join(w) for w, _, _ in COMMANDS]
)
def test_each_command_explains_itself_and_its_options(
    words: tuple[str, ...], parser: argparse.ArgumentParser, summary: str | None
) -> None:
    assert summary, f"`vinr {' '.join(words)}` has no line in its parent's help"
    assert parser.description and len(parser.description) > len(summary)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        assert action.help, f"`vinr {' '.join(words)}`: {action.option_strings or action.dest}"


def _help(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "vinr.cli", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    return done.stdout


def test_top_level_help_lists_the_commands_with_examples() -> None:
    text = _help()
    for words, _, summary in COMMANDS:
        if len(words) == 1:
            assert f"    {words[0]}" in text and summary is not None
            assert " ".join(summary.split()[:3]) in " ".join(text.split())
    assert "getting started:\n  vinr doctor" in text
    assert '  vinr account create "Acme"         # the sandbox key is the last line' in text


@pytest.mark.parametrize(
    ("command", "example"),
    [
        (["invoices"], "  vinr invoices acct_123 --customer cust_8aZ2 --limit 5"),
        (["usage"], "  vinr usage si_123"),
        (["keys"], "  vinr keys acct_123"),
        (["doctor"], "  vinr doctor"),
        (["key", "create"], "  vinr key create acct_123 --restricted --name producer"),
        (["replay"], "  vinr replay --check            # does any window differ?"),
    ],
)
def test_command_help_has_examples_as_written(command: list[str], example: str) -> None:
    text = _help(*command)
    assert f"usage: vinr {' '.join(command)}" in text
    assert example in text.splitlines()


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vinr.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, f"vinr {__version__}")


def test_the_formatter_wraps_prose_and_keeps_examples() -> None:
    formatter = HelpFormatter("vinr", width=40)
    text = (
        "A long paragraph of prose that argparse should wrap to the width it is given.\n\n"
        "examples:\n  vinr do --a-very-long-flag-that-must-not-wrap value   # a comment"
    )
    out = formatter._fill_text(text, 40, "")
    prose, examples = out.split("\n\n")
    assert all(len(line) <= 40 for line in prose.splitlines()) and len(prose.splitlines()) > 1
    assert examples.splitlines() == [
        "examples:",
        "  vinr do --a-very-long-flag-that-must-not-wrap value   # a comment",
    ]
