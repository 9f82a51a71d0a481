"""Install ``vinr-sdk`` into a fresh virtual environment and check what came with it.

    python sdk/python/tools/check_install.py        (``make test-sdk-dist``)

Passes when ``pip install ./sdk/python`` adds only the SDK, httpx and httpx's own
dependencies (nothing of the server: no asyncpg, aiokafka, fastapi, redis, pydantic, …),
and ``vinr_sdk`` imports and works there. Exits 1, naming the culprit, otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

SDK_DIR = Path(__file__).resolve().parents[1]

# httpx and what it depends on; typing-extensions is anyio's on Python < 3.13.
ALLOWED = {
    "vinr-sdk",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "idna",
    "certifi",
    "sniffio",
    "typing-extensions",
}
SERVER = {
    "vinr",
    "asyncpg",
    "aiokafka",
    "confluent-kafka",
    "fastapi",
    "starlette",
    "redis",
    "hiredis",
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "uvicorn",
    "orjson",
    "babel",
    "prometheus-client",
    "uvloop",
    "httptools",
    "tqdm",
}

SMOKE = """
import vinr_sdk
from vinr_sdk import AsyncVinr, UsageReporter, Vinr, verify
header = vinr_sdk.generate_test_header(b'{"id":"evt_1","type":"invoice.paid"}', "whsec_x")
event = verify(b'{"id":"evt_1","type":"invoice.paid"}', header, "whsec_x")
assert event.type == "invoice.paid"
with Vinr("sk_test_x") as vinr:
    assert vinr.api_base == "http://127.0.0.1:8080"
    assert callable(vinr.billing.meter_events.create_batch) and callable(vinr.invoices.upcoming)
from vinr_sdk.types import BillingMeter, BillingMeterEventSummary, UpcomingInvoice
print(vinr_sdk.VERSION, vinr_sdk.__file__)
"""


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _installed(python: Path) -> set[str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {_normal(row["name"]) for row in json.loads(out)}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="vinr-sdk-dist-") as tmp:
        env_dir = Path(tmp) / "venv"
        venv.create(env_dir, with_pip=True)
        python = env_dir / "bin" / "python"
        baseline = _installed(python)  # what the empty environment already holds (pip, …)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                str(SDK_DIR),
            ],
            check=True,
        )
        added = _installed(python) - baseline
        print(f"pip install {SDK_DIR} added: {', '.join(sorted(added))}")
        failures: list[str] = []
        if "vinr-sdk" not in added:
            failures.append("vinr-sdk itself is not installed")
        if added & SERVER:
            failures.append(f"server dependencies installed: {sorted(added & SERVER)}")
        if added - ALLOWED:
            failures.append(f"unexpected distributions: {sorted(added - ALLOWED)}")
        smoke = subprocess.run([str(python), "-c", SMOKE], capture_output=True, text=True, cwd=tmp)
        if smoke.returncode != 0:
            failures.append(f"import vinr_sdk failed:\n{smoke.stderr}")
        elif not smoke.stdout.split()[-1].startswith(str(env_dir)):
            failures.append(f"vinr_sdk was imported from outside the environment: {smoke.stdout}")
        else:
            print(f"import vinr_sdk: {smoke.stdout.strip()}")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
