import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { test } from 'node:test';

import { DEFAULT_API_BASE, VERSION, Vinr } from '@vinr/sdk';

import { startServer } from './helpers.mjs';

function withEnv(t, values) {
  const saved = {};
  for (const [name, value] of Object.entries(values)) {
    saved[name] = process.env[name];
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  t.after(() => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });
}

test('defaults: 127.0.0.1:8080, 2 retries, 30 s timeout', (t) => {
  withEnv(t, { VINR_API_BASE: undefined, VINR_SECRET_KEY: undefined });
  const vinr = new Vinr();
  assert.equal(DEFAULT_API_BASE, 'http://127.0.0.1:8080');
  assert.equal(vinr.apiBase, 'http://127.0.0.1:8080');
  assert.equal(vinr.maxRetries, 2);
  assert.equal(vinr.timeoutMs, 30_000);
});

test('VINR_API_BASE and VINR_SECRET_KEY are read from the environment', async (t) => {
  const server = await startServer(() => ({ status: 200, body: { object: 'list', data: [], hasMore: false, url: '/v1/products' } }));
  t.after(() => server.close());
  withEnv(t, { VINR_API_BASE: server.url, VINR_SECRET_KEY: 'sk_test_from_env' });
  const vinr = new Vinr();
  assert.equal(vinr.apiBase, server.url);
  await vinr.products.list();
  assert.equal(server.requests[0].headers.authorization, 'Bearer sk_test_from_env');
  assert.match(server.requests[0].headers['user-agent'], /^vinr-typescript\/\d+\.\d+\.\d+ node\//);
});

test('explicit options win over the environment', (t) => {
  withEnv(t, { VINR_API_BASE: 'http://127.0.0.1:1111' });
  const vinr = new Vinr({ apiBase: 'https://billing.example.com/', maxRetries: 5, timeoutMs: 1000 });
  assert.equal(vinr.apiBase, 'https://billing.example.com');
  assert.equal(vinr.maxRetries, 5);
  assert.equal(vinr.timeoutMs, 1000);
});

test('invalid options are refused at construction, naming the value', () => {
  assert.throws(() => new Vinr({ apiBase: 'localhost:8080' }), /apiBase must be an absolute http\(s\) URL, got "localhost:8080"/);
  assert.throws(() => new Vinr({ apiBase: 'not a url' }), TypeError);
  assert.throws(() => new Vinr({ maxRetries: -1 }), /maxRetries must be an integer >= 0, got -1/);
  assert.throws(() => new Vinr({ maxRetries: 1.5 }), TypeError);
  assert.throws(() => new Vinr({ timeoutMs: 0 }), /timeoutMs must be a number > 0, got 0/);
});

test('the secret key never shows in inspect or JSON output', () => {
  const vinr = new Vinr({ secretKey: 'sk_test_supersecret' });
  assert.doesNotMatch(inspect(vinr, { depth: 10, showHidden: true }), /supersecret/);
  assert.doesNotMatch(JSON.stringify(vinr), /supersecret/);
});

test('VERSION matches package.json', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  assert.equal(VERSION, pkg.version);
});
