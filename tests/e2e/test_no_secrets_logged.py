"""No API key, webhook secret or password in anything a role writes.

The guide's flow runs against the roles as real processes at ``VINR_LOG_LEVEL=DEBUG`` — once
as ``vinr up`` with text logs, once as ``vinr api``, ``aggregator``, ``invoicer`` and
``dispatcher`` with JSON logs — configured with a Postgres and a Redis URL that carry
passwords. Every byte each process writes is kept, and searched for every secret the run
handed out or configured. The run also proves it could fail: the logs hold DEBUG lines,
among them the settings line (where an unmasked DSN would show) and one per webhook
delivery.

Secrets are registered where they appear (``Secrets.add``): a new kind of credential is one
more ``add`` in the step that creates it.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets as random
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from vinr_sdk.webhooks import verify_header

from infra.devenv import free_port, role_env
from infra.settings import Settings
from tests.support.api import metered_price, post, subscribe
from tests.support.credentials import PasswordEnv, password_env, with_userinfo
from tests.support.server import LiveServer
from tests.support.webhooks import Receiver

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0
KEY = re.compile(r"\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9_\-]+")

# Quick cadences, as the in-process tests use; every other setting is the default.
FAST = {
    "VINR_PUBLISH_TIMEOUT_S": "1",
    "VINR_CLOSE_SETTLE_S": "1.6",
    "VINR_WATERMARK_TIMEOUT_S": "15",
    "VINR_INVOICER_POLL_S": "0.2",
    "VINR_DISPATCHER_POLL_S": "0.1",
    "VINR_AGGREGATOR_POLL_MS": "50",
}


@dataclass
class Secrets:
    """Every secret of the run, by what it is. A secret is searched whole and without its
    kind prefix (``sk_test_``, ``whsec_``), so a log that drops the prefix is caught too."""

    values: dict[str, str] = field(default_factory=dict)

    def add(self, label: str, value: str) -> str:
        assert len(value) >= 16, f"{label} is too short to search for"
        self.values[label] = value
        return value

    def needles(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for label, value in self.values.items():
            out[label] = value
            body = re.sub(r"^(?:(?:sk|rk)_(?:test|live)|whsec)_", "", value)
            if body != value:
                out[f"{label} (without its prefix)"] = body
        return out

    def found_in(self, name: str, text: str) -> list[str]:
        """``where: which secret`` for each secret in ``text``, with the line it is on."""
        found = []
        for label, needle in self.needles().items():
            for line in text.splitlines():
                if needle in line:
                    found.append(f"{name}: {label} in: {line.replace(needle, '<' + label + '>')}")
        return found


@dataclass
class Process:
    name: str
    proc: asyncio.subprocess.Process
    log: Path
    health: str | None = None  # a URL answering 200 once the role is ready

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Roles:
    """The role processes of one run, each writing stdout and stderr to its own file."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.started: list[Process] = []

    async def spawn(
        self, name: str, *args: str, health: str | None = None, **extra: str
    ) -> Process:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "vinr.cli",
                *args,
                cwd=ROOT,
                env=self.env | extra,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        process = Process(name, proc, log, health)
        self.started.append(process)
        return process

    async def run(self, name: str, *args: str, **extra: str) -> Process:
        """A command that ends by itself (``vinr migrate``)."""
        process = await self.spawn(name, *args, **extra)
        await asyncio.wait_for(process.proc.wait(), DEADLINE_S)
        return process

    async def cli_output(self, name: str, *args: str) -> str:
        """A command whose stdout is meant to show a secret (``vinr account create`` prints
        the new keys): stdout is returned, not searched; stderr, where its logs go, is."""
        log = self.workdir / f"{name}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "vinr.cli",
                *args,
                cwd=ROOT,
                env=self.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
            stdout, _ = await asyncio.wait_for(proc.communicate(), DEADLINE_S)
        self.started.append(Process(name, proc, log))
        assert proc.returncode == 0, log.read_text()
        return stdout.decode()

    async def ready(self) -> None:
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        async with httpx.AsyncClient(timeout=2) as http:
            for process in self.started:
                while process.health is not None:
                    assert process.proc.returncode is None, (
                        f"{process.name} exited with {process.proc.returncode}:\n"
                        + process.output()[-3000:]
                    )
                    try:
                        if (await http.get(process.health)).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert asyncio.get_running_loop().time() < deadline, (
                        f"{process.name} not ready:\n" + process.output()[-3000:]
                    )
                    await asyncio.sleep(0.1)

    async def stop(self) -> dict[str, int | None]:
        """SIGTERM to every process still running; each one's exit status."""
        running = [p for p in self.started if p.proc.returncode is None]
        for process in running:
            process.proc.send_signal(signal.SIGTERM)
        for process in running:
            try:
                await asyncio.wait_for(process.proc.wait(), 30)
            except TimeoutError:
                process.proc.kill()
                await process.proc.wait()
        return {p.name: p.proc.returncode for p in self.started}


@asynccontextmanager
async def roles(env: dict[str, str], workdir: Path) -> AsyncIterator[Roles]:
    started = Roles(env, workdir)
    try:
        yield started
    finally:
        for process in started.started:
            if process.proc.returncode is None:
                process.proc.kill()
                await process.proc.wait()


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while True:
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not within {DEADLINE_S} s"
        await asyncio.sleep(0.1)


def bogus_key(prefix: str) -> str:
    return f"{prefix}_{random.token_urlsafe(32)}"


async def guide_flow(
    api: str, keys: dict[str, str], found: Secrets, receiver: Receiver, hook_url: str
) -> None:
    """The guide (price, subscription, usage with a retry and a batch, period end, invoice,
    signed webhook), a rolled webhook secret, the same account in live mode, and refused
    keys."""
    sandbox = {"Authorization": f"Bearer {keys['sandbox']}"}
    live = {"Authorization": f"Bearer {keys['live']}"}
    async with (
        httpx.AsyncClient(base_url=api, headers=sandbox, timeout=30) as test,
        httpx.AsyncClient(base_url=api, headers=live, timeout=30) as prod,
        httpx.AsyncClient(base_url=api, timeout=30) as anonymous,
    ):
        endpoint = await post(
            test, "/v1/webhook_endpoints", {"url": hook_url, "enabledEvents": ["*"]}
        )
        secret = found.add("webhook secret", endpoint["secret"])
        price = await metered_price(test)
        sub = await subscribe(test, price["id"])
        item = sub["items"]["data"][0]["id"]
        usage = {"subscriptionItem": item, "quantity": 18000, "action": "increment"}
        first = await post(test, "/v1/usage_records", usage, key="usage-req-1")
        again = await post(test, "/v1/usage_records", usage, key="usage-req-1")
        assert again["id"] == first["id"]
        batch = {"subscriptionItem": item, "records": [{"quantity": 400}, {"quantity": 20}]}
        await post(test, "/v1/usage_records/batch", batch, key="batch-1")

        async def counted() -> bool:
            summary = await test.get(
                "/v1/usage_records/summaries", params={"subscriptionItem": item}
            )
            return bool(summary.json()["data"][0]["totalUsage"] == 18420)

        await eventually(counted, "the aggregator counts the usage")
        await post(test, f"/v1/test_helpers/subscriptions/{sub['id']}/advance_period")

        async def paid() -> bool:
            listed = await test.get("/v1/invoices", params={"subscription": sub["id"]})
            return any(i["status"] == "paid" for i in listed.json()["data"])

        await eventually(paid, "the invoicer charges the period's invoice")

        def arrived(kind: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return any(json.loads(a.body)["type"] == kind for a in receiver.arrivals)

            return check

        await eventually(arrived("invoice.paid"), "the dispatcher delivers invoice.paid")
        rolled = await post(test, f"/v1/webhook_endpoints/{endpoint['id']}/roll_secret")
        new_secret = found.add("rolled webhook secret", rolled["secret"])
        await post(test, f"/v1/customers/{sub['customer']}", {"name": "Ada L."})
        await eventually(arrived("customer.updated"), "a delivery signed with both secrets")
        for arrival in receiver.arrivals:
            verify_header(arrival.body, arrival.signature, secret)
        updated = [a for a in receiver.arrivals if b'"customer.updated"' in a.body]
        verify_header(updated[0].body, updated[0].signature, new_secret)

        # The same account in live mode.
        live_price = await metered_price(prod)
        live_customer = await post(prod, "/v1/customers", {"name": "Live customer"})
        live_sub = await post(
            prod,
            "/v1/subscriptions",
            {"customer": live_customer["id"], "items": [{"price": live_price["id"]}]},
        )
        live_item = live_sub["items"]["data"][0]["id"]
        await post(prod, "/v1/usage_records", {"subscriptionItem": live_item, "quantity": 3})
        refused = await prod.post(
            "/v1/webhook_endpoints", json={"url": hook_url, "enabledEvents": ["*"]}
        )
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "url"

        # Keys that do not authenticate: unknown ones of every kind, another scheme.
        for prefix in ("sk_test", "sk_live", "rk_test", "rk_live"):
            key = found.add(f"unknown {prefix} key", bogus_key(prefix))
            for path in ("/v1/products", "/v1/usage_records"):
                answer = await anonymous.request(
                    "GET" if path == "/v1/products" else "POST",
                    path,
                    headers={"Authorization": f"Bearer {key}"},
                    json=None if path == "/v1/products" else usage,
                )
                assert answer.status_code == 401, answer.text
        basic = await anonymous.get(
            "/v1/products", headers={"Authorization": f"Basic {keys['sandbox']}"}
        )
        assert basic.status_code == 401
        # A client that also puts its key in the query string: nothing logs the URL (whether
        # the unknown parameter is ignored or refused is not this test's concern).
        listed = await test.get("/v1/customers", params={"apiKey": keys["sandbox"]})
        assert listed.status_code < 500, listed.text


def evidence(name: str, text: str, *, json_logs: bool) -> dict[str, list[str]]:
    """The DEBUG lines of one process's output, by what they show; with JSON logs, every
    line must be a JSON object."""
    found: dict[str, list[str]] = {"debug": [], "settings": [], "delivery": []}
    for line in text.splitlines():
        if not line.strip():
            continue
        if json_logs:
            try:
                record = json.loads(line)
            except ValueError:
                raise AssertionError(f"{name}: not a JSON log line: {line}") from None
            level, logger, message = record["level"], record["logger"], record["msg"]
        else:
            match = re.match(r"\S+ \S+ (\w+)\s+([\w.]+): (.*)", line)
            if match is None:
                continue
            level, logger, message = match.groups()
        if level != "DEBUG":
            continue
        found["debug"].append(line)
        if logger == "vinr.roles" and message.startswith("settings: "):
            found["settings"].append(message)
        if logger == "dispatcher.worker" and message.startswith("delivery "):
            found["delivery"].append(message)
    return found


@pytest.fixture
async def credentials(broker: str) -> AsyncIterator[PasswordEnv]:
    async with password_env(broker, label="secrets") as env:
        yield env


def _env(settings: Settings, *, json_logs: bool) -> dict[str, str]:
    return role_env(
        settings,
        VINR_LOG_LEVEL="DEBUG",
        VINR_LOG_JSON="true" if json_logs else "false",
        **FAST,
    )


@pytest.mark.parametrize("layout", ["vinr up, text logs", "one process per role, JSON logs"])
async def test_the_guide_at_debug_logs_no_secret(
    credentials: PasswordEnv, tmp_path: Path, layout: str
) -> None:
    json_logs = "JSON" in layout
    found = Secrets()
    found.add("Postgres password", credentials.postgres_password)
    found.add("Redis password", credentials.redis_password)
    env = _env(credentials.settings, json_logs=json_logs)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    receiver = Receiver()
    async with (
        roles(env, tmp_path) as run,
        LiveServer(receiver, free_port()) as hook,
    ):
        migrated = await run.run("migrate", "migrate")
        assert migrated.proc.returncode == 0, migrated.output()
        created = await run.cli_output("account-create", "account", "create", "Secrets guide")
        shown = {key[:7]: key for key in KEY.findall(created)}
        keys = {
            "sandbox": found.add("sandbox secret key", shown["sk_test"]),
            "live": found.add("live secret key", shown["sk_live"]),
        }
        if json_logs:
            await run.spawn("api", "api", "--port", str(port), health=f"{api}/readyz")
            for role in ("aggregator", "invoicer", "dispatcher"):
                metrics = free_port()
                await run.spawn(
                    role,
                    role,
                    health=f"http://127.0.0.1:{metrics}/readyz",
                    VINR_METRICS_PORT=str(metrics),
                )
        else:
            await run.spawn("up", "up", "--port", str(port), health=f"{api}/readyz")
        await run.ready()
        await guide_flow(api, keys, found, receiver, hook.url + "/hooks")
        exits = await run.stop()
    assert all(code == 0 for code in exits.values()), exits

    leaks: list[str] = []
    for arrival in receiver.arrivals:
        leaks += found.found_in("a webhook body", arrival.body.decode())
    seen: dict[str, list[str]] = {"debug": [], "settings": [], "delivery": []}
    for process in run.started:
        text = process.output()
        leaks += found.found_in(process.name, text)
        if process.name in ("up", "api", "aggregator", "invoicer", "dispatcher"):
            for kind, lines in evidence(process.name, text, json_logs=json_logs).items():
                seen[kind] += lines
    assert not leaks, "secrets in the output:\n" + "\n".join(leaks)
    # The search could have found something: DEBUG was on, and the lines that would show a
    # DSN (the settings) and a delivery's target were written.
    assert len(seen["debug"]) >= 10, seen["debug"]
    assert seen["settings"] and all("SecretStr('**********')" in s for s in seen["settings"])
    assert seen["delivery"], "no DEBUG line per webhook delivery"


async def test_refused_configuration_and_unreachable_services_log_no_password(
    credentials: PasswordEnv, tmp_path: Path
) -> None:
    """What goes wrong names the setting or the service, never a password: a configuration
    refused at start-up, and an API whose Postgres is not there and whose Redis refuses its
    password (readiness, 503s, logs), and a worker that cannot start without Postgres."""
    found = Secrets()
    found.add("Postgres password", credentials.postgres_password)
    found.add("Redis password", credentials.redis_password)
    wrong = found.add("wrong Redis password", f"wrongpw{random.token_hex(16)}")
    settings = credentials.settings
    nowhere = with_userinfo(
        f"postgresql://127.0.0.1:{free_port()}",
        "vinr",
        credentials.postgres_password,
        path="/nowhere",
    )
    refused_redis = with_userinfo(
        settings.redis_url.get_secret_value(), credentials.redis_user, wrong
    )
    broken = _env(settings, json_logs=False) | {
        "VINR_DATABASE_URL": nowhere,
        "VINR_REDIS_URL": refused_redis,
    }
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    async with roles(broken, tmp_path) as run:
        config = await run.run("bad-config", "migrate", VINR_CLOSE_SETTLE_S="0.5")
        assert config.proc.returncode == 2
        assert "VINR_CLOSE_SETTLE_S" in config.output()
        worker = await run.run("dispatcher", "dispatcher", VINR_LOG_JSON="true")
        assert worker.proc.returncode != 0
        await run.spawn("api", "api", "--port", str(port), health=f"{api}/healthz")
        await run.ready()
        key = found.add("unknown sandbox key", bogus_key("sk_test"))
        async with httpx.AsyncClient(
            base_url=api, timeout=10, headers={"Authorization": f"Bearer {key}"}
        ) as http:
            ready = await http.get("/readyz")
            product = await http.post("/v1/products", json={"name": "x"})
            usage = await http.post("/v1/usage_records", json={"subscriptionItem": "si_x"})
        exits = await run.stop()
    assert ready.status_code == 503, ready.text
    checks = ready.json()["checks"]
    assert checks["postgres"] != "ok" and checks["redis"] != "ok", checks
    assert product.status_code == 503 and usage.status_code == 503
    assert exits["api"] == 0, run.started[-1].output()

    leaks = found.found_in("/readyz", ready.text)
    for answer in (product, usage):
        leaks += found.found_in("an answer", answer.text)
    outputs = {p.name: p.output() for p in run.started}
    for name, text in outputs.items():
        leaks += found.found_in(name, text)
    assert not leaks, "secrets in the output:\n" + "\n".join(leaks)
    # The failures were logged (so there was something to search), JSON ones as JSON.
    assert "postgres unavailable" in outputs["api"], outputs["api"]
    assert "uncaught exception" in outputs["dispatcher"], outputs["dispatcher"]
    assert all(json.loads(line) for line in outputs["dispatcher"].splitlines() if line.strip())
