import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Vinr, VinrIdempotencyError, VinrInvalidRequestError } from '@vinr/sdk';

import { apiError, startServer } from './helpers.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const METER = {
  id: 'mtr_1',
  object: 'billing.meter',
  created: 1764000000,
  updated: 1764000600,
  livemode: false,
  displayName: 'Tokens',
  eventName: 'tokens_used',
  status: 'inactive',
  defaultAggregation: { formula: 'sum' },
  customerMapping: { type: 'by_id', eventPayloadKey: 'customer_id' },
  valueSettings: { eventPayloadKey: 'token_count' },
  statusTransitions: { deactivatedAt: 1764000600 },
};

// Every billing method: the HTTP method, path (with query) and JSON body it sends.
describe('billing resources map to the documented endpoints', () => {
  let server;
  let vinr;
  before(async () => {
    server = await startServer((req) => ({ status: 200, body: { echo: `${req.method} ${req.url}` } }));
    vinr = new Vinr({ secretKey: 'sk_test_billing', apiBase: server.url, maxRetries: 0 });
  });
  after(() => server.close());

  const calls = [
    [
      'billing.meters.create',
      (v) => v.billing.meters.create({
        displayName: 'Tokens',
        eventName: 'tokens_used',
        defaultAggregation: { formula: 'sum' },
        customerMapping: { type: 'by_id', eventPayloadKey: 'customer_id' },
        valueSettings: { eventPayloadKey: 'token_count' },
      }),
      'POST',
      '/v1/billing/meters',
      {
        displayName: 'Tokens',
        eventName: 'tokens_used',
        defaultAggregation: { formula: 'sum' },
        customerMapping: { type: 'by_id', eventPayloadKey: 'customer_id' },
        valueSettings: { eventPayloadKey: 'token_count' },
      },
    ],
    ['billing.meters.retrieve', (v) => v.billing.meters.retrieve('mtr_1'), 'GET', '/v1/billing/meters/mtr_1'],
    ['billing.meters.list', (v) => v.billing.meters.list({ status: 'active', limit: 2, startingAfter: 'mtr_9' }), 'GET', '/v1/billing/meters?status=active&limit=2&startingAfter=mtr_9'],
    ['billing.meters.list without params', (v) => v.billing.meters.list(), 'GET', '/v1/billing/meters'],
    ['billing.meters.update', (v) => v.billing.meters.update('mtr_1', { displayName: 'Tokens (v2)' }), 'POST', '/v1/billing/meters/mtr_1', { displayName: 'Tokens (v2)' }],
    ['billing.meters.deactivate', (v) => v.billing.meters.deactivate('mtr_1'), 'POST', '/v1/billing/meters/mtr_1/deactivate', {}],
    ['billing.meters.reactivate', (v) => v.billing.meters.reactivate('mtr_1'), 'POST', '/v1/billing/meters/mtr_1/reactivate', {}],
    [
      'billing.meters.listEventSummaries',
      (v) => v.billing.meters.listEventSummaries('mtr_1', { customer: 'cust_1', startTime: 1764000000, endTime: 1764086400, valueGroupingWindow: 'hour' }),
      'GET',
      '/v1/billing/meters/mtr_1/event_summaries?customer=cust_1&startTime=1764000000&endTime=1764086400&valueGroupingWindow=hour',
    ],
    [
      'billing.meters.listEventSummaries without a window',
      (v) => v.billing.meters.listEventSummaries('mtr_1', { customer: 'cust_1', startTime: 60, endTime: 120 }),
      'GET',
      '/v1/billing/meters/mtr_1/event_summaries?customer=cust_1&startTime=60&endTime=120',
    ],
    [
      'billing.meters.listEvents',
      (v) => v.billing.meters.listEvents('mtr_1', { customer: 'cust_1', limit: 50, startingAfter: 'evt-9' }),
      'GET',
      '/v1/billing/meters/mtr_1/events?customer=cust_1&limit=50&startingAfter=evt-9',
    ],
    [
      'billing.meterEvents.create',
      (v) => v.billing.meterEvents.create({ eventName: 'tokens_used', payload: { customer_id: 'cust_1', token_count: '12.5' }, identifier: 'req-42', timestamp: 1764000030 }),
      'POST',
      '/v1/billing/meter_events',
      { eventName: 'tokens_used', payload: { customer_id: 'cust_1', token_count: '12.5' }, identifier: 'req-42', timestamp: 1764000030 },
    ],
    [
      'billing.meterEvents.create without identifier or timestamp',
      (v) => v.billing.meterEvents.create({ eventName: 'api_calls', payload: { customer: 'cust_1' } }),
      'POST',
      '/v1/billing/meter_events',
      { eventName: 'api_calls', payload: { customer: 'cust_1' } },
    ],
    [
      'billing.meterEvents.createBatch',
      (v) => v.billing.meterEvents.createBatch({
        events: [
          { eventName: 'tokens_used', payload: { customer_id: 'cust_1', token_count: 7 }, identifier: 'req-1' },
          { eventName: 'tokens_used', payload: { customer_id: 'cust_2', token_count: '0.25' }, timestamp: 1764000031 },
        ],
      }),
      'POST',
      '/v1/billing/meter_events/batch',
      {
        events: [
          { eventName: 'tokens_used', payload: { customer_id: 'cust_1', token_count: 7 }, identifier: 'req-1' },
          { eventName: 'tokens_used', payload: { customer_id: 'cust_2', token_count: '0.25' }, timestamp: 1764000031 },
        ],
      },
    ],
    [
      'billing.meterEventAdjustments.create',
      (v) => v.billing.meterEventAdjustments.create({ eventName: 'tokens_used', type: 'cancel', cancel: { identifier: 'req-42' } }),
      'POST',
      '/v1/billing/meter_event_adjustments',
      { eventName: 'tokens_used', type: 'cancel', cancel: { identifier: 'req-42' } },
    ],
    [
      'billing.alerts.create',
      (v) => v.billing.alerts.create({
        title: '1M tokens',
        alertType: 'usage_threshold',
        usageThreshold: { meter: 'mtr_1', gte: 1_000_000, recurrence: 'one_time' },
        filter: { customer: 'cust_1' },
      }),
      'POST',
      '/v1/billing/alerts',
      {
        title: '1M tokens',
        alertType: 'usage_threshold',
        usageThreshold: { meter: 'mtr_1', gte: 1_000_000, recurrence: 'one_time' },
        filter: { customer: 'cust_1' },
      },
    ],
    ['billing.alerts.retrieve', (v) => v.billing.alerts.retrieve('alrt_1'), 'GET', '/v1/billing/alerts/alrt_1'],
    ['billing.alerts.list', (v) => v.billing.alerts.list({ limit: 5 }), 'GET', '/v1/billing/alerts?limit=5'],
    ['billing.alerts.activate', (v) => v.billing.alerts.activate('alrt_1'), 'POST', '/v1/billing/alerts/alrt_1/activate', {}],
    ['billing.alerts.deactivate', (v) => v.billing.alerts.deactivate('alrt_1'), 'POST', '/v1/billing/alerts/alrt_1/deactivate', {}],
    ['billing.alerts.archive', (v) => v.billing.alerts.archive('alrt_1'), 'POST', '/v1/billing/alerts/alrt_1/archive', {}],
    ['invoices.upcoming', (v) => v.invoices.upcoming({ subscription: 'sub_1' }), 'GET', '/v1/invoices/upcoming?subscription=sub_1'],
    [
      'prices.create on a meter',
      (v) => v.prices.create({ product: 'prod_1', currency: 'EUR', billingScheme: 'per_unit', unitAmountDecimal: '0.0004', recurring: { interval: 'month', usageType: 'metered', meter: 'mtr_1' } }),
      'POST',
      '/v1/prices',
      { product: 'prod_1', currency: 'EUR', billingScheme: 'per_unit', unitAmountDecimal: '0.0004', recurring: { interval: 'month', usageType: 'metered', meter: 'mtr_1' } },
    ],
  ];

  for (const [name, call, method, url, body] of calls) {
    test(name, async () => {
      server.requests.length = 0;
      const result = await call(vinr);
      assert.deepEqual(result, { echo: `${method} ${url}` });
      assert.equal(server.requests.length, 1);
      const [req] = server.requests;
      assert.equal(req.method, method);
      assert.equal(req.url, url);
      assert.deepEqual(req.body, body);
      assert.equal(req.headers.authorization, 'Bearer sk_test_billing');
      if (method === 'POST') {
        assert.equal(req.headers['content-type'], 'application/json');
        assert.match(req.headers['idempotency-key'], UUID);
      } else {
        assert.equal(req.headers['idempotency-key'], undefined);
        assert.equal(req.text, '');
      }
    });
  }

  test('the caller\'s idempotencyKey goes on every billing POST', async () => {
    server.requests.length = 0;
    const b = vinr.billing;
    const key = (n) => ({ idempotencyKey: `k-${n}` });
    await b.meters.create({ displayName: 'd', eventName: 'e', defaultAggregation: { formula: 'count' } }, key(1));
    await b.meters.update('mtr_1', { displayName: 'd2' }, key(2));
    await b.meters.deactivate('mtr_1', key(3));
    await b.meters.reactivate('mtr_1', key(4));
    await b.meterEvents.create({ eventName: 'e', payload: { customer: 'cust_1' } }, key(5));
    await b.meterEvents.createBatch({ events: [{ eventName: 'e', payload: { customer: 'cust_1' } }] }, key(6));
    await b.meterEventAdjustments.create({ eventName: 'e', type: 'cancel', cancel: { identifier: 'x' } }, key(7));
    await b.alerts.create({ title: 't', alertType: 'usage_threshold', usageThreshold: { meter: 'mtr_1', gte: 1, recurrence: 'one_time' } }, key(8));
    await b.alerts.activate('alrt_1', key(9));
    await b.alerts.deactivate('alrt_1', key(10));
    await b.alerts.archive('alrt_1', key(11));
    assert.deepEqual(server.requests.map((r) => r.headers['idempotency-key']), Array.from({ length: 11 }, (_, i) => `k-${i + 1}`));
    assert.ok(server.requests.every((r) => !('idempotencyKey' in r.body)));
  });

  test('no identifier is made client-side: two calls, two bodies without one, two keys', async () => {
    server.requests.length = 0;
    for (let i = 0; i < 2; i += 1) {
      await vinr.billing.meterEvents.create({ eventName: 'e', payload: { customer: 'cust_1' } });
    }
    assert.deepEqual(server.requests.map((r) => r.body), [
      { eventName: 'e', payload: { customer: 'cust_1' } },
      { eventName: 'e', payload: { customer: 'cust_1' } },
    ]);
    const [first, second] = server.requests.map((r) => r.headers['idempotency-key']);
    assert.notEqual(first, second);
  });

  test('meter ids are percent-encoded and empty ids refused before sending', async () => {
    server.requests.length = 0;
    await vinr.billing.meters.listEvents('mtr/1?x', { customer: 'cust_1' });
    assert.equal(server.requests[0].url, '/v1/billing/meters/mtr%2F1%3Fx/events?customer=cust_1');
    await assert.rejects(vinr.billing.meters.retrieve(''), TypeError);
    await assert.rejects(vinr.billing.meters.listEventSummaries('', { customer: 'c', startTime: 0, endTime: 60 }), TypeError);
    await assert.rejects(vinr.billing.alerts.archive(''), TypeError);
    assert.equal(server.requests.length, 1);
  });
});

describe('billing answers and refusals', () => {
  let server;
  let script;
  before(async () => {
    server = await startServer((req, i) => script(req, i));
  });
  after(() => server.close());

  function client(options = {}) {
    return new Vinr({ secretKey: 'sk_test_billing', apiBase: server.url, maxRetries: 0, ...options });
  }

  function run(answers) {
    server.requests.length = 0;
    script = (_req, i) => answers[Math.min(i, answers.length - 1)];
  }

  test('a meter comes back as the API sent it', async () => {
    run([{ status: 200, body: METER }]);
    const meter = await client().billing.meters.retrieve('mtr_1');
    assert.deepEqual(meter, METER);
    assert.equal(meter.statusTransitions.deactivatedAt, 1764000600);
    assert.equal(meter.valueSettings.eventPayloadKey, 'token_count');
  });

  test('event summaries carry a JSON number and the exact decimal', async () => {
    const page = {
      object: 'list',
      url: '/v1/billing/meters/mtr_1/event_summaries',
      hasMore: false,
      data: [
        { id: 'mtrsum_a', object: 'billing.meter_event_summary', meter: 'mtr_1', customer: 'cust_1', livemode: false, startTime: 1764000000, endTime: 1764003600, aggregatedValue: 0.30000000000000004, aggregatedValueDecimal: '0.300000000000' },
        { id: 'mtrsum_b', object: 'billing.meter_event_summary', meter: 'mtr_1', customer: 'cust_1', livemode: false, startTime: 1764003600, endTime: 1764007200, aggregatedValue: 0, aggregatedValueDecimal: '0' },
      ],
    };
    run([{ status: 200, body: page }]);
    const summaries = await client().billing.meters.listEventSummaries('mtr_1', { customer: 'cust_1', startTime: 1764000000, endTime: 1764007200, valueGroupingWindow: 'hour' });
    assert.deepEqual(summaries, page);
    const [first, second] = summaries.data;
    assert.equal(first.aggregatedValueDecimal, '0.300000000000');
    assert.equal(typeof first.aggregatedValue, 'number');
    assert.equal(second.aggregatedValue, 0);
  });

  test('a batch answer counts duplicates', async () => {
    const batch = { object: 'billing.meter_event_batch', created: 1, livemode: false, count: 2, duplicates: 1, data: [{ identifier: 'a' }, { identifier: 'b' }] };
    run([{ status: 200, body: batch }]);
    const answer = await client().billing.meterEvents.createBatch({ events: [
      { eventName: 'e', payload: { customer: 'c' }, identifier: 'a' },
      { eventName: 'e', payload: { customer: 'c' }, identifier: 'b' },
    ] });
    assert.equal(answer.count, 2);
    assert.equal(answer.duplicates, 1);
    assert.deepEqual(answer.data.map((e) => e.identifier), ['a', 'b']);
  });

  test('the upcoming invoice has a null id and decimal line quantities', async () => {
    const invoice = {
      id: null, object: 'invoice', status: 'draft', total: 5,
      lines: { object: 'list', data: [{ id: 'il_1', quantity: 12345.5, quantityDecimal: '12345.5', amount: 5, price: { id: 'price_1', recurring: { meter: 'mtr_1' } } }] },
    };
    run([{ status: 200, body: invoice }]);
    const upcoming = await client().invoices.upcoming({ subscription: 'sub_1' });
    assert.equal(upcoming.id, null);
    assert.equal(upcoming.status, 'draft');
    assert.equal(upcoming.lines.data[0].quantityDecimal, '12345.5');
    assert.equal(upcoming.lines.data[0].price.recurring.meter, 'mtr_1');
  });

  test('a retried batch resends one key and the same bytes', async () => {
    run([
      apiError(503, 'api_error', { headers: { 'Retry-After': '0' } }),
      apiError(409, 'idempotency_error', { message: 'in flight', headers: { 'Retry-After': '0' } }),
      { status: 200, body: { object: 'billing.meter_event_batch', count: 1, duplicates: 0, data: [] } },
    ]);
    await client({ maxRetries: 2 }).billing.meterEvents.createBatch({ events: [{ eventName: 'e', payload: { customer: 'cust_1', value: 3 } }] });
    assert.equal(server.requests.length, 3);
    assert.equal(new Set(server.requests.map((r) => r.headers['idempotency-key'])).size, 1);
    assert.equal(new Set(server.requests.map((r) => r.text)).size, 1);
  });

  const refusals = [
    ['no active meter', (v) => v.billing.meterEvents.create({ eventName: 'nope', payload: { customer: 'cust_1' } }), 400, 'meter_not_found', 'eventName'],
    ['a bad event in a batch', (v) => v.billing.meterEvents.createBatch({ events: [{ eventName: 'e', payload: { customer: 'cust_1', value: 'x' } }] }), 400, 'parameter_invalid', 'events[0].payload.value'],
    ['a cancel in an invoiced period', (v) => v.billing.meterEventAdjustments.create({ eventName: 'e', type: 'cancel', cancel: { identifier: 'old' } }), 400, 'event_in_invoiced_period', 'cancel.identifier'],
    ['a summary range off the minute', (v) => v.billing.meters.listEventSummaries('mtr_1', { customer: 'cust_1', startTime: 1, endTime: 2 }), 400, 'parameter_invalid', 'startTime'],
    ['an unknown alert', (v) => v.billing.alerts.retrieve('alrt_missing'), 404, 'resource_missing', 'id'],
    ['an unknown subscription', (v) => v.invoices.upcoming({ subscription: 'sub_gone' }), 404, 'resource_missing', 'subscription'],
  ];
  for (const [name, call, status, code, param] of refusals) {
    test(`refused: ${name} → VinrInvalidRequestError, not retried`, async () => {
      run([apiError(status, 'invalid_request_error', { code, param, message: `refused: ${name}` })]);
      const error = await call(client({ maxRetries: 2 })).then(
        () => assert.fail('expected a refusal'),
        (e) => e,
      );
      assert.ok(error instanceof VinrInvalidRequestError, error.name);
      assert.equal(error.statusCode, status);
      assert.equal(error.code, code);
      assert.equal(error.param, param);
      assert.equal(error.message, `refused: ${name}`);
      assert.equal(server.requests.length, 1);
    });
  }

  test('an identifier sent with another event → VinrIdempotencyError', async () => {
    run([apiError(400, 'idempotency_error', { message: 'identifier req-1 was sent with another event' })]);
    await assert.rejects(
      client().billing.meterEvents.create({ eventName: 'e', payload: { customer: 'cust_1', value: 2 }, identifier: 'req-1' }),
      (e) => e instanceof VinrIdempotencyError && e.statusCode === 400 && /req-1/.test(e.message),
    );
  });
});
