/**
 * Webhook signatures. Deliveries carry `x-vinr-signature: t=UNIX,v1=HEX[,v1=HEX…]`, where
 * HEX is the lowercase hex HMAC-SHA256 of `${t}.${rawBody}` keyed by the endpoint secret
 * (one `v1` per valid secret while a secret is being rolled).
 *
 * Verification mirrors the server's `vinr.signature.verify_header`: parts are split on `,`
 * and trimmed; unknown keys are ignored; the last `t` wins and must be an integer; at least
 * one `v1` must equal the expected HEX exactly (constant-time); then, when the tolerance is
 * > 0, `|now - t|` must not exceed it.
 *
 * A failure throws VinrSignatureVerificationError whose `code` says why: `no_secret`,
 * `missing_header`, `malformed_header`, `no_matching_signature`,
 * `timestamp_outside_tolerance` or (from `verify` only) `invalid_json`.
 */

import { createHmac, timingSafeEqual } from 'node:crypto';

import { VinrSignatureVerificationError } from './errors.js';
import type { VinrEvent } from './types.js';

export const SIGNATURE_HEADER = 'x-vinr-signature';
export const DEFAULT_TOLERANCE_SEC = 300;

export type WebhookPayload = string | Uint8Array;

export interface VerifyOptions {
  /** The verifier's clock in unix seconds; defaults to now. For tests and fixtures. */
  now?: number | undefined;
}

function payloadBytes(payload: WebhookPayload): Buffer {
  return typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload);
}

/** Lowercase hex HMAC-SHA256(secret, `${timestamp}.${payload}`). */
export function computeSignature(payload: WebhookPayload, secret: string, timestamp: number): string {
  return createHmac('sha256', secret)
    .update(`${timestamp}.`, 'utf8')
    .update(payloadBytes(payload))
    .digest('hex');
}

function parseHeader(header: string): { timestamp: number; signatures: string[] } {
  let timestamp: number | undefined;
  const signatures: string[] = [];
  for (const item of header.split(',')) {
    const part = item.trim();
    const eq = part.indexOf('=');
    const key = eq === -1 ? part : part.slice(0, eq);
    const value = eq === -1 ? '' : part.slice(eq + 1);
    if (key === 't') {
      if (!/^\s*[+-]?\d+\s*$/.test(value)) {
        throw new VinrSignatureVerificationError('Signature header has a non-numeric timestamp', {
          code: 'malformed_header',
        });
      }
      timestamp = Number(value);
    } else if (key === 'v1') {
      signatures.push(value);
    }
  }
  if (timestamp === undefined || signatures.length === 0) {
    throw new VinrSignatureVerificationError('Signature header must look like t=UNIX,v1=HEX', {
      code: 'malformed_header',
    });
  }
  return { timestamp, signatures };
}

function safeEqual(expected: string, candidate: string): boolean {
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(candidate, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Check `header` against `payload` and `secret`; return the signed timestamp.
 *
 * Throws VinrSignatureVerificationError: no secret, no header, no `t`/`v1`, no matching
 * signature, or a timestamp more than `toleranceSec` away from now.
 */
export function verifyHeader(
  payload: WebhookPayload,
  header: string | null | undefined,
  secret: string,
  toleranceSec: number = DEFAULT_TOLERANCE_SEC,
  options: VerifyOptions = {},
): number {
  if (typeof secret !== 'string' || secret === '') {
    throw new VinrSignatureVerificationError(
      'No webhook secret: pass one to webhooks.verify() or set VINR_WEBHOOK_SECRET.',
      { code: 'no_secret' },
    );
  }
  if (typeof header !== 'string' || header.trim() === '') {
    throw new VinrSignatureVerificationError(`Missing ${SIGNATURE_HEADER} header`, { code: 'missing_header' });
  }
  const { timestamp, signatures } = parseHeader(header);
  const expected = computeSignature(payload, secret, timestamp);
  // Compare against every candidate so timing does not reveal which one matched.
  let matched = false;
  for (const candidate of signatures) {
    if (safeEqual(expected, candidate)) matched = true;
  }
  if (!matched) {
    throw new VinrSignatureVerificationError('No signature matches the payload and secret', {
      code: 'no_matching_signature',
    });
  }
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (toleranceSec > 0 && Math.abs(now - timestamp) > toleranceSec) {
    throw new VinrSignatureVerificationError(
      `Signature timestamp ${timestamp} is outside the ${toleranceSec}s tolerance (now ${now})`,
      { code: 'timestamp_outside_tolerance' },
    );
  }
  return timestamp;
}

export interface TestHeaderParams {
  payload: WebhookPayload;
  secret: string;
  /** Unix seconds; defaults to now. */
  timestamp?: number | undefined;
  /** More secrets to sign with, each adding a `v1=` entry, as during a secret roll. */
  extraSecrets?: string[] | undefined;
}

/** A valid `x-vinr-signature` value, for testing your webhook handler. */
export function generateTestHeader(params: TestHeaderParams): string {
  const timestamp = params.timestamp ?? Math.floor(Date.now() / 1000);
  const secrets = [params.secret, ...(params.extraSecrets ?? [])];
  const parts = secrets.map((secret) => `v1=${computeSignature(params.payload, secret, timestamp)}`);
  return [`t=${timestamp}`, ...parts].join(',');
}

/** `vinr.webhooks`: verify deliveries and get their event. */
export class Webhooks {
  /**
   * Verify a delivery and return its parsed event. `payload` must be the raw request body,
   * exactly as received. `secret` defaults to `process.env.VINR_WEBHOOK_SECRET`.
   *
   * Throws VinrSignatureVerificationError when the signature does not verify or the body
   * is not JSON.
   */
  verify(
    payload: WebhookPayload,
    signatureHeader: string | null | undefined,
    secret?: string | undefined,
    toleranceSec: number = DEFAULT_TOLERANCE_SEC,
    options: VerifyOptions = {},
  ): VinrEvent {
    const key = secret ?? process.env['VINR_WEBHOOK_SECRET'] ?? '';
    verifyHeader(payload, signatureHeader, key, toleranceSec, options);
    const text = typeof payload === 'string' ? payload : payloadBytes(payload).toString('utf8');
    try {
      return JSON.parse(text) as VinrEvent;
    } catch (cause: unknown) {
      throw new VinrSignatureVerificationError('Webhook payload is signed but is not valid JSON', {
        code: 'invalid_json',
        cause,
      });
    }
  }

  /** See the module-level `generateTestHeader`. */
  generateTestHeader(params: TestHeaderParams): string {
    return generateTestHeader(params);
  }
}
