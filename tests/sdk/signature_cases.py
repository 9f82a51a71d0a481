"""Builds ``fixtures/signatures.json``: webhook-signature cases shared with the TypeScript SDK.

Each case: ``{secret, timestamp, payload, header, valid, reason, now, tolerance}`` — check
``header`` against the UTF-8 bytes of ``payload`` with ``secret`` at time ``now`` (unix
seconds) and ``tolerance`` seconds; ``valid`` says whether it must pass. ``header`` is
``null`` when the header is absent. Every header is made by ``vinr.signature.sign``.

Regenerate with ``python -m tests.sdk.signature_cases`` (the test checks the file matches).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vinr.signature import DEFAULT_TOLERANCE_S, sign

FIXTURE_PATH = Path(__file__).parent / "fixtures" / "signatures.json"

SECRET = "whsec_fixture_4f1b2c3d"
OTHER_SECRET = "whsec_fixture_other_9e8d"
T = 1_764_000_000
PAYLOAD = (
    '{"id":"evt_1","object":"event","type":"invoice.paid","created":1764000000,'
    '"livemode":false,"data":{"id":"inv_1","object":"invoice","total":3684}}'
)
UNICODE_PAYLOAD = (
    '{"id":"evt_2","type":"invoice.paid",'
    '"data":{"description":"18420 \u00d7 API \u2014 \u20ac"}}'
)


def _case(
    reason: str,
    valid: bool,
    header: str | None,
    *,
    payload: str = PAYLOAD,
    secret: str = SECRET,
    now: int = T,
    timestamp: int = T,
) -> dict[str, Any]:
    return {
        "reason": reason, "valid": valid, "secret": secret, "timestamp": timestamp,
        "payload": payload, "header": header, "now": now, "tolerance": DEFAULT_TOLERANCE_S,
    }


def build_cases() -> list[dict[str, Any]]:
    good = sign(SECRET, PAYLOAD.encode(), T)
    v1 = good.split(",")[1]
    return [
        _case("valid signature", True, good),
        _case("valid, 299 s old", True, good, now=T + 299),
        _case("valid, exactly at the 300 s tolerance", True, good, now=T + 300),
        _case("stale: 301 s old", False, good, now=T + 301),
        _case("too far in the future: 301 s ahead", False, good, now=T - 301),
        _case("tampered payload", False, good, payload=PAYLOAD.replace("3684", "3685")),
        _case("payload with an added trailing newline", False, good, payload=PAYLOAD + "\n"),
        _case("wrong secret", False, sign(OTHER_SECRET, PAYLOAD.encode(), T)),
        _case("secret roll: second v1 matches", True, sign(OTHER_SECRET, PAYLOAD.encode(), T,
                                                          SECRET)),
        _case("secret roll: first v1 matches", True, sign(SECRET, PAYLOAD.encode(), T,
                                                         OTHER_SECRET)),
        _case("header absent", False, None),
        _case("empty header", False, ""),
        _case("no v1 entry", False, f"t={T}"),
        _case("no t entry", False, v1),
        _case("non-numeric timestamp", False, f"t=abc,{v1}"),
        _case("timestamp in the header differs from the signed one", False,
              f"t={T + 1},{v1}", timestamp=T + 1),
        _case("spaces after commas are ignored", True, good.replace(",", ", ")),
        _case("unknown entries are ignored", True, f"t={T},v0=deadbeef,{v1}"),
        _case("only an unknown scheme", False, f"t={T},v0={v1[3:]}"),
        _case("uppercase hex does not match", False, f"t={T},v1={v1[3:].upper()}"),
        _case("non-ASCII payload (UTF-8 bytes are signed)", True,
              sign(SECRET, UNICODE_PAYLOAD.encode(), T), payload=UNICODE_PAYLOAD),
        _case("empty payload", True, sign(SECRET, b"", T), payload=""),
    ]


def render() -> str:
    return json.dumps(build_cases(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    FIXTURE_PATH.write_text(render(), encoding="utf-8")
