"""Each role as its own process: readiness, metrics, and a clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import httpx
import pytest

from infra import devenv
from infra.devenv import free_port
from infra.settings import Settings


def role_env(settings: Settings, **extra: str) -> dict[str, str]:
    return devenv.role_env(settings, **({"VINR_LOG_LEVEL": "WARNING"} | extra))


Process = asyncio.subprocess.Process


async def _spawn(*args: str, env: dict[str, str], stderr: int | None = None) -> Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vinr.cli", *args, env=env, stderr=stderr
    )


async def _wait_ready(url: str, proc: Process) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        for _ in range(150):
            if proc.returncode is not None:
                raise AssertionError(f"role exited early with {proc.returncode}")
            try:
                response = await http.get(url, timeout=1)
                if response.status_code == 200:
                    return response
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never became ready")


async def _stop(proc: Process) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        raise AssertionError("role did not exit within 30 s of SIGTERM") from None


async def _reap(proc: Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


@pytest.mark.parametrize("role", ["aggregator", "invoicer", "dispatcher"])
async def test_worker_role_ready_metrics_and_sigterm(settings: Settings, role: str) -> None:
    port = free_port()
    proc = await _spawn(role, env=role_env(settings, VINR_METRICS_PORT=str(port)))
    try:
        ready = await _wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        assert ready.json()["status"] == "ready"
        async with httpx.AsyncClient() as http:
            metrics = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert metrics.status_code == 200
        assert "vinr_aggregator_records_total" in metrics.text
        assert await _stop(proc) == 0
    finally:
        await _reap(proc)


async def test_worker_not_ready_without_its_database(settings: Settings) -> None:
    port = free_port()
    dead = f"postgresql://root@127.0.0.1:{free_port()}/nowhere"
    env = role_env(settings, VINR_METRICS_PORT=str(port))
    proc = await _spawn(
        "dispatcher", env=env | {"VINR_DATABASE_URL": dead}, stderr=asyncio.subprocess.PIPE
    )
    try:
        # The dispatcher cannot start without Postgres: it exits non-zero and says why.
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode != 0
        assert b"postgres" in err.lower() or b"connect" in err.lower()
    finally:
        await _reap(proc)


async def test_api_role_ready_and_sigterm(settings: Settings) -> None:
    port = free_port()
    proc = await _spawn("api", "--port", str(port), env=role_env(settings))
    try:
        ready = await _wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok", "kafka": "ok"}
        async with httpx.AsyncClient() as http:
            spec = await http.get(f"http://127.0.0.1:{port}/openapi.json")
            refused = await http.post(f"http://127.0.0.1:{port}/v1/usage_records", json={})
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        assert "/v1/usage_records" in spec.json()["paths"]
        assert refused.status_code == 401
        # The hot path's own collector, in the role's registry.
        assert 'vinr_ingest_requests_total{route="single",status="401"} 1.0' in metrics
        assert 'vinr_ingest_request_seconds_count{route="single"} 1.0' in metrics
        assert "vinr_ingest_records_total 0.0" in metrics
        assert await _stop(proc) == 0
    finally:
        await _reap(proc)


def test_account_create_prints_the_sandbox_key_last(settings: Settings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vinr.cli", "account", "create", "Acme"],
        env=role_env(settings),
        capture_output=True,
        text=True,
        check=True,
    )
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("sk_test_") and " " not in last
