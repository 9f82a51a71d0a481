/**
 * `billing.*`: meters (what is counted from meter events, and how), meter events and their
 * adjustments, and usage alerts.
 *
 * A meter event is deduplicated by its `identifier`: pass one derived from your own event
 * id so that a resend after a crash is never counted twice. Without one the API makes one
 * (`mevt_…`); the SDK makes none, as it makes none for usage records — its own retries of a
 * call are covered by that call's `Idempotency-Key`.
 */

import type { HttpClient } from '../http.js';
import type {
  BillingAlert,
  BillingAlertCreateParams,
  BillingMeter,
  BillingMeterCreateParams,
  BillingMeterEvent,
  BillingMeterEventAdjustment,
  BillingMeterEventAdjustmentCreateParams,
  BillingMeterEventBatch,
  BillingMeterEventBatchParams,
  BillingMeterEventCreateParams,
  BillingMeterEventListParams,
  BillingMeterEventSummary,
  BillingMeterEventSummaryListParams,
  BillingMeterListedEvent,
  BillingMeterListParams,
  BillingMeterUpdateParams,
  List,
  ListParams,
  RequestOptions,
} from '../types.js';
import { Resource, pathId } from './resource.js';

const METERS = '/v1/billing/meters';
const ALERTS = '/v1/billing/alerts';

export class BillingMeters extends Resource {
  async create(params: BillingMeterCreateParams, options?: RequestOptions): Promise<BillingMeter> {
    return this.http.request({ method: 'POST', path: METERS, body: params, options });
  }

  async retrieve(id: string, options?: RequestOptions): Promise<BillingMeter> {
    return this.http.request({ method: 'GET', path: `${METERS}/${pathId(id)}`, options });
  }

  async list(params?: BillingMeterListParams, options?: RequestOptions): Promise<List<BillingMeter>> {
    return this.http.request({ method: 'GET', path: METERS, query: params, options });
  }

  async update(id: string, params: BillingMeterUpdateParams, options?: RequestOptions): Promise<BillingMeter> {
    return this.http.request({ method: 'POST', path: `${METERS}/${pathId(id)}`, body: params, options });
  }

  /** Events for its name are refused from now on; what it counted stays. */
  async deactivate(id: string, options?: RequestOptions): Promise<BillingMeter> {
    return this.http.request({ method: 'POST', path: `${METERS}/${pathId(id)}/deactivate`, body: {}, options });
  }

  /** Refused (400) while another active meter has its event name. */
  async reactivate(id: string, options?: RequestOptions): Promise<BillingMeter> {
    return this.http.request({ method: 'POST', path: `${METERS}/${pathId(id)}/reactivate`, body: {}, options });
  }

  /**
   * A customer's usage over `[startTime, endTime)` (minute boundaries): one summary, or one
   * per UTC hour or day with `valueGroupingWindow`, oldest first, empty windows included.
   */
  async listEventSummaries(
    meterId: string,
    params: BillingMeterEventSummaryListParams,
    options?: RequestOptions,
  ): Promise<List<BillingMeterEventSummary>> {
    return this.http.request({ method: 'GET', path: `${METERS}/${pathId(meterId)}/event_summaries`, query: params, options });
  }

  /** A customer's events, newest timestamp first, cancelled and rejected ones included (`status`). */
  async listEvents(
    meterId: string,
    params: BillingMeterEventListParams,
    options?: RequestOptions,
  ): Promise<List<BillingMeterListedEvent>> {
    return this.http.request({ method: 'GET', path: `${METERS}/${pathId(meterId)}/events`, query: params, options });
  }
}

export class BillingMeterEvents extends Resource {
  /** Send one event; the active meter with its `eventName` counts it. */
  async create(params: BillingMeterEventCreateParams, options?: RequestOptions): Promise<BillingMeterEvent> {
    return this.http.request({ method: 'POST', path: '/v1/billing/meter_events', body: params, options });
  }

  /** Send 1–1000 events in one request, accepted or refused as a whole. */
  async createBatch(params: BillingMeterEventBatchParams, options?: RequestOptions): Promise<BillingMeterEventBatch> {
    return this.http.request({ method: 'POST', path: '/v1/billing/meter_events/batch', body: params, options });
  }
}

export class BillingMeterEventAdjustments extends Resource {
  /** Cancel an event by identifier; `status: 'pending'` when it has not arrived yet (it never will count). */
  async create(
    params: BillingMeterEventAdjustmentCreateParams,
    options?: RequestOptions,
  ): Promise<BillingMeterEventAdjustment> {
    return this.http.request({ method: 'POST', path: '/v1/billing/meter_event_adjustments', body: params, options });
  }
}

export class BillingAlerts extends Resource {
  /** `billing.alert.triggered` is sent once per customer whose period usage reaches `gte`. */
  async create(params: BillingAlertCreateParams, options?: RequestOptions): Promise<BillingAlert> {
    return this.http.request({ method: 'POST', path: ALERTS, body: params, options });
  }

  async retrieve(id: string, options?: RequestOptions): Promise<BillingAlert> {
    return this.http.request({ method: 'GET', path: `${ALERTS}/${pathId(id)}`, options });
  }

  async list(params?: ListParams, options?: RequestOptions): Promise<List<BillingAlert>> {
    return this.http.request({ method: 'GET', path: ALERTS, query: params, options });
  }

  async activate(id: string, options?: RequestOptions): Promise<BillingAlert> {
    return this.http.request({ method: 'POST', path: `${ALERTS}/${pathId(id)}/activate`, body: {}, options });
  }

  async deactivate(id: string, options?: RequestOptions): Promise<BillingAlert> {
    return this.http.request({ method: 'POST', path: `${ALERTS}/${pathId(id)}/deactivate`, body: {}, options });
  }

  /** For good: an archived alert is never evaluated again. */
  async archive(id: string, options?: RequestOptions): Promise<BillingAlert> {
    return this.http.request({ method: 'POST', path: `${ALERTS}/${pathId(id)}/archive`, body: {}, options });
  }
}

export class Billing {
  readonly meters: BillingMeters;
  readonly meterEvents: BillingMeterEvents;
  readonly meterEventAdjustments: BillingMeterEventAdjustments;
  readonly alerts: BillingAlerts;

  constructor(http: HttpClient) {
    this.meters = new BillingMeters(http);
    this.meterEvents = new BillingMeterEvents(http);
    this.meterEventAdjustments = new BillingMeterEventAdjustments(http);
    this.alerts = new BillingAlerts(http);
  }
}
