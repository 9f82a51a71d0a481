import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import {
  DEFAULT_TOLERANCE_SEC,
  Vinr,
  VinrError,
  VinrSignatureVerificationError,
  generateTestHeader,
  verifyHeader,
} from '@vinr/sdk';

// The cases shared with the Python SDK and the server (made by sdk/fixtures/make_signatures.py).
const FIXTURES = JSON.parse(readFileSync(new URL('../../../fixtures/signatures.json', import.meta.url), 'utf8'));
const REASONS = ['valid', 'missing_header', 'malformed_header', 'no_matching_signature', 'timestamp_outside_tolerance'];
const SECRET = 'whsec_unit_test_secret';
const EVENT = { id: 'evt_1', object: 'event', type: 'invoice.paid', created: 1, livemode: false, data: { id: 'inv_1', subscription: 'sub_1', periodEnd: 2 } };
const BODY = JSON.stringify(EVENT);
const vinr = new Vinr({ secretKey: 'sk_test_unused', apiBase: 'http://127.0.0.1:9' });

function now() {
  return Math.floor(Date.now() / 1000);
}

function rejects(fn, code) {
  assert.throws(fn, (error) => {
    assert.ok(error instanceof VinrSignatureVerificationError, `expected VinrSignatureVerificationError, got ${error}`);
    assert.ok(error instanceof VinrError);
    assert.equal(error.type, 'signature_verification_error');
    assert.equal(error.code, code);
    return true;
  });
}

describe('sdk/fixtures/signatures.json (shared with the Python SDK and the server)', () => {
  test('the fixture file has valid and invalid FIXTURES of every reason', () => {
    assert.ok(FIXTURES.length >= 20);
    assert.deepEqual(new Set(FIXTURES.map((c) => c.reason)), new Set(REASONS));
    assert.equal(new Set(FIXTURES.map((c) => c.name)).size, FIXTURES.length, 'case names are unique');
    for (const c of FIXTURES) assert.equal(c.valid, c.reason === 'valid', c.name);
  });

  for (const c of FIXTURES) {
    test(`${c.name}: ${c.valid ? 'verifies' : `rejected (${c.reason})`}`, () => {
      const check = () => vinr.webhooks.verify(c.payload, c.header, c.secret, c.toleranceSec, { now: c.now });
      if (c.valid) {
        assert.deepEqual(check(), JSON.parse(c.payload));
        assert.equal(verifyHeader(Buffer.from(c.payload, 'utf8'), c.header, c.secret, c.toleranceSec, { now: c.now }), c.timestamp);
      } else {
        rejects(check, c.reason);
      }
    });
  }
});

describe('signatures.json fixture headers', () => {
  test('generateTestHeader reproduces the fixture headers', () => {
    const byName = (name) => FIXTURES.find((c) => c.name === name);
    for (const c of [byName('valid'), byName('valid_unicode_payload')]) {
      assert.equal(generateTestHeader({ payload: c.payload, secret: c.secret, timestamp: c.timestamp }), c.header);
    }
    const roll = byName('valid_first_of_two_v1_secret_roll');
    const old = 'whsec_test_old_0a1b2c3d4e5f6a7b8c9d0e1f';
    const header = generateTestHeader({ payload: roll.payload, secret: roll.secret, timestamp: roll.timestamp, extraSecrets: [old] });
    assert.equal(header, roll.header);
  });
});

describe('webhooks.verify', () => {
  test('a good signature returns the parsed event', () => {
    const header = generateTestHeader({ payload: BODY, secret: SECRET });
    assert.deepEqual(vinr.webhooks.verify(BODY, header, SECRET), EVENT);
  });

  test('accepts the raw body as a Buffer', () => {
    const header = generateTestHeader({ payload: BODY, secret: SECRET });
    assert.deepEqual(vinr.webhooks.verify(Buffer.from(BODY), header, SECRET), EVENT);
  });

  test('a tampered body is rejected', () => {
    const header = generateTestHeader({ payload: BODY, secret: SECRET });
    rejects(() => vinr.webhooks.verify(BODY.replace('sub_1', 'sub_2'), header, SECRET), 'no_matching_signature');
  });

  test('a wrong secret is rejected', () => {
    const header = generateTestHeader({ payload: BODY, secret: 'whsec_other' });
    rejects(() => vinr.webhooks.verify(BODY, header, SECRET), 'no_matching_signature');
  });

  test('a stale timestamp is rejected, a recent one accepted', () => {
    const stale = generateTestHeader({ payload: BODY, secret: SECRET, timestamp: now() - DEFAULT_TOLERANCE_SEC - 60 });
    rejects(() => vinr.webhooks.verify(BODY, stale, SECRET), 'timestamp_outside_tolerance');
    const recent = generateTestHeader({ payload: BODY, secret: SECRET, timestamp: now() - 60 });
    assert.deepEqual(vinr.webhooks.verify(BODY, recent, SECRET), EVENT);
    assert.deepEqual(vinr.webhooks.verify(BODY, stale, SECRET, 3600), EVENT, 'a wider tolerance accepts it');
  });

  test('a missing header is rejected', () => {
    rejects(() => vinr.webhooks.verify(BODY, null, SECRET), 'missing_header');
    rejects(() => vinr.webhooks.verify(BODY, undefined, SECRET), 'missing_header');
    rejects(() => vinr.webhooks.verify(BODY, '', SECRET), 'missing_header');
  });

  test('a header with several v1 entries verifies when any one matches', () => {
    const ts = now();
    const good = generateTestHeader({ payload: BODY, secret: SECRET, timestamp: ts }).split(',')[1];
    const other = generateTestHeader({ payload: BODY, secret: 'whsec_old', timestamp: ts }).split(',')[1];
    assert.deepEqual(vinr.webhooks.verify(BODY, `t=${ts},${other},${good}`, SECRET), EVENT);
    assert.deepEqual(vinr.webhooks.verify(BODY, `t=${ts},${good},${other}`, SECRET), EVENT);
    rejects(() => vinr.webhooks.verify(BODY, `t=${ts},${other},${other}`, SECRET), 'no_matching_signature');
  });

  test('the secret defaults to VINR_WEBHOOK_SECRET, as in the guide (two arguments)', (t) => {
    const saved = process.env.VINR_WEBHOOK_SECRET;
    t.after(() => {
      if (saved === undefined) delete process.env.VINR_WEBHOOK_SECRET;
      else process.env.VINR_WEBHOOK_SECRET = saved;
    });
    process.env.VINR_WEBHOOK_SECRET = SECRET;
    const header = generateTestHeader({ payload: BODY, secret: SECRET });
    assert.deepEqual(vinr.webhooks.verify(BODY, header), EVENT);
    process.env.VINR_WEBHOOK_SECRET = 'whsec_rotated';
    rejects(() => vinr.webhooks.verify(BODY, header), 'no_matching_signature');
    delete process.env.VINR_WEBHOOK_SECRET;
    rejects(() => vinr.webhooks.verify(BODY, header), 'no_secret');
  });

  test('a signed body that is not JSON is rejected', () => {
    const header = generateTestHeader({ payload: 'not json', secret: SECRET });
    rejects(() => vinr.webhooks.verify('not json', header, SECRET), 'invalid_json');
  });

  test('works through a WHATWG Request, as in the guide handler', async () => {
    const header = generateTestHeader({ payload: BODY, secret: SECRET });
    const req = new Request('http://127.0.0.1/', { method: 'POST', body: BODY, headers: { 'x-vinr-signature': header } });
    const event = vinr.webhooks.verify(await req.text(), req.headers.get('x-vinr-signature'), SECRET);
    assert.equal(event.type, 'invoice.paid');
    assert.equal(event.data.subscription, 'sub_1');
  });
});
