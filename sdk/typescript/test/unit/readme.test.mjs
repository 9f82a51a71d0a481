import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { startServer } from './helpers.mjs';

const README = new URL('../../README.md', import.meta.url);
const EXAMPLE = new URL('../guide/readme-meters.ts', import.meta.url);
const COMPILED = new URL('../../dist-guide/readme-meters.js', import.meta.url);

function metersBlock() {
  const text = readFileSync(README, 'utf8');
  const section = text.split('\n## Billing meters\n')[1];
  assert.ok(section, 'README.md has a "## Billing meters" section');
  const match = /```typescript\n([\s\S]*?)```/.exec(section);
  assert.ok(match, 'the "Billing meters" section has a typescript block');
  return match[1];
}

test('test/guide/readme-meters.ts holds the README\'s billing meters example verbatim', () => {
  assert.ok(readFileSync(EXAMPLE, 'utf8').includes(metersBlock()));
});

// Answers as the API would, enough for the example to run: each path's object.
function answer(req) {
  const path = req.url.split('?')[0];
  const base = { created: 1764000000, livemode: false };
  switch (`${req.method} ${path}`) {
    case 'POST /v1/billing/meters':
      return { ...base, id: 'mtr_1', object: 'billing.meter', status: 'active', ...req.body };
    case 'POST /v1/products':
      return { ...base, id: 'prod_1', object: 'product', ...req.body };
    case 'POST /v1/prices':
      return { ...base, id: 'price_1', object: 'price', ...req.body };
    case 'POST /v1/subscriptions':
      return { ...base, id: 'sub_1', object: 'subscription', customer: req.body.customer, items: { object: 'list', data: [{ id: 'si_1' }] } };
    case 'POST /v1/billing/meter_events':
      return { ...base, object: 'billing.meter_event', ...req.body };
    case 'POST /v1/billing/meter_events/batch':
      return { ...base, object: 'billing.meter_event_batch', count: req.body.events.length, duplicates: 0, data: req.body.events };
    case 'POST /v1/billing/meter_event_adjustments':
      return { ...base, id: 'mtradj_1', object: 'billing.meter_event_adjustment', status: 'complete', ...req.body };
    case 'GET /v1/billing/meters/mtr_1/event_summaries':
      return {
        object: 'list', url: path, hasMore: false,
        data: [
          { id: 'mtrsum_a', object: 'billing.meter_event_summary', aggregatedValue: 1200, aggregatedValueDecimal: '1200' },
          { id: 'mtrsum_b', object: 'billing.meter_event_summary', aggregatedValue: 0, aggregatedValueDecimal: '0' },
          { id: 'mtrsum_c', object: 'billing.meter_event_summary', aggregatedValue: 350.5, aggregatedValueDecimal: '350.5' },
        ],
      };
    case 'POST /v1/billing/alerts':
      return { ...base, id: 'alrt_1', object: 'billing.alert', status: 'active', ...req.body };
    case 'GET /v1/invoices/upcoming':
      return { ...base, id: null, object: 'invoice', status: 'draft', total: 62, lines: { object: 'list', data: [{ quantity: 1550.5, quantityDecimal: '1550.5', amount: 62 }] } };
    default:
      return undefined;
  }
}

test('the README\'s billing meters example runs, making the calls it describes', async (t) => {
  const server = await startServer((req) => {
    const body = answer(req);
    return body === undefined
      ? { status: 404, body: { error: { type: 'invalid_request_error', message: `unexpected ${req.method} ${req.url}` } } }
      : { status: 200, body };
  });
  t.after(() => server.close());
  const saved = { base: process.env.VINR_API_BASE, key: process.env.VINR_SECRET_KEY };
  t.after(() => {
    for (const [name, value] of [['VINR_API_BASE', saved.base], ['VINR_SECRET_KEY', saved.key]]) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });
  process.env.VINR_API_BASE = server.url;
  process.env.VINR_SECRET_KEY = 'sk_test_readme';

  const example = await import(COMPILED.href);

  const calls = server.requests.map((r) => `${r.method} ${r.url.split('?')[0]}`);
  assert.deepEqual(calls, [
    'POST /v1/billing/meters',
    'POST /v1/products',
    'POST /v1/prices',
    'POST /v1/subscriptions',
    'POST /v1/billing/meter_events',
    'POST /v1/billing/meter_events/batch',
    'POST /v1/billing/meter_event_adjustments',
    'GET /v1/billing/meters/mtr_1/event_summaries',
    'POST /v1/billing/alerts',
    'GET /v1/invoices/upcoming',
  ]);
  const byCall = Object.fromEntries(server.requests.map((r) => [`${r.method} ${r.url.split('?')[0]}`, r]));
  assert.deepEqual(byCall['POST /v1/billing/meters'].body, {
    displayName: 'LLM tokens', eventName: 'llm.tokens', defaultAggregation: { formula: 'sum' }, valueSettings: { eventPayloadKey: 'tokens' },
  });
  assert.deepEqual(byCall['POST /v1/prices'].body.recurring, { interval: 'month', usageType: 'metered', meter: 'mtr_1' });
  assert.deepEqual(byCall['POST /v1/billing/meter_event_adjustments'].body, {
    eventName: 'llm.tokens', type: 'cancel', cancel: { identifier: 'req_7Hq4' },
  });
  const query = new URL(byCall['GET /v1/billing/meters/mtr_1/event_summaries'].url, server.url).searchParams;
  const start = Number(query.get('startTime'));
  assert.equal(start % 86_400, 0);
  assert.equal(Number(query.get('endTime')), start + 86_400);
  assert.equal(query.get('valueGroupingWindow'), 'hour');
  assert.equal(byCall['GET /v1/invoices/upcoming'].url, '/v1/invoices/upcoming?subscription=sub_1');
  assert.ok(server.requests.every((r) => r.headers.authorization === 'Bearer sk_test_readme'));
  assert.equal(example.used, 1550.5);
  assert.equal(example.upcoming.id, null);
  assert.equal(example.alert.id, 'alrt_1');
});
