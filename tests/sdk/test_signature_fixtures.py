"""Webhook-signature cases shared by the two SDKs: each SDK checks both fixture files.

``tests/sdk/fixtures/signatures.json`` is made here (``signature_cases.py``);
``sdk/typescript/test/fixtures/signatures.json`` by the TypeScript SDK's
``make_signatures.py``. Both use one format (``sdk/typescript/README.md``). The TypeScript
unit tests read both files too, so each SDK verifies the other's fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from domain.signature import SignatureError
from domain.signature import verify_header as server_verify_header
from vinr.sdk import SignatureVerificationError, verify
from vinr.sdk.webhooks import verify_header as sdk_verify_header

from .signature_cases import FIXTURE_PATH, render

TYPESCRIPT_FIXTURE = (
    Path(__file__).resolve().parents[2] / "sdk" / "typescript" / "test" / "fixtures"
    / "signatures.json"
)
FILES = {"python": FIXTURE_PATH, "typescript": TYPESCRIPT_FIXTURE}
REASONS = {"valid", "missing_header", "malformed_header", "no_matching_signature",
           "timestamp_outside_tolerance"}


def _load(path: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return cases


def _cases() -> list[Any]:
    return [pytest.param(case, id=f"{origin}-{case['name']}")
            for origin, path in FILES.items() for case in _load(path)]


def test_the_python_fixture_file_is_up_to_date() -> None:
    assert FIXTURE_PATH.read_text(encoding="utf-8") == render()


@pytest.mark.parametrize("origin", sorted(FILES))
def test_each_file_covers_every_reason(origin: str) -> None:
    cases = _load(FILES[origin])
    assert {c["reason"] for c in cases} == REASONS
    assert len({c["name"] for c in cases}) == len(cases)
    for case in cases:
        assert case["valid"] == (case["reason"] == "valid"), case["name"]


@pytest.mark.parametrize("case", _cases())
def test_the_python_sdk_agrees(case: dict[str, Any]) -> None:
    def check() -> Any:
        return verify(case["payload"].encode(), case["header"], case["secret"],
                      case["toleranceSec"], now=case["now"])

    if case["valid"]:
        assert check() == orjson.loads(case["payload"])
        assert sdk_verify_header(case["payload"], case["header"], case["secret"],
                                 case["toleranceSec"], now=case["now"]) == case["timestamp"]
    else:
        with pytest.raises(SignatureVerificationError) as info:
            check()
        assert info.value.code == case["reason"]


@pytest.mark.parametrize("case", _cases())
def test_the_servers_verifier_agrees(case: dict[str, Any]) -> None:
    def check() -> int:
        return server_verify_header(case["payload"].encode(), case["header"], case["secret"],
                                    case["toleranceSec"], now=case["now"])

    if case["valid"]:
        assert check() == case["timestamp"]
    else:
        with pytest.raises(SignatureError):
            check()
