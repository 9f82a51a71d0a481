/** Retry policy: which failures are retried and how long to wait before the next attempt. */

import { VinrConnectionError, type VinrError } from './errors.js';

export const INITIAL_RETRY_DELAY_MS = 500;
export const MAX_RETRY_DELAY_MS = 8_000;
/** Upper bound on a server-requested `Retry-After`, so a bad header cannot hang a caller. */
export const MAX_RETRY_AFTER_MS = 60_000;

/**
 * Network failures, timeouts, 429, 5xx and 409 are retried. A 409 `idempotency_error`
 * means the first request with this key is still in flight, so a later retry gets its
 * stored result; a 409 of another type (e.g. a duplicate caller-chosen id) is final.
 */
export function isRetryable(error: VinrError): boolean {
  if (error instanceof VinrConnectionError) return true;
  const status = error.statusCode;
  if (status === undefined) return false;
  if (status === 409) return error.type === 'idempotency_error' || error.raw === undefined;
  return status === 429 || status >= 500;
}

/** Milliseconds from a `Retry-After` header (delta-seconds or HTTP-date), if usable. */
export function parseRetryAfter(value: string | undefined, nowMs: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (trimmed === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(trimmed)) {
    return Math.min(Number(trimmed) * 1000, MAX_RETRY_AFTER_MS);
  }
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.min(Math.max(date - nowMs, 0), MAX_RETRY_AFTER_MS);
}

/**
 * Delay before retry number `retry` (0 for the first retry): the server's `Retry-After`
 * when given, else exponential backoff with jitter in [50 %, 100 %] of the step.
 */
export function retryDelayMs(retry: number, retryAfter: string | undefined, random: () => number = Math.random): number {
  const requested = parseRetryAfter(retryAfter);
  if (requested !== undefined) return requested;
  const step = Math.min(INITIAL_RETRY_DELAY_MS * 2 ** retry, MAX_RETRY_DELAY_MS);
  return Math.round(step * (0.5 + random() * 0.5));
}
