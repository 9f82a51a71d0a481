"""The webhook-signature cases shared with the TypeScript SDK and the server.

``sdk/fixtures/signatures.json`` is made by ``sdk/fixtures/make_signatures.py`` (format in
its docstring); the TypeScript SDK's unit tests and the server's tests read the same file.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from vinr_sdk import SignatureVerificationError, generate_test_header, verify
from vinr_sdk.webhooks import verify_header

FIXTURES_DIR = Path(__file__).resolve().parents[2] / "fixtures"
REASONS = {
    "valid",
    "missing_header",
    "malformed_header",
    "no_matching_signature",
    "timestamp_outside_tolerance",
}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_signatures", FIXTURES_DIR / "make_signatures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(
        (FIXTURES_DIR / "signatures.json").read_text(encoding="utf-8")
    )
    return cases


CASES = _cases()


def test_the_fixture_file_is_up_to_date() -> None:
    generator = _generator()
    assert generator.FIXTURE_PATH == FIXTURES_DIR / "signatures.json"
    assert (FIXTURES_DIR / "signatures.json").read_text(encoding="utf-8") == generator.render()


def test_the_file_covers_every_reason() -> None:
    assert len(CASES) >= 20
    assert {c["reason"] for c in CASES} == REASONS
    assert len({c["name"] for c in CASES}) == len(CASES)
    for case in CASES:
        assert case["valid"] == (case["reason"] == "valid"), case["name"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_python_sdk_agrees(case: dict[str, Any]) -> None:
    def check() -> Any:
        return verify(
            case["payload"].encode(),
            case["header"],
            case["secret"],
            case["toleranceSec"],
            now=case["now"],
        )

    if case["valid"]:
        assert check() == json.loads(case["payload"])
        assert (
            verify_header(
                case["payload"],
                case["header"],
                case["secret"],
                case["toleranceSec"],
                now=case["now"],
            )
            == case["timestamp"]
        )
    else:
        with pytest.raises(SignatureVerificationError) as info:
            check()
        assert info.value.code == case["reason"]


def test_generate_test_header_reproduces_the_fixture_headers() -> None:
    by_name = {c["name"]: c for c in CASES}
    for name in ("valid", "valid_unicode_payload", "valid_empty_object_payload"):
        case = by_name[name]
        assert (
            generate_test_header(case["payload"], case["secret"], case["timestamp"])
            == case["header"]
        )
    roll = by_name["valid_first_of_two_v1_secret_roll"]
    assert (
        generate_test_header(roll["payload"], roll["secret"], roll["timestamp"], [_generator().OLD])
        == roll["header"]
    )
