/**
 * The SDK's error tree. Every error the SDK throws is a `VinrError`:
 *
 *     VinrError
 *     ├── VinrInvalidRequestError          400/404/413/422  invalid_request_error
 *     ├── VinrIdempotencyError             400/409          idempotency_error
 *     ├── VinrAuthenticationError          401              authentication_error
 *     ├── VinrRateLimitError               429              rate_limit_error
 *     ├── VinrAPIError                     5xx and anything unrecognised  api_error
 *     ├── VinrConnectionError              no response: network failure or timeout
 *     └── VinrSignatureVerificationError   webhook payload failed `webhooks.verify`
 *
 * API errors carry the fields of the response body `{"error": {type, code, message, param}}`
 * plus the HTTP `statusCode` and response `headers`.
 */

/** Context attached to a `VinrError`. */
export interface VinrErrorInit {
  type?: string | undefined;
  code?: string | null | undefined;
  param?: string | null | undefined;
  statusCode?: number | undefined;
  headers?: Record<string, string> | undefined;
  raw?: unknown;
  cause?: unknown;
}

export class VinrError extends Error {
  /** The API's error `type`, e.g. `invalid_request_error`, or an SDK-side type. */
  readonly type: string;
  readonly code: string | null;
  readonly param: string | null;
  /** HTTP status of the response; `undefined` when no response was received. */
  readonly statusCode: number | undefined;
  readonly headers: Record<string, string>;
  /** The parsed `error` object of the response body, when there was one. */
  readonly raw: unknown;

  constructor(message: string, init: VinrErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.type = init.type ?? 'api_error';
    this.code = init.code ?? null;
    this.param = init.param ?? null;
    this.statusCode = init.statusCode;
    this.headers = init.headers ?? {};
    this.raw = init.raw;
  }
}

export class VinrInvalidRequestError extends VinrError {}
export class VinrIdempotencyError extends VinrError {}
export class VinrAuthenticationError extends VinrError {}
export class VinrRateLimitError extends VinrError {}
export class VinrAPIError extends VinrError {}

/** The request never got a response: DNS/connection failure, reset, or timeout. */
export class VinrConnectionError extends VinrError {
  constructor(message: string, init: VinrErrorInit = {}) {
    super(message, { type: 'api_connection_error', ...init });
  }
}

/** A webhook payload whose `x-vinr-signature` header is missing, malformed, wrong or stale. */
export class VinrSignatureVerificationError extends VinrError {
  constructor(message: string, init: VinrErrorInit = {}) {
    super(message, { type: 'signature_verification_error', ...init });
  }
}

type ErrorClass = new (message: string, init: VinrErrorInit) => VinrError;

const BY_TYPE: Record<string, ErrorClass> = {
  invalid_request_error: VinrInvalidRequestError,
  idempotency_error: VinrIdempotencyError,
  authentication_error: VinrAuthenticationError,
  rate_limit_error: VinrRateLimitError,
  api_error: VinrAPIError,
};

function classForStatus(status: number): ErrorClass {
  if (status === 401) return VinrAuthenticationError;
  if (status === 429) return VinrRateLimitError;
  if (status >= 400 && status < 500 && status !== 409) return VinrInvalidRequestError;
  return VinrAPIError;
}

function stringOrNull(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

/**
 * Build the error for a non-2xx response. `body` is the parsed JSON body (or `undefined`
 * when it was not JSON) and `text` the raw body, used as the message of last resort.
 */
export function errorFromResponse(
  status: number,
  body: unknown,
  text: string,
  headers: Record<string, string>,
): VinrError {
  const error =
    typeof body === 'object' && body !== null && 'error' in body
      ? (body as { error: unknown }).error
      : undefined;
  const fields = typeof error === 'object' && error !== null ? (error as Record<string, unknown>) : {};
  const type = stringOrNull(fields['type']);
  const cls = (type !== null ? BY_TYPE[type] : undefined) ?? classForStatus(status);
  const message =
    stringOrNull(fields['message']) ??
    (text.trim() !== '' ? `HTTP ${status}: ${text.trim().slice(0, 500)}` : `HTTP ${status}`);
  return new cls(message, {
    type: type ?? defaultType(cls),
    code: stringOrNull(fields['code']),
    param: stringOrNull(fields['param']),
    statusCode: status,
    headers,
    raw: error,
  });
}

function defaultType(cls: ErrorClass): string {
  for (const [type, candidate] of Object.entries(BY_TYPE)) {
    if (candidate === cls) return type;
  }
  return 'api_error';
}
