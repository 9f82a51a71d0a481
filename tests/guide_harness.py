"""Runs the TypeScript guide test (``npm run test:guide``) and the Python SDK's README
example against a live ``vinr up``.

    .venv/bin/python -m tests.guide_harness        (``make test-guide``)

1. an isolated environment: its own database, Redis prefix, topic and consumer group on a
   dev broker (``infra.devenv``);
2. ``vinr up --port N`` as a subprocess configured for it, until ``/readyz`` answers;
3. an account, and the fixture the guide assumes (``sdk/typescript/README.md``): customer
   ``cust_8aZ2`` paying with ``pm_card_visa``; a metered ``sum`` subscription item
   ``si_4Kp1`` on a test clock whose current period holds the guide's batch timestamps;
   a webhook endpoint for ``invoice.paid`` on the port the test listens on;
4. ``npm run test:guide`` with ``VINR_API_BASE``, ``VINR_SECRET_KEY``,
   ``VINR_WEBHOOK_SECRET``, ``VINR_GUIDE_WEBHOOK_PORT`` and ``VINR_GUIDE_FIXTURE=1``;
5. the first ``python`` block of ``sdk/python/README.md``, run as a script under its own
   account with ``VINR_API_BASE`` and ``VINR_SECRET_KEY``; it must exit 0;
6. always: SIGTERM to ``vinr up`` (it must exit 0 within 30 s), then the environment is
   dropped. The exit status is 0 when both passed, else the failing one's (1 when the
   harness itself failed).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import asyncpg
import httpx

from domain.accounts import create_account
from infra.devenv import dev_broker, free_port, isolated_settings, role_env
from infra.settings import Settings
from infra.telemetry import redact

ROOT = Path(__file__).resolve().parents[1]
SDK_DIR = ROOT / "sdk" / "typescript"
PYTHON_README = ROOT / "sdk" / "python" / "README.md"

# The guide's batch goes to si_4Kp1 at these times; its period must hold both, and the
# later one must not be more than 5 minutes ahead of the subscription's clock.
PERIOD_START = 1_748_390_400  # 2025-05-28T00:00:00Z
CLOCK_NOW = 1_748_476_800 + 60
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
NPM_TIMEOUT_S = 300.0
README_TIMEOUT_S = 120.0


class HarnessError(RuntimeError):
    """The harness could not prepare or stop the server (not a guide test failure)."""


def _say(message: str) -> None:
    print(f"[guide] {message}", flush=True)


def _server_env(settings: Settings) -> dict[str, str]:
    """``vinr up``'s environment, with quick polling so the test does not wait on intervals
    meant for production."""
    return role_env(
        settings,
        VINR_INVOICER_POLL_S="0.2",
        VINR_DISPATCHER_POLL_S="0.1",
        VINR_AGGREGATOR_POLL_MS="50",
    )


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def log_problems(self) -> list[str]:
        """The server's WARNING and ERROR log lines."""
        return [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if " WARNING " in line or " ERROR " in line
        ]


@contextmanager
def vinr_up(settings: Settings, workdir: Path) -> Iterator[Server]:
    """``vinr up`` as a subprocess; on exit SIGTERM, and it must exit 0 in time."""
    port = free_port()
    log_path = workdir / "vinr-up.log"
    log: TextIO = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vinr.cli", "up", "--port", str(port)],
        cwd=ROOT,
        env=_server_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    _say(f"vinr up (pid {proc.pid}) on {server.url}; log: {log_path}")
    try:
        yield server
    finally:
        try:
            _stop(server)
        finally:
            log.close()


def _stop(server: Server) -> None:
    proc = server.proc
    if proc.poll() is not None:
        raise HarnessError(
            f"vinr up had already exited with {proc.returncode}:\n" + server.log_tail()
        )
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise HarnessError(
            f"vinr up did not stop within {STOP_TIMEOUT_S:g} s of SIGTERM:\n" + server.log_tail()
        ) from None
    elapsed = time.monotonic() - started
    if code != 0:
        raise HarnessError(f"vinr up exited with {code} after SIGTERM:\n" + server.log_tail())
    _say(f"vinr up stopped cleanly on SIGTERM in {elapsed:.1f} s")


async def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    async with httpx.AsyncClient(base_url=server.url, timeout=2) as http:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise HarnessError(
                    f"vinr up exited with {server.proc.returncode} before it"
                    " was ready:\n" + server.log_tail()
                )
            try:
                response = await http.get("/readyz")
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            except httpx.TransportError as exc:
                last = repr(exc)
            await asyncio.sleep(0.2)
    raise HarnessError(
        f"vinr up not ready after {READY_TIMEOUT_S:g} s ({last}):\n" + server.log_tail()
    )


async def _post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(path, json=body)
    if response.status_code != 200:
        raise HarnessError(f"POST {path} → {response.status_code}: {response.text}")
    result: dict[str, Any] = response.json()
    return result


@dataclass
class Fixture:
    secret_key: str
    webhook_secret: str
    webhook_port: int


async def _prepare(settings: Settings, server: Server) -> Fixture:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        _, secret_key, _ = await create_account(conn, "guide")
    finally:
        await conn.close()
    headers = {"Authorization": f"Bearer {secret_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:
        await _post(
            http,
            "/v1/customers",
            {
                "id": "cust_8aZ2",
                "name": "Guide customer",
                "email": "guide@example.com",
                "paymentMethod": "pm_card_visa",
            },
        )
        product = await _post(http, "/v1/products", {"name": "API access (fixture)"})
        price = await _post(
            http,
            "/v1/prices",
            {
                "product": product["id"],
                "currency": "EUR",
                "billingScheme": "usage",
                "unitAmountDecimal": "0.2",
                "recurring": {"interval": "month", "usageType": "metered", "aggregateUsage": "sum"},
            },
        )
        clock = await _post(
            http, "/v1/test_helpers/test_clocks", {"frozenTime": PERIOD_START, "name": "guide"}
        )
        subscription = await _post(
            http,
            "/v1/subscriptions",
            {
                "customer": "cust_8aZ2",
                "testClock": clock["id"],
                "items": [{"price": price["id"], "id": "si_4Kp1"}],
            },
        )
        await _post(
            http, f"/v1/test_helpers/test_clocks/{clock['id']}/advance", {"frozenTime": CLOCK_NOW}
        )
        current = (await http.get(f"/v1/subscriptions/{subscription['id']}")).json()
        start, end = current["currentPeriodStart"], current["currentPeriodEnd"]
        if not start <= PERIOD_START < CLOCK_NOW < end:
            raise HarnessError(
                f"si_4Kp1's period [{start}, {end}) does not hold the guide's batch timestamps"
            )
        port = free_port()
        endpoint = await _post(
            http,
            "/v1/webhook_endpoints",
            {"url": f"http://127.0.0.1:{port}/", "enabledEvents": ["invoice.paid"]},
        )
    _say(
        f"fixture: cust_8aZ2, si_4Kp1 on {clock['id']} at {CLOCK_NOW}, "
        f"endpoint {endpoint['id']} → 127.0.0.1:{port}"
    )
    return Fixture(secret_key, endpoint["secret"], port)


def _npm(*args: str, env: dict[str, str] | None = None) -> int:
    _say(f"npm {' '.join(args)} (in {SDK_DIR.relative_to(ROOT)})")
    try:
        return subprocess.run(
            ["npm", *args], cwd=SDK_DIR, env=env, timeout=NPM_TIMEOUT_S
        ).returncode
    except subprocess.TimeoutExpired:
        _say(f"npm {' '.join(args)} timed out after {NPM_TIMEOUT_S:g} s")
        return 1


def _run_guide_test(server: Server, fixture: Fixture) -> int:
    if not (SDK_DIR / "node_modules" / ".package-lock.json").exists():
        code = _npm("ci", "--no-audit", "--no-fund", "--loglevel=error")
        if code != 0:
            raise HarnessError(f"npm ci failed with {code}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VINR_")}
    env.update(
        {
            "VINR_API_BASE": server.url,
            "VINR_SECRET_KEY": fixture.secret_key,
            "VINR_WEBHOOK_SECRET": fixture.webhook_secret,
            "VINR_GUIDE_WEBHOOK_PORT": str(fixture.webhook_port),
            "VINR_GUIDE_FIXTURE": "1",
        }
    )
    if "VINR_GUIDE_PATH" in os.environ:
        env["VINR_GUIDE_PATH"] = os.environ["VINR_GUIDE_PATH"]
    return _npm("run", "test:guide", env=env)


def python_readme_example(readme: Path = PYTHON_README) -> str:
    """The first ``python`` fenced block of the Python SDK's README."""
    match = re.search(
        r"^```python\n(.*?)^```", readme.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL
    )
    if match is None:
        raise HarnessError(f"no ```python block in {readme.relative_to(ROOT)}")
    return match.group(1)


async def _run_python_readme(settings: Settings, server: Server, workdir: Path) -> int:
    """Run the README's example as a script, under an account of its own."""
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        _, secret_key, _ = await create_account(conn, "python-readme")
    finally:
        await conn.close()
    script = workdir / "readme_example.py"
    script.write_text(python_readme_example(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VINR_")}
    env.update({"VINR_API_BASE": server.url, "VINR_SECRET_KEY": secret_key})
    _say(f"python {script.name} (the example of {PYTHON_README.relative_to(ROOT)})")
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(script)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=README_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        _say(f"the Python README example timed out after {README_TIMEOUT_S:g} s")
        return 1
    for line in done.stdout.splitlines():
        _say(f"  | {line}")
    if done.returncode != 0:
        _say(f"the Python README example FAILED with exit {done.returncode}:\n{done.stderr}")
    return done.returncode


async def run() -> int:
    started = time.monotonic()
    result = 1
    with dev_broker() as broker, tempfile.TemporaryDirectory(prefix="vinr-guide-") as tmp:
        _say(f"Kafka at {broker}")
        async with isolated_settings(broker, label="guide") as settings:
            _say(
                f"isolated environment: {redact(settings.database_url.get_secret_value())},"
                f" topic {settings.usage_topic}"
            )
            try:
                with vinr_up(settings, Path(tmp)) as server:
                    await _wait_ready(server)
                    _say(f"ready after {time.monotonic() - started:.1f} s")
                    fixture = await _prepare(settings, server)
                    # npm runs in a thread: the loop stays free while Node drives the server.
                    guide = await asyncio.to_thread(_run_guide_test, server, fixture)
                    readme = await _run_python_readme(settings, server, Path(tmp))
                    _say(
                        f"TypeScript guide test: exit {guide}; Python README example: exit {readme}"
                    )
                    result = guide or readme
                    if result != 0:
                        _say("vinr up log (last lines):\n" + server.log_tail())
                problems = server.log_problems()
                _say(
                    f"vinr up logged {len(problems)} warning/error lines"
                    + "".join(f"\n    {line}" for line in problems[:20])
                )
            except HarnessError as exc:
                _say(f"harness error: {exc}")
                result = 1
    verdict = "PASSED" if result == 0 else f"FAILED (exit {result})"
    _say(f"guide test and Python README example {verdict} in {time.monotonic() - started:.1f} s")
    return result


def main() -> int:
    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
