"""How the ``vinr`` command shows what it read: tables, sparklines, times.

On a terminal a table is drawn with rich (borders, colour; ``NO_COLOR`` is honoured).
Anywhere else — a pipe, a file, a test capturing the output — it is plain aligned columns,
one row a line under a header of capitalised names, with no escape sequence at all, so a
script can read it (``awk``, ``cut``, ``grep``) and what it read yesterday still parses.
Every cell is shown printable: a control character in a stored name becomes ``?``, so a
value cannot move the cursor or recolour a terminal.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "Column",
    "interactive",
    "line",
    "period",
    "printable",
    "span_width",
    "sparkline",
    "table",
    "when",
]

_MARKS = "▁▂▃▄▅▆▇█"


def interactive() -> bool:
    """Whether stdout is a terminal (rich tables), or read by a program (plain columns)."""
    return sys.stdout.isatty()


def line(text: str, style: str = "") -> None:
    """Print one line, in ``style`` on a terminal (rich style names: "bold", "cyan")."""
    if not interactive() or not style:
        print(text)
        return
    from rich.console import Console
    from rich.text import Text

    Console(highlight=False, soft_wrap=True).print(Text(text, style=style))


def printable(text: str | None) -> str:
    """``-`` for nothing; control and other unprintable characters as ``?``."""
    return "-" if text is None else "".join(c if c.isprintable() else "?" for c in text)


def when(ts: int | None) -> str:
    """A Unix time as ``YYYY-MM-DD HH:MM:SS`` (UTC); ``-`` for none."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def period(start: int, end: int) -> str:
    """``[start, end)`` as dates when both fall on midnight UTC, else to the minute."""
    a, b = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    midnight = all(t.hour == t.minute == t.second == 0 for t in (a, b))
    fmt = "%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M"
    return f"{a.strftime(fmt)} → {b.strftime(fmt)}"


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its header, alignment and, on a terminal, a style per cell."""

    name: str
    right: bool = False
    style: Callable[[str], str] | None = None


def table(
    columns: Sequence[Column], rows: Sequence[Sequence[str | None]], *, caption: str | None = None
) -> None:
    """Print rows under ``columns``: rich on a terminal, plain aligned columns otherwise
    (where ``caption`` is left out: a program reads the rows alone)."""
    cells = [[printable(cell) for cell in row] for row in rows]
    if not interactive():
        _plain(columns, cells)
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    shown = Table(box=box.SIMPLE_HEAD, show_edge=False, caption=caption, header_style="bold")
    for column in columns:
        shown.add_column(column.name, justify="right" if column.right else "left", no_wrap=True)
    for row in cells:
        shown.add_row(
            *(
                Text(cell, style=column.style(cell) if column.style else "")
                for column, cell in zip(columns, row, strict=True)
            )
        )
    Console(highlight=False).print(shown)


def _plain(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> None:
    header = [c.name for c in columns]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(columns))]
    for row in [header, *rows]:
        line = "  ".join(
            cell.rjust(w) if column.right and row is not header else cell.ljust(w)
            for column, cell, w in zip(columns, row, widths, strict=True)
        )
        print(line.rstrip())


def sparkline(values: Sequence[int]) -> str:
    """One mark per value, its height relative to the largest: ``▁`` is nothing at all,
    ``▂`` to ``█`` the rest, so any usage shows and none looks like none."""
    top = max(values, default=0)
    if top <= 0:
        return _MARKS[0] * len(values)
    steps = len(_MARKS) - 1
    return "".join(_MARKS[0] if v <= 0 else _MARKS[math.ceil(v * steps / top)] for v in values)


# Span widths a chart may use, so its marks read as round times ("per 15 min").
_SPANS = (
    (1, "1 s"),
    (5, "5 s"),
    (15, "15 s"),
    (60, "1 min"),
    (300, "5 min"),
    (900, "15 min"),
    (1800, "30 min"),
    (3600, "1 h"),
    (3 * 3600, "3 h"),
    (6 * 3600, "6 h"),
    (12 * 3600, "12 h"),
    (86_400, "1 day"),
    (7 * 86_400, "7 days"),
)


def span_width(seconds: int, marks: int) -> tuple[int, str]:
    """The roundest span width that covers ``seconds`` in at most ``marks`` marks, and how
    it reads; past the list, whole days."""
    for width, label in _SPANS:
        if width * marks >= seconds:
            return width, label
    days = math.ceil(seconds / marks / 86_400)
    return days * 86_400, f"{days} days"
