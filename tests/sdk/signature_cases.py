"""Builds ``fixtures/signatures.json``: webhook-signature cases shared with the TypeScript SDK.

Same format as ``sdk/typescript/test/fixtures/signatures.json`` (see its README): each case
is ``{name, secret, timestamp, now, toleranceSec, payload, header, valid, reason}`` — verify
``header`` against the UTF-8 bytes of ``payload`` with ``secret`` at time ``now`` with
``toleranceSec``; ``valid`` says whether it must pass, ``reason`` is ``valid`` or the
refusal's code (``missing_header``, ``malformed_header``, ``no_matching_signature``,
``timestamp_outside_tolerance``). ``header`` is ``null`` when absent; ``timestamp`` is the
``t`` written in the header (``null`` when it has none). Every signature is made by the
server's signer, ``domain.signature.sign``.

Regenerate with ``python -m tests.sdk.signature_cases`` (a test checks the file matches).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from domain.signature import DEFAULT_TOLERANCE_S, sign

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
    name: str,
    reason: str,
    header: str | None,
    *,
    payload: str = PAYLOAD,
    secret: str = SECRET,
    now: int = T,
    timestamp: int | None = T,
) -> dict[str, Any]:
    return {
        "name": name, "secret": secret, "timestamp": timestamp, "now": now,
        "toleranceSec": DEFAULT_TOLERANCE_S, "payload": payload, "header": header,
        "valid": reason == "valid", "reason": reason,
    }


def build_cases() -> list[dict[str, Any]]:
    good = sign(SECRET, PAYLOAD.encode(), T)
    v1 = good.split(",")[1]
    return [
        _case("valid signature", "valid", good),
        _case("valid, 299 s old", "valid", good, now=T + 299),
        _case("valid, exactly at the 300 s tolerance", "valid", good, now=T + 300),
        _case("stale: 301 s old", "timestamp_outside_tolerance", good, now=T + 301),
        _case("too far in the future: 301 s ahead", "timestamp_outside_tolerance", good,
              now=T - 301),
        _case("tampered payload", "no_matching_signature", good,
              payload=PAYLOAD.replace("3684", "3685")),
        _case("payload with an added trailing newline", "no_matching_signature", good,
              payload=PAYLOAD + "\n"),
        _case("wrong secret", "no_matching_signature", sign(OTHER_SECRET, PAYLOAD.encode(), T)),
        _case("secret roll: second v1 matches", "valid",
              sign(OTHER_SECRET, PAYLOAD.encode(), T, SECRET)),
        _case("secret roll: first v1 matches", "valid",
              sign(SECRET, PAYLOAD.encode(), T, OTHER_SECRET)),
        _case("header absent", "missing_header", None, timestamp=None),
        _case("empty header", "missing_header", "", timestamp=None),
        _case("no v1 entry", "malformed_header", f"t={T}"),
        _case("no t entry", "malformed_header", v1, timestamp=None),
        _case("non-numeric timestamp", "malformed_header", f"t=abc,{v1}", timestamp=None),
        _case("timestamp in the header differs from the signed one", "no_matching_signature",
              f"t={T + 1},{v1}", timestamp=T + 1),
        _case("spaces after commas are ignored", "valid", good.replace(",", ", ")),
        _case("unknown entries are ignored", "valid", f"t={T},v0=deadbeef,{v1}"),
        _case("only an unknown scheme", "malformed_header", f"t={T},v0={v1[3:]}"),
        _case("uppercase hex does not match", "no_matching_signature",
              f"t={T},v1={v1[3:].upper()}"),
        _case("non-ASCII payload (UTF-8 bytes are signed)", "valid",
              sign(SECRET, UNICODE_PAYLOAD.encode(), T), payload=UNICODE_PAYLOAD),
        _case("empty JSON object payload", "valid", sign(SECRET, b"{}", T), payload="{}"),
    ]


def render() -> str:
    return json.dumps(build_cases(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    FIXTURE_PATH.write_text(render(), encoding="utf-8")
