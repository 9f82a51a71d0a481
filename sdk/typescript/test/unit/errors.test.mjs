import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  Vinr,
  VinrAPIError,
  VinrAuthenticationError,
  VinrError,
  VinrIdempotencyError,
  VinrInvalidRequestError,
  VinrRateLimitError,
} from '@vinr/sdk';

import { apiError, startServer } from './helpers.mjs';

describe('error mapping', () => {
  let server;
  let answer;
  before(async () => {
    server = await startServer(() => answer);
  });
  after(() => server.close());

  async function failure(response) {
    answer = response;
    const vinr = new Vinr({ secretKey: 'sk_test_errors', apiBase: server.url, maxRetries: 0 });
    try {
      await vinr.usageRecords.create({ subscriptionItem: 'si_1', quantity: 1, timestamp: 1 });
    } catch (error) {
      assert.ok(error instanceof VinrError);
      assert.ok(error instanceof Error);
      return error;
    }
    assert.fail('expected the call to throw');
  }

  const cases = [
    [400, 'invalid_request_error', VinrInvalidRequestError],
    [404, 'invalid_request_error', VinrInvalidRequestError],
    [413, 'invalid_request_error', VinrInvalidRequestError],
    [422, 'invalid_request_error', VinrInvalidRequestError],
    [400, 'idempotency_error', VinrIdempotencyError],
    [409, 'idempotency_error', VinrIdempotencyError],
    [401, 'authentication_error', VinrAuthenticationError],
    [429, 'rate_limit_error', VinrRateLimitError],
    [503, 'api_error', VinrAPIError],
  ];
  for (const [status, type, cls] of cases) {
    test(`${status} ${type} → ${cls.name}`, async () => {
      const error = await failure(apiError(status, type, {
        code: 'some_code',
        param: 'timestamp',
        message: 'timestamp 1 is before the current period start',
        headers: { 'Retry-After': '0' },
      }));
      assert.ok(error instanceof cls, `${error.name}`);
      assert.equal(error.name, cls.name);
      assert.equal(error.type, type);
      assert.equal(error.code, 'some_code');
      assert.equal(error.param, 'timestamp');
      assert.equal(error.statusCode, status);
      assert.equal(error.message, 'timestamp 1 is before the current period start');
      assert.equal(error.headers['retry-after'], '0');
      assert.deepEqual(error.raw, {
        type,
        code: 'some_code',
        param: 'timestamp',
        message: 'timestamp 1 is before the current period start',
      });
    });
  }

  test('null code and param come through as null', async () => {
    const error = await failure(apiError(400, 'invalid_request_error'));
    assert.equal(error.code, null);
    assert.equal(error.param, null);
  });

  test('a non-JSON error body falls back on the status', async () => {
    const error = await failure({ status: 502, body: '<html>bad gateway</html>', headers: { 'Content-Type': 'text/html' } });
    assert.ok(error instanceof VinrAPIError);
    assert.equal(error.statusCode, 502);
    assert.equal(error.type, 'api_error');
    assert.match(error.message, /HTTP 502: <html>bad gateway/);
    const unauthorized = await failure({ status: 401, body: '' });
    assert.ok(unauthorized instanceof VinrAuthenticationError);
    assert.equal(unauthorized.type, 'authentication_error');
    assert.equal(unauthorized.message, 'HTTP 401');
  });

  test('an unknown error type falls back on the status', async () => {
    const error = await failure(apiError(404, 'brand_new_error'));
    assert.ok(error instanceof VinrInvalidRequestError);
    assert.equal(error.type, 'brand_new_error');
  });

  test('a 2xx body that is not JSON is an error', async () => {
    const error = await failure({ status: 200, body: 'OK' });
    assert.equal(error.statusCode, 200);
    assert.match(error.message, /Expected a JSON body/);
  });
});

test('no secret key: VinrAuthenticationError before any request is sent', async (t) => {
  const saved = process.env.VINR_SECRET_KEY;
  t.after(() => {
    if (saved !== undefined) process.env.VINR_SECRET_KEY = saved;
  });
  delete process.env.VINR_SECRET_KEY;
  let requests = 0;
  const server = await startServer(() => {
    requests += 1;
    return { status: 200, body: {} };
  });
  t.after(() => server.close());
  const vinr = new Vinr({ apiBase: server.url });
  await assert.rejects(vinr.products.list(), (error) => {
    assert.ok(error instanceof VinrAuthenticationError);
    assert.match(error.message, /VINR_SECRET_KEY/);
    return true;
  });
  assert.equal(requests, 0);
});
