/**
 * Runs the user guide's TypeScript snippets, unchanged, against a live vinr server.
 * Run with `npm run test:guide` (never part of `npm test`). A harness prepares the server
 * and sets the environment described in REQUIRED_ENV; without it this test fails and says
 * what is missing, rather than passing without having run anything.
 */

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { dirname, resolve } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { accessExtensions } from './recorder.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const PACKAGE_DIR = resolve(HERE, '..');
// The user guide is kept in the repository (docs/guide); every code block in it must match
// snippets.ts, which this test runs. VINR_GUIDE_PATH checks another copy as well.
const REPO_GUIDE = resolve(PACKAGE_DIR, '../../docs/guide/bill-for-usage.md');
const GUIDE_PATHS = [
  ...(process.env.VINR_GUIDE_PATH ? [process.env.VINR_GUIDE_PATH] : []),
  REPO_GUIDE,
];
const SNIPPETS_PATH = resolve(PACKAGE_DIR, 'test/guide/snippets.ts');

const REQUIRED_ENV: Record<string, string> = {
  VINR_API_BASE: 'base URL of a running vinr server (e.g. http://127.0.0.1:8080)',
  VINR_SECRET_KEY: 'a sandbox key (sk_test_…) of the account that owns the fixture below',
  VINR_WEBHOOK_SECRET: 'the whsec_… secret of the webhook endpoint registered for this test',
  VINR_GUIDE_WEBHOOK_PORT:
    'the port this test listens on; the endpoint must be POST http://127.0.0.1:$VINR_GUIDE_WEBHOOK_PORT/ with invoice.paid enabled',
  VINR_GUIDE_FIXTURE:
    "'1' once the fixture exists: customer cust_8aZ2 with a succeeding default payment method (pm_card_visa), " +
    'and metered subscription item si_4Kp1 (sum) whose current period contains 1748390400 and 1748476800 (a test clock)',
};

const BATCH_ITEM = 'si_4Kp1';
const BATCH_TIMESTAMPS = [1748390400, 1748476800];
const BATCH_TOTAL = 1200 + 980;
const WEBHOOK_WAIT_MS = 30_000;
const SUMMARY_WAIT_MS = 10_000;

function missingEnv(): string[] {
  const missing = Object.keys(REQUIRED_ENV).filter((name) => !process.env[name]);
  if (process.env.VINR_GUIDE_FIXTURE !== undefined && process.env.VINR_GUIDE_FIXTURE !== '1') {
    missing.push('VINR_GUIDE_FIXTURE');
  }
  return [...new Set(missing)];
}

/** The ```typescript blocks of a copy of the guide, in order. */
function guideSnippets(path: string): string[] {
  if (!existsSync(path)) {
    throw new Error(`Guide not found at ${path}; set VINR_GUIDE_PATH to the "Bill for usage" guide file.`);
  }
  const text = readFileSync(path, 'utf8');
  return [...text.matchAll(/```typescript\n([\s\S]*?)```/g)].map((match) => match[1] ?? '');
}

async function poll<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(250);
  }
}

interface Delivery {
  status: number;
  type: string;
  error?: string;
}

type Handler = (req: Request) => Promise<Response>;

/** A node:http server that turns each delivery into a WHATWG Request for the guide's POST. */
function startWebhookReceiver(port: number, handler: Promise<Handler>, log: Delivery[]): Promise<http.Server> {
  const server = http.createServer(async (incoming, outgoing) => {
    const chunks: Buffer[] = [];
    for await (const chunk of incoming) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const headers = new Headers();
    for (const [name, value] of Object.entries(incoming.headers)) {
      for (const item of Array.isArray(value) ? value : value === undefined ? [] : [value]) {
        headers.append(name, item);
      }
    }
    const method = incoming.method ?? 'GET';
    const request = new Request(new URL(incoming.url ?? '/', `http://127.0.0.1:${port}`), {
      method,
      headers,
      ...(method === 'GET' || method === 'HEAD' ? {} : { body }),
    });
    let type = '?';
    try {
      type = String((JSON.parse(body.toString('utf8')) as { type?: unknown }).type);
    } catch {
      type = '(not JSON)';
    }
    try {
      const response = await (await handler)(request);
      outgoing.writeHead(response.status, Object.fromEntries(response.headers.entries()));
      outgoing.end(Buffer.from(await response.arrayBuffer()));
      log.push({ status: response.status, type });
    } catch (error: unknown) {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      outgoing.writeHead(400, { 'Content-Type': 'text/plain' });
      outgoing.end(message);
      log.push({ status: 400, type, error: message });
    }
  });
  return new Promise((resolvePromise, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolvePromise(server));
  });
}

test('snippets.ts holds every TypeScript snippet of the guide, verbatim', () => {
  const source = readFileSync(SNIPPETS_PATH, 'utf8');
  for (const path of GUIDE_PATHS) {
    const snippets = guideSnippets(path);
    assert.equal(snippets.length, 6, `the guide (${path}) has six TypeScript snippets`);
    for (const snippet of snippets) {
      assert.ok(source.includes(snippet), `snippet of ${path} missing from test/guide/snippets.ts:\n${snippet}`);
    }
  }
});

test('the guide runs unchanged against a live server, through invoice.paid', { timeout: 120_000 }, async () => {
  const missing = missingEnv();
  if (missing.length > 0) {
    throw new Error(
      'The guide test needs a prepared vinr server. Missing or invalid:\n' +
        missing.map((name) => `  ${name}: ${REQUIRED_ENV[name]}`).join('\n'),
    );
  }
  const port = Number(process.env.VINR_GUIDE_WEBHOOK_PORT);
  const deliveries: Delivery[] = [];
  let resolveHandler: (handler: Handler) => void = () => undefined;
  let rejectHandler: (error: unknown) => void = () => undefined;
  const handler = new Promise<Handler>((res, rej) => {
    resolveHandler = res;
    rejectHandler = rej;
  });
  handler.catch(() => undefined);
  const server = await startWebhookReceiver(port, handler, deliveries);
  try {
    // Importing the module runs the snippets: product, price, subscription, batch, summary.
    const guide = await import('./snippets.js').catch((error: unknown) => {
      rejectHandler(error);
      throw error;
    });
    resolveHandler(guide.POST);
    const { vinr, product, price, subscription, reportApiCall, summary } = guide;

    assert.match(product.id, /^prod_/);
    assert.equal(product.name, 'API access');
    assert.match(price.id, /^price_/);
    assert.equal(price.product, product.id);
    assert.equal(price.currency.toLowerCase(), 'eur');
    assert.equal(price.unitAmountDecimal, '0.2');
    assert.equal(price.recurring.usageType, 'metered');
    assert.equal(price.recurring.aggregateUsage, 'sum');
    assert.match(subscription.id, /^sub_/);
    assert.equal(subscription.customer, 'cust_8aZ2');
    assert.equal(subscription.items.data.length, 1);
    const item = subscription.items.data[0];
    assert.ok(item);
    assert.match(item.id, /^si_/);
    assert.equal(summary.object, 'list');
    assert.ok(summary.data.length > 0, `no usage summary for ${BATCH_ITEM}`);

    // The batch on si_4Kp1 is visible in its period's summary (aggregation is asynchronous).
    await poll(`${BATCH_ITEM}'s summary to include the batch`, SUMMARY_WAIT_MS, async () => {
      const { data } = await vinr.usageRecords.summaries({ subscriptionItem: BATCH_ITEM });
      const period = data.find((s) => BATCH_TIMESTAMPS.every((t) => s.period.start <= t && t < s.period.end));
      return period !== undefined && period.totalUsage >= BATCH_TOTAL ? period : undefined;
    });

    // Report usage on the new subscription the guide's way; a retried report counts once.
    const first = await reportApiCall(item.id, 7, randomUUID());
    const second = await reportApiCall(item.id, 5, randomUUID());
    assert.match(first, /^mbu_/);
    assert.match(second, /^mbu_/);
    assert.notEqual(first, second);
    const retried = { subscriptionItem: item.id, quantity: 3, timestamp: Math.floor(Date.now() / 1000) };
    const key = `usage-${randomUUID()}`;
    const once = await vinr.usageRecords.create(retried, { idempotencyKey: key });
    const again = await vinr.usageRecords.create(retried, { idempotencyKey: key });
    assert.equal(again.id, once.id, 'a retried report with the same idempotency key is replayed');
    const reported = 7 + 5 + 3;
    await poll(`${item.id}'s summary to reach ${reported}`, SUMMARY_WAIT_MS, async () => {
      const { data } = await vinr.usageRecords.summaries({ subscriptionItem: item.id });
      return data[0]?.totalUsage === reported ? data[0] : undefined;
    });

    // "Advance billing period", then the guide's handler sees invoice.paid.
    await vinr.testHelpers.subscriptions.advancePeriod(subscription.id);
    const extension = await poll('invoice.paid to reach the guide handler', WEBHOOK_WAIT_MS, async () =>
      accessExtensions.find((call) => call.subscriptionId === subscription.id),
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}; deliveries received: ${JSON.stringify(deliveries)}`);
    });
    assert.equal(typeof extension.periodEnd, 'number');
    assert.ok(
      extension.periodEnd > subscription.currentPeriodStart,
      `periodEnd ${extension.periodEnd} should be after the period start ${subscription.currentPeriodStart}`,
    );

    // "Check the line item quantity matches your reported total."
    const invoices = await vinr.invoices.list({ subscription: subscription.id });
    const invoice = invoices.data.find((inv) => inv.status === 'paid' && inv.periodEnd === extension.periodEnd);
    assert.ok(invoice, `no paid invoice with periodEnd ${extension.periodEnd}: ${JSON.stringify(invoices.data)}`);
    const line = invoice.lines.data.find((l) => l.subscriptionItem === item.id);
    assert.ok(line, `invoice ${invoice.id} has no line for ${item.id}`);
    assert.equal(line.quantity, reported);
    assert.equal(line.amount, 3, '15 units at 0.2 minor units = 3 cents');
    assert.ok(
      deliveries.every((d) => d.status === 200),
      `every delivery verifies: ${JSON.stringify(deliveries.filter((d) => d.status !== 200))}`,
    );
  } finally {
    server.closeAllConnections();
    await new Promise((res) => server.close(res));
  }
});
