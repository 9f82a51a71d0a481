"""``make demo``: the guide, end to end, with the Python SDK against a live ``vinr up``.

Starts ``vinr up`` (which starts the dev broker when no Kafka is configured), creates an
account with ``vinr account create``, then follows "Bill for usage": a metered price at
€0.002/unit, a subscription, usage records (one retried with the same idempotency key, one
batch), the running summary, "Advance billing period", the signed ``invoice.paid`` webhook,
and the invoice. Exits non-zero if the invoice does not match the usage reported.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from vinr_sdk import SignatureVerificationError, Vinr

from domain.pricing import format_amount

_WAIT_S = 30.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Receiver(BaseHTTPRequestHandler):
    """The guide's webhook handler: verify, then act on invoice.paid."""

    client: Vinr
    paid: list[Any] = []
    arrived = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            event = self.client.webhooks.verify(body, self.headers.get("x-vinr-signature"))
        except SignatureVerificationError as exc:
            print(f"  webhook rejected: {exc}")
            self.send_response(400)
            self.end_headers()
            return
        if event["type"] == "invoice.paid":
            self.paid.append(event)
            self.arrived.set()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, format: str, *args: Any) -> None:
        return


def _wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("vinr up exited during start-up")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("vinr up did not become ready")


def _step(text: str) -> None:
    print(f"\n▸ {text}", flush=True)


def run(base: str, secret_key: str) -> int:
    vinr = Vinr(secret_key, api_base=base)
    _step("Define a metered price (€0.002 per API request, summed monthly)")
    product = vinr.products.create(name="API access")
    price = vinr.prices.create(
        product=product.id,
        currency="EUR",
        billing_scheme="usage",
        unit_amount_decimal="0.2",
        recurring={"interval": "month", "usage_type": "metered", "aggregate_usage": "sum"},
    )
    print(f"  {product.id}  {price.id}  unit_amount_decimal={price.unit_amount_decimal}")

    _step("Subscribe the customer")
    vinr.customers.create(
        id="cust_8aZ2", name="Ada Lovelace", email="ada@example.com", payment_method="pm_card_visa"
    )
    subscription = vinr.subscriptions.create(customer="cust_8aZ2", items=[{"price": price.id}])
    item = subscription["items"].data[0].id
    print(f"  {subscription.id}  item {item}  status={subscription.status}")

    port = _free_port()
    _Receiver.client = vinr
    server = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = vinr.webhook_endpoints.create(
        url=f"http://127.0.0.1:{port}/webhooks",
        enabled_events=["invoice.paid", "invoice.payment_failed"],
    )
    os.environ["VINR_WEBHOOK_SECRET"] = endpoint.secret
    print(f"  webhook endpoint {endpoint.id} → http://127.0.0.1:{port}/webhooks")

    _step("Report usage records")

    def report_api_call(count: int, request_id: str) -> str:
        record = vinr.usage_records.create(
            subscription_item=item,
            quantity=count,
            timestamp=int(time.time()),
            action="increment",
            idempotency_key=f"usage-{request_id}",
        )
        return str(record.id)

    reported = 0
    for count in (12_000, 5_000):
        request_id = uuid.uuid4().hex[:12]
        record_id = report_api_call(count, request_id)
        reported += count
        print(f"  {record_id}  +{count}  (usage-{request_id})")
    retried = report_api_call(5_000, request_id)
    print(f"  {retried}  retry of usage-{request_id}: same id, not counted again")
    now = int(time.time())
    batch = vinr.usage_records.create_batch(
        subscription_item=item,
        records=[
            {"quantity": 1200, "timestamp": now, "action": "increment"},
            {"quantity": 220, "timestamp": now, "action": "increment"},
        ],
    )
    reported += 1420
    print(f"  batch {batch.id}: {batch.count} records, +1420")

    _step("Inspect the running total")
    deadline = time.monotonic() + _WAIT_S
    total = -1
    while time.monotonic() < deadline:
        total = vinr.usage_records.summaries(subscription_item=item).data[0].total_usage
        if total == reported:
            break
        time.sleep(0.1)
    print(f"  total_usage = {total} (reported {reported})")

    _step("Advance billing period (sandbox)")
    vinr.test_helpers.subscriptions.advance_period(subscription.id)
    if not _Receiver.arrived.wait(_WAIT_S):
        print("  no invoice.paid webhook arrived")
        return 1
    event = _Receiver.paid[0]
    print(f"  invoice.paid {event.id} received, signature verified")

    _step("Confirm the charge")
    invoice = vinr.invoices.retrieve(event.data.id)
    line = invoice.lines.data[0]
    print(
        f"  invoice {invoice.id}  status={invoice.status}  period "
        f"{time.strftime('%Y-%m-%d', time.gmtime(invoice.period_start))} → "
        f"{time.strftime('%Y-%m-%d', time.gmtime(invoice.period_end))}"
    )
    print(
        f"  line: {line.quantity} × {line.unit_amount_decimal} {invoice.currency} minor units"
        f" = {format_amount(line.amount, invoice.currency)}"
    )
    print(f"  total charged: {format_amount(invoice.total, invoice.currency)}")
    server.shutdown()
    expected = (reported * 2 + 5) // 10  # × 0.2 minor units, rounded half up once
    if line.quantity != reported or invoice.total != expected or invoice.status != "paid":
        print(f"\nMISMATCH: expected quantity {reported} and total {expected}")
        return 1
    print(
        f"\n✔ quantity {line.quantity} equals the usage reported (the retry was not counted),"
        f" amount exact: {format_amount(invoice.total, invoice.currency)}"
    )
    return 0


def main() -> int:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    log_path = os.path.join(tempfile.gettempdir(), "vinr-demo-up.log")
    print(f"starting `vinr up --port {port}` (its log: {log_path})", flush=True)
    log = open(log_path, "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, "-m", "vinr.cli", "up", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(base, proc)
        created = subprocess.run(
            [sys.executable, "-m", "vinr.cli", "account", "create", "demo"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        secret_key = created.stdout.strip().splitlines()[-1]
        return run(base, secret_key)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
