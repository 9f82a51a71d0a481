"""Which tables a module's SQL touches, read from its source without running it: the check
behind "SQL for a table family lives in one module" (``tests/domain/test_store_*.py``).

SQL keywords are written in capitals throughout the project, which keeps prose ("prices
come from products") out of the match. Docstrings are skipped; adjacent literals arrive
joined (as Python joins them) and f-strings with ``{}`` for their fields, so a statement
split over lines or formatted reads whole.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["ROOT", "modules", "sql_tables", "string_literals"]

ROOT = Path(__file__).resolve().parents[2]


def string_literals(source: str) -> list[str]:
    tree = ast.parse(source)
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in parts and id(node) not in docstrings:
                found.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            found.append(
                "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            )
    return found


def sql_tables(
    source: str,
    tables: Sequence[str],
    *,
    keywords: str = "FROM|INTO|UPDATE|JOIN|TABLE",
    bare_names: bool = False,
) -> list[str]:
    """The tables of ``tables`` this source's SQL names after one of ``keywords`` (once per
    mention) and, with ``bare_names``, as a whole literal (a table handed to a helper)."""
    statement = re.compile(rf"\b(?:{keywords})\s+({'|'.join(map(re.escape, tables))})\b")
    hits: list[str] = []
    for text in string_literals(source):
        if bare_names and text in tables:
            hits.append(text)
        hits.extend(m.group(1) for m in statement.finditer(text))
    return hits


def modules(packages: Iterable[str]) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))
