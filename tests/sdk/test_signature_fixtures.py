"""Shared webhook-signature cases: the Python side and the TypeScript side read the same file.

``fixtures/signatures.json`` is made by ``signature_cases.py``; the TypeScript SDK's
``sdk/typescript/test/fixtures/signatures.json`` is checked too when it exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vinr.signature import DEFAULT_TOLERANCE_S, SignatureError, verify_header

from .signature_cases import FIXTURE_PATH, render

TYPESCRIPT_FIXTURE = (
    Path(__file__).resolve().parents[2] / "sdk" / "typescript" / "test" / "fixtures"
    / "signatures.json"
)


def _cases() -> list[Any]:
    params = []
    for path in (FIXTURE_PATH, TYPESCRIPT_FIXTURE):
        if path.exists():
            for index, case in enumerate(json.loads(path.read_text(encoding="utf-8"))):
                params.append(pytest.param(case, id=f"{path.parts[-4]}-{index}-{case['reason']}"))
    return params


def test_the_fixture_file_is_up_to_date() -> None:
    assert FIXTURE_PATH.read_text(encoding="utf-8") == render()


@pytest.mark.parametrize("case", _cases())
def test_case(case: dict[str, Any]) -> None:
    def check() -> int:
        return verify_header(
            case["payload"].encode(), case["header"], case["secret"],
            case.get("tolerance", DEFAULT_TOLERANCE_S), now=case.get("now"),
        )

    if case["valid"]:
        assert check() == case["timestamp"]
    else:
        with pytest.raises(SignatureError):
            check()
