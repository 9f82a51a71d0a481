import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Vinr, VinrAPIError, VinrConnectionError, VinrInvalidRequestError, VinrRateLimitError } from '@vinr/sdk';

import { apiError, startServer } from './helpers.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const RECORD = { id: 'mbu_1', object: 'usage_record', subscriptionItem: 'si_1', quantity: 1, timestamp: 1, action: 'increment' };
const UNAVAILABLE = apiError(503, 'api_error', { code: 'service_unavailable', headers: { 'Retry-After': '0' } });

function client(url, options = {}) {
  return new Vinr({ secretKey: 'sk_test_retries', apiBase: url, ...options });
}

describe('retries', () => {
  let server;
  let script;
  before(async () => {
    server = await startServer((req, i) => script(req, i));
  });
  after(() => server.close());

  function run(answers) {
    server.requests.length = 0;
    script = (_req, i) => answers[Math.min(i, answers.length - 1)];
  }

  test('503, 503, then 200: three attempts with one generated Idempotency-Key', async () => {
    run([UNAVAILABLE, UNAVAILABLE, { status: 200, body: RECORD }]);
    const record = await client(server.url).usageRecords.create({ subscriptionItem: 'si_1', quantity: 1 });
    assert.deepEqual(record, RECORD);
    assert.equal(server.requests.length, 3);
    const keys = server.requests.map((r) => r.headers['idempotency-key']);
    assert.match(keys[0], UUID);
    assert.deepEqual(keys, [keys[0], keys[0], keys[0]]);
    assert.deepEqual(server.requests.map((r) => r.text), Array(3).fill(server.requests[0].text));
  });

  test("the caller's idempotencyKey is sent on every attempt", async () => {
    run([UNAVAILABLE, { status: 200, body: RECORD }]);
    await client(server.url).usageRecords.create({ subscriptionItem: 'si_1', quantity: 1 }, { idempotencyKey: 'usage-req-42' });
    assert.deepEqual(server.requests.map((r) => r.headers['idempotency-key']), ['usage-req-42', 'usage-req-42']);
  });

  test('each logical call gets its own generated key', async () => {
    run([{ status: 200, body: RECORD }]);
    const vinr = client(server.url);
    await vinr.usageRecords.create({ subscriptionItem: 'si_1', quantity: 1 });
    await vinr.usageRecords.create({ subscriptionItem: 'si_1', quantity: 1 });
    const [a, b] = server.requests.map((r) => r.headers['idempotency-key']);
    assert.notEqual(a, b);
  });

  test('gives up after maxRetries and throws the last error', async () => {
    run([UNAVAILABLE]);
    await assert.rejects(client(server.url).products.create({ name: 'x' }), (error) => {
      assert.ok(error instanceof VinrAPIError);
      assert.equal(error.statusCode, 503);
      assert.equal(error.code, 'service_unavailable');
      return true;
    });
    assert.equal(server.requests.length, 3, '1 attempt + maxRetries (2)');
    run([UNAVAILABLE]);
    await assert.rejects(client(server.url, { maxRetries: 0 }).products.create({ name: 'x' }), VinrAPIError);
    assert.equal(server.requests.length, 1);
    run([UNAVAILABLE]);
    await assert.rejects(client(server.url).products.create({ name: 'x' }, { maxRetries: 4 }), VinrAPIError);
    assert.equal(server.requests.length, 5, 'a per-call maxRetries overrides the client');
  });

  test('429 honours Retry-After', async () => {
    run([apiError(429, 'rate_limit_error', { headers: { 'Retry-After': '1' } }), { status: 200, body: RECORD }]);
    const started = Date.now();
    await client(server.url).usageRecords.create({ subscriptionItem: 'si_1', quantity: 1 });
    assert.ok(Date.now() - started >= 950, `waited ${Date.now() - started} ms`);
    assert.equal(server.requests.length, 2);
  });

  test('429 exhausted surfaces as VinrRateLimitError', async () => {
    run([apiError(429, 'rate_limit_error', { headers: { 'Retry-After': '0' } })]);
    await assert.rejects(client(server.url, { maxRetries: 1 }).products.list(), VinrRateLimitError);
    assert.equal(server.requests.length, 2);
  });

  test('409 idempotency_error (first request still in flight) is retried', async () => {
    run([apiError(409, 'idempotency_error', { code: 'idempotency_key_in_use', headers: { 'Retry-After': '0' } }), { status: 200, body: RECORD }]);
    await client(server.url).usageRecords.create({ subscriptionItem: 'si_1', quantity: 1 });
    assert.equal(server.requests.length, 2);
  });

  test('a 409 conflict of another type and 4xx errors are not retried', async () => {
    for (const answer of [
      apiError(409, 'invalid_request_error', { code: 'resource_exists', param: 'id' }),
      apiError(400, 'invalid_request_error', { param: 'timestamp' }),
      apiError(404, 'invalid_request_error', { code: 'resource_missing' }),
    ]) {
      run([answer]);
      await assert.rejects(client(server.url).customers.create({ id: 'cust_dup' }), VinrInvalidRequestError);
      assert.equal(server.requests.length, 1, `status ${answer.status}`);
    }
  });

  test('a dropped connection is retried with the same key', async () => {
    run(['destroy', { status: 200, body: RECORD }]);
    await client(server.url).usageRecords.createBatch({ subscriptionItem: 'si_1', records: [{ quantity: 1 }] });
    assert.equal(server.requests.length, 2);
    assert.equal(server.requests[0].headers['idempotency-key'], server.requests[1].headers['idempotency-key']);
  });

  test('a timeout is a VinrConnectionError after retries', async () => {
    script = () => new Promise((resolve) => setTimeout(() => resolve({ status: 200, body: RECORD }), 500));
    server.requests.length = 0;
    const started = Date.now();
    await assert.rejects(client(server.url, { timeoutMs: 100, maxRetries: 1 }).products.retrieve('prod_1'), (error) => {
      assert.ok(error instanceof VinrConnectionError);
      assert.equal(error.type, 'api_connection_error');
      assert.equal(error.statusCode, undefined);
      assert.match(error.message, /timed out after 100 ms/);
      return true;
    });
    assert.equal(server.requests.length, 2);
    assert.ok(Date.now() - started < 5000);
  });

  test('GET and DELETE carry no Idempotency-Key', async () => {
    run([{ status: 200, body: { id: 'sub_1', object: 'subscription' } }]);
    const vinr = client(server.url);
    await vinr.subscriptions.retrieve('sub_1');
    await vinr.subscriptions.cancel('sub_1');
    assert.deepEqual(server.requests.map((r) => [r.method, r.headers['idempotency-key']]), [['GET', undefined], ['DELETE', undefined]]);
  });
});

describe('connection failures', () => {
  test('an unreachable server is a VinrConnectionError', async () => {
    const server = await startServer(() => ({ status: 200, body: {} }));
    const url = server.url;
    await server.close();
    await assert.rejects(client(url, { maxRetries: 0 }).products.list(), (error) => {
      assert.ok(error instanceof VinrConnectionError);
      assert.match(error.message, /Could not reach GET http:\/\/127\.0\.0\.1:\d+\/v1\/products/);
      return true;
    });
  });
});
