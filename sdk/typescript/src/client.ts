/** The `Vinr` client: configuration plus one property per API resource. */

import { HttpClient, validCount, validTimeout } from './http.js';
import { Billing } from './resources/billing.js';
import { Customers } from './resources/customers.js';
import { Events } from './resources/events.js';
import { Invoices } from './resources/invoices.js';
import { Prices } from './resources/prices.js';
import { Products } from './resources/products.js';
import { Subscriptions } from './resources/subscriptions.js';
import { TestHelpers } from './resources/testHelpers.js';
import { UsageRecords } from './resources/usageRecords.js';
import { WebhookEndpoints } from './resources/webhookEndpoints.js';
import { Webhooks } from './webhooks.js';

export const DEFAULT_API_BASE = 'http://127.0.0.1:8080';
export const DEFAULT_MAX_RETRIES = 2;
export const DEFAULT_TIMEOUT_MS = 30_000;

export interface VinrOptions {
  /** `sk_test_…`/`sk_live_…`, or a restricted `rk_…` key for a producer that only reports usage; defaults to `process.env.VINR_SECRET_KEY`. */
  secretKey?: string | undefined;
  /** Defaults to `process.env.VINR_API_BASE`, else `http://127.0.0.1:8080`. */
  apiBase?: string | undefined;
  /** Retries after the first attempt for network errors, 409 (in flight), 429 and 5xx. */
  maxRetries?: number | undefined;
  /** Per-attempt timeout in milliseconds. */
  timeoutMs?: number | undefined;
}

function validApiBase(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TypeError(`apiBase must be an absolute http(s) URL, got ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`apiBase must be an absolute http(s) URL, got ${JSON.stringify(value)}`);
  }
  return value;
}

export class Vinr {
  readonly products: Products;
  readonly prices: Prices;
  readonly customers: Customers;
  readonly subscriptions: Subscriptions;
  readonly usageRecords: UsageRecords;
  readonly invoices: Invoices;
  readonly webhookEndpoints: WebhookEndpoints;
  readonly events: Events;
  readonly billing: Billing;
  readonly testHelpers: TestHelpers;
  readonly webhooks: Webhooks;
  readonly #http: HttpClient;

  /**
   * Throws TypeError for an invalid `apiBase`, `maxRetries` or `timeoutMs`. A missing
   * secret key is only an error when a request is made, so a client used just for
   * `webhooks.verify` needs none.
   */
  constructor(options: VinrOptions = {}) {
    const env = process.env;
    this.#http = new HttpClient({
      secretKey: options.secretKey ?? env['VINR_SECRET_KEY'],
      apiBase: validApiBase(options.apiBase ?? env['VINR_API_BASE'] ?? DEFAULT_API_BASE),
      maxRetries: validCount('maxRetries', options.maxRetries ?? DEFAULT_MAX_RETRIES),
      timeoutMs: validTimeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS),
    });
    this.products = new Products(this.#http);
    this.prices = new Prices(this.#http);
    this.customers = new Customers(this.#http);
    this.subscriptions = new Subscriptions(this.#http);
    this.usageRecords = new UsageRecords(this.#http);
    this.invoices = new Invoices(this.#http);
    this.webhookEndpoints = new WebhookEndpoints(this.#http);
    this.events = new Events(this.#http);
    this.billing = new Billing(this.#http);
    this.testHelpers = new TestHelpers(this.#http);
    this.webhooks = new Webhooks();
  }

  get apiBase(): string {
    return this.#http.apiBase;
  }

  get maxRetries(): number {
    return this.#http.maxRetries;
  }

  get timeoutMs(): number {
    return this.#http.timeoutMs;
  }
}
