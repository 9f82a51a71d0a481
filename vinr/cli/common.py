"""What every command group of ``vinr`` shares: the help layout, the handler shape, and how
a command that reads or writes Postgres reports a refusal."""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from infra.errors import DependencyUnavailable, VinrError
from infra.settings import Settings
from infra.telemetry import redact

__all__ = ["Handler", "HelpFormatter", "Parser", "refusing", "subcommands"]

Handler = Callable[[Settings, argparse.Namespace], int]
"""A command: the settings and its parsed arguments in, the process exit status out."""


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions and epilogs wrapped to the terminal, paragraph by paragraph; a
    paragraph with indented lines (examples) is kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in textwrap.dedent(text).strip().split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith(" ") for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(
                    textwrap.fill(
                        " ".join(paragraph.split()),
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                    )
                )
        return "\n\n".join(paragraphs)


class Parser(argparse.ArgumentParser):
    """``vinr``'s parsers, subcommands' included: the help layout above by default."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _formatter)
        super().__init__(*args, **kwargs)


def _formatter(prog: str) -> HelpFormatter:
    return HelpFormatter(prog, max_help_position=30)


def subcommands(parser: argparse.ArgumentParser, dest: str) -> Any:
    """The subcommands of ``parser``, listed under "commands" in its help."""
    return parser.add_subparsers(dest=dest, required=True, metavar="COMMAND", title="commands")


def refusing(name: str, work: Callable[[], Coroutine[Any, Any, int | None]]) -> int:
    """Run ``work``; a refusal (bad input, an unknown id, Postgres unreachable) is one line
    on stderr, ``vinr NAME: …``, and exit status 2 — never a traceback."""
    try:
        return asyncio.run(work()) or 0
    except DependencyUnavailable as exc:
        message = f"{exc.dependency}: {exc.detail} (`vinr doctor` says what to fix)"
    except (ValueError, VinrError) as exc:
        message = getattr(exc, "message", None) or str(exc)
    except asyncpg.DataError as exc:
        message = f"a value cannot be stored: {exc}"
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        message = f"Postgres: {exc}"
        if isinstance(exc, OSError):
            message += " (`vinr doctor` says what to fix)"
    print(f"vinr {name}: {redact(message)}", file=sys.stderr)
    return 2
