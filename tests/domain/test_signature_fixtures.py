"""The server's signer against the webhook-signature cases the SDKs share
(``sdk/fixtures/signatures.json``): the dispatcher's headers are the ones the SDKs expect.
The SDKs' own suites check their verifiers against every case of the same file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from domain.signature import sign

FIXTURE = Path(__file__).resolve().parents[2] / "sdk" / "fixtures" / "signatures.json"
CASES: list[dict[str, Any]] = json.loads(FIXTURE.read_text(encoding="utf-8"))
OLD_SECRET = "whsec_test_old_0a1b2c3d4e5f6a7b8c9d0e1f"


def test_the_servers_signer_makes_the_fixture_headers() -> None:
    by_name = {c["name"]: c for c in CASES}
    for name in ("valid", "valid_unicode_payload", "valid_empty_object_payload"):
        case = by_name[name]
        assert sign(case["secret"], case["payload"].encode(), case["timestamp"]) == case["header"]
    roll = by_name["valid_first_of_two_v1_secret_roll"]
    assert (
        sign(roll["secret"], roll["payload"].encode(), roll["timestamp"], OLD_SECRET)
        == roll["header"]
    )
