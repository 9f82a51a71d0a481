/**
 * The HTTP transport: one logical API call = one `request()`, made of up to
 * `1 + maxRetries` attempts that share one `Idempotency-Key` (POST only).
 */

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  VinrAuthenticationError,
  VinrConnectionError,
  VinrError,
  errorFromResponse,
} from './errors.js';
import { isRetryable, retryDelayMs } from './retry.js';
import type { RequestOptions } from './types.js';
import { VERSION } from './version.js';

export type HttpMethod = 'GET' | 'POST' | 'DELETE';
export type QueryValue = string | number | boolean | null | undefined;

export interface TransportConfig {
  secretKey: string | undefined;
  apiBase: string;
  maxRetries: number;
  timeoutMs: number;
}

export interface RequestSpec {
  method: HttpMethod;
  path: string;
  query?: object | undefined;
  body?: object | undefined;
  options?: RequestOptions | undefined;
}

interface Attempt {
  response?: unknown;
  error?: VinrError;
}

export class HttpClient {
  readonly apiBase: string;
  readonly maxRetries: number;
  readonly timeoutMs: number;
  // A private field keeps the key out of util.inspect / console.log output.
  readonly #secretKey: string | undefined;

  constructor(config: TransportConfig) {
    this.#secretKey = config.secretKey;
    this.apiBase = config.apiBase.replace(/\/+$/, '');
    this.maxRetries = config.maxRetries;
    this.timeoutMs = config.timeoutMs;
  }

  /**
   * Send `spec`, retrying network errors, timeouts, 409 (in flight), 429 and 5xx.
   *
   * Throws:
   *   VinrAuthenticationError: no secret key configured (nothing is sent).
   *   VinrError subclass: the API's error, or VinrConnectionError, after the last attempt.
   */
  async request<T>(spec: RequestSpec): Promise<T> {
    if (this.#secretKey === undefined || this.#secretKey === '') {
      throw new VinrAuthenticationError(
        'No secret key: pass `secretKey` to `new Vinr()` or set VINR_SECRET_KEY.',
        { type: 'authentication_error' },
      );
    }
    const options = spec.options ?? {};
    const maxRetries = validCount('maxRetries', options.maxRetries ?? this.maxRetries);
    const timeoutMs = validTimeout(options.timeoutMs ?? this.timeoutMs);
    const url = this.#url(spec.path, spec.query);
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.#secretKey}`,
      Accept: 'application/json',
      'User-Agent': `vinr-typescript/${VERSION} node/${process.versions.node}`,
    };
    if (spec.method === 'POST') {
      // Generated once per logical call, so every retry is deduplicated by the server.
      headers['Idempotency-Key'] = options.idempotencyKey ?? randomUUID();
    }
    let payload: string | undefined;
    if (spec.body !== undefined) {
      payload = JSON.stringify(spec.body);
      headers['Content-Type'] = 'application/json';
    }

    for (let retry = 0; ; retry += 1) {
      const attempt = await this.#attempt(spec.method, url, headers, payload, timeoutMs);
      if (attempt.error === undefined) return attempt.response as T;
      if (retry >= maxRetries || !isRetryable(attempt.error)) throw attempt.error;
      await sleep(retryDelayMs(retry, attempt.error.headers['retry-after']));
    }
  }

  async #attempt(
    method: HttpMethod,
    url: string,
    headers: Record<string, string>,
    payload: string | undefined,
    timeoutMs: number,
  ): Promise<Attempt> {
    let response: Response;
    let text: string;
    try {
      response = await fetch(url, {
        method,
        headers,
        ...(payload === undefined ? {} : { body: payload }),
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await response.text();
    } catch (cause: unknown) {
      const timedOut = cause instanceof Error && cause.name === 'TimeoutError';
      const message = timedOut
        ? `Request to ${method} ${url} timed out after ${timeoutMs} ms`
        : `Could not reach ${method} ${url}: ${describe(cause)}`;
      return { error: new VinrConnectionError(message, { cause }) };
    }
    const responseHeaders = Object.fromEntries(response.headers.entries());
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (!response.ok) {
      return { error: errorFromResponse(response.status, body, text, responseHeaders) };
    }
    if (body === undefined) {
      return {
        error: new VinrError(`Expected a JSON body from ${method} ${url}, got: ${text.slice(0, 200)}`, {
          statusCode: response.status,
          headers: responseHeaders,
        }),
      };
    }
    return { response: body };
  }

  #url(path: string, query: object | undefined): string {
    const url = `${this.apiBase}${path}`;
    if (query === undefined) return url;
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(query) as Array<[string, QueryValue]>) {
      if (value !== undefined && value !== null) search.append(key, String(value));
    }
    const encoded = search.toString();
    return encoded === '' ? url : `${url}?${encoded}`;
  }
}

function describe(cause: unknown): string {
  if (cause instanceof Error) {
    const inner = cause.cause instanceof Error ? ` (${cause.cause.message})` : '';
    return `${cause.message}${inner}`;
  }
  return String(cause);
}

export function validCount(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) {
    throw new TypeError(`${name} must be an integer >= 0, got ${String(value)}`);
  }
  return value;
}

export function validTimeout(value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new TypeError(`timeoutMs must be a number > 0, got ${String(value)}`);
  }
  return value;
}
