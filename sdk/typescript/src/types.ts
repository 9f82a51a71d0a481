/**
 * API object and parameter shapes, as documented in docs/api.md. Keys are camelCase on the
 * wire and here; the SDK passes request bodies through unchanged.
 */

export type Metadata = Record<string, string>;

/** Fields every API object carries. */
export interface ApiObject {
  id: string;
  object: string;
  /** Unix seconds. */
  created: number;
  livemode: boolean;
}

export interface List<T> {
  object: 'list';
  data: T[];
  hasMore: boolean;
  url: string;
}

export interface ListParams {
  limit?: number;
  startingAfter?: string;
}

/** Per-call options, the last argument of every resource method. */
export interface RequestOptions {
  /** Sent as `Idempotency-Key` on POST; a random UUID is used when absent. */
  idempotencyKey?: string | undefined;
  /** Overrides the client's `maxRetries` for this call. */
  maxRetries?: number | undefined;
  /** Overrides the client's `timeoutMs` for this call (per attempt). */
  timeoutMs?: number | undefined;
}

// ---- products ------------------------------------------------------------------------

export interface Product extends ApiObject {
  object: 'product';
  name: string;
  description: string | null;
  active: boolean;
  metadata: Metadata;
}

export interface ProductCreateParams {
  name: string;
  description?: string;
  metadata?: Metadata;
}

// ---- prices --------------------------------------------------------------------------

export type Interval = 'day' | 'week' | 'month' | 'year';
export type UsageType = 'licensed' | 'metered';
export type AggregateUsage = 'sum' | 'last_during_period' | 'last_ever' | 'max';

export interface Recurring {
  interval: Interval;
  intervalCount: number;
  usageType: UsageType;
  aggregateUsage: AggregateUsage | null;
  /** The `mtr_…` id a metered price bills, or null. */
  meter: string | null;
}

export interface Tier {
  upTo: number | 'inf' | null;
  unitAmount?: number | null;
  unitAmountDecimal?: string | null;
  flatAmount?: number | null;
  flatAmountDecimal?: string | null;
}

export interface TransformQuantity {
  divideBy: number;
  round: 'up' | 'down';
}

export interface Price extends ApiObject {
  object: 'price';
  product: string;
  currency: string;
  type: 'recurring';
  active: boolean;
  billingScheme: 'per_unit' | 'tiered';
  unitAmount: number | null;
  unitAmountDecimal: string | null;
  recurring: Recurring;
  tiers: Tier[] | null;
  tiersMode: 'graduated' | 'volume' | null;
  transformQuantity: TransformQuantity | null;
}

export interface PriceCreateParams {
  product: string;
  currency: string;
  /** `usage` is accepted as a metered per-unit price and stored as `per_unit`. */
  billingScheme: 'per_unit' | 'tiered' | 'usage';
  unitAmount?: number;
  unitAmountDecimal?: string;
  recurring: {
    interval: Interval;
    intervalCount?: number;
    usageType?: UsageType;
    aggregateUsage?: AggregateUsage;
    /** A `mtr_…` id: the price bills that meter (`usageType: 'metered'`, no `aggregateUsage`). */
    meter?: string;
  };
  tiers?: Array<{
    upTo: number | 'inf';
    unitAmount?: number;
    unitAmountDecimal?: string;
    flatAmount?: number;
    flatAmountDecimal?: string;
  }>;
  tiersMode?: 'graduated' | 'volume';
  transformQuantity?: TransformQuantity;
  metadata?: Metadata;
}

export interface PriceListParams extends ListParams {
  product?: string;
  active?: boolean;
}

// ---- customers -----------------------------------------------------------------------

export interface Customer extends ApiObject {
  object: 'customer';
  name: string | null;
  email: string | null;
  defaultPaymentMethod: string | null;
  metadata: Metadata;
}

export interface CustomerCreateParams {
  /** A caller-chosen `cust_…` id, unique within the account and mode. */
  id?: string;
  name?: string;
  email?: string;
  /** A sandbox payment method id (`pm_card_visa`) or test card number. */
  paymentMethod?: string;
  metadata?: Metadata;
}

export type CustomerUpdateParams = Omit<CustomerCreateParams, 'id'>;

export interface CustomerListParams extends ListParams {
  email?: string;
}

// ---- subscriptions -------------------------------------------------------------------

export type SubscriptionStatus =
  | 'active'
  | 'past_due'
  | 'unpaid'
  | 'canceled'
  | 'incomplete'
  | 'incomplete_expired'
  | 'trialing';

export interface SubscriptionItem extends ApiObject {
  object: 'subscription_item';
  subscription: string;
  quantity: number | null;
  price: Price;
}

export interface Subscription extends ApiObject {
  object: 'subscription';
  customer: string;
  status: SubscriptionStatus;
  testClock: string | null;
  currentPeriodStart: number;
  currentPeriodEnd: number;
  cancelAtPeriodEnd: boolean;
  canceledAt: number | null;
  items: List<SubscriptionItem>;
  metadata?: Metadata;
}

export interface SubscriptionItemParams {
  price: string;
  quantity?: number;
  /** A caller-chosen `si_…` id. */
  id?: string;
}

export interface SubscriptionCreateParams {
  customer: string;
  items: SubscriptionItemParams[];
  testClock?: string;
  cancelAtPeriodEnd?: boolean;
  metadata?: Metadata;
}

export interface SubscriptionUpdateParams {
  items?: SubscriptionItemParams[];
  cancelAtPeriodEnd?: boolean;
  metadata?: Metadata;
}

export interface SubscriptionListParams extends ListParams {
  customer?: string;
  status?: SubscriptionStatus | 'all';
  testClock?: string;
}

// ---- usage records -------------------------------------------------------------------

export type UsageAction = 'increment' | 'set';

export interface UsageRecord extends ApiObject {
  object: 'usage_record';
  subscriptionItem: string;
  quantity: number;
  timestamp: number;
  action: UsageAction;
}

export interface UsageRecordCreateParams {
  subscriptionItem: string;
  quantity: number;
  /** Unix seconds; defaults to now on the server. */
  timestamp?: number;
  action?: UsageAction;
}

export interface UsageRecordBatchParams {
  subscriptionItem: string;
  records: Array<{ quantity: number; timestamp?: number; action?: UsageAction }>;
}

export interface UsageRecordBatch extends ApiObject {
  object: 'usage_record_batch';
  subscriptionItem: string;
  count: number;
  data: UsageRecord[];
}

export interface Period {
  start: number;
  end: number;
}

export interface UsageRecordSummary {
  id: string;
  object: 'usage_record_summary';
  livemode: boolean;
  subscriptionItem: string;
  totalUsage: number;
  period: Period;
  invoice: string | null;
}

export interface UsageRecordSummaryParams extends ListParams {
  subscriptionItem: string;
}

// ---- invoices ------------------------------------------------------------------------

export type InvoiceStatus = 'draft' | 'open' | 'paid' | 'uncollectible' | 'void';

export interface InvoiceLineItem {
  id: string;
  object: 'line_item';
  type: string;
  subscriptionItem: string | null;
  price: Price | null;
  /** A JSON number; a meter's quantity may be decimal, exact in `quantityDecimal`. */
  quantity: number | null;
  quantityDecimal: string | null;
  amount: number;
  unitAmountDecimal: string | null;
  currency: string;
  description: string | null;
  period: Period;
}

export interface Invoice extends ApiObject {
  object: 'invoice';
  customer: string;
  subscription: string;
  status: InvoiceStatus;
  currency: string;
  billingReason: string | null;
  periodStart: number;
  periodEnd: number;
  subtotal: number;
  total: number;
  amountDue: number;
  amountPaid: number;
  attemptCount: number;
  nextPaymentAttempt: number | null;
  lines: List<InvoiceLineItem>;
}

export interface InvoiceListParams extends ListParams {
  subscription?: string;
  customer?: string;
  status?: InvoiceStatus;
}

export interface InvoicePayParams {
  paymentMethod?: string;
}

export interface InvoiceUpcomingParams {
  subscription: string;
}

/** `invoices.upcoming`: an invoice as the period's close would build it now, not stored. */
export type UpcomingInvoice = Omit<Invoice, 'id' | 'status'> & { id: null; status: 'draft' };

// ---- billing meters ------------------------------------------------------------------

export type MeterFormula = 'sum' | 'count' | 'last' | 'max';

export interface BillingMeter extends ApiObject {
  object: 'billing.meter';
  /** Unix seconds. */
  updated: number;
  displayName: string;
  eventName: string;
  status: 'active' | 'inactive';
  defaultAggregation: { formula: MeterFormula };
  /** Where a meter event's payload holds the customer id (`customer` by default). */
  customerMapping: { type: 'by_id'; eventPayloadKey: string };
  /** Where a meter event's payload holds the value (`value` by default). */
  valueSettings: { eventPayloadKey: string };
  statusTransitions: { deactivatedAt: number | null };
}

export interface BillingMeterCreateParams {
  displayName: string;
  eventName: string;
  defaultAggregation: { formula: MeterFormula };
  customerMapping?: { type: 'by_id'; eventPayloadKey: string };
  valueSettings?: { eventPayloadKey: string };
}

export interface BillingMeterUpdateParams {
  displayName: string;
}

export interface BillingMeterListParams extends ListParams {
  status?: 'active' | 'inactive';
}

export interface BillingMeterEventSummaryListParams {
  customer: string;
  /** Unix seconds on a minute boundary, inclusive. */
  startTime: number;
  /** Unix seconds on a minute boundary, exclusive. */
  endTime: number;
  valueGroupingWindow?: 'hour' | 'day';
}

export interface BillingMeterEventListParams extends ListParams {
  customer: string;
}

/**
 * The customer id under the meter's customer key, the value under its value key: an
 * integer, or a decimal string (at most 12 places) for an exact decimal.
 */
export type MeterEventPayload = Record<string, string | number>;

export interface BillingMeterEventCreateParams {
  eventName: string;
  payload: MeterEventPayload;
  /** 1–100 characters, the unit of deduplication; the API makes one (`mevt_…`) when absent. */
  identifier?: string;
  /** Unix seconds; the API's now when absent. */
  timestamp?: number;
}

export interface BillingMeterEventBatchParams {
  events: BillingMeterEventCreateParams[];
}

/** A meter event as accepted; its `identifier` names it (it has no `id`). */
export interface BillingMeterEvent {
  object: 'billing.meter_event';
  eventName: string;
  identifier: string;
  payload: MeterEventPayload;
  timestamp: number;
  created: number;
  livemode: boolean;
}

/** `meters.listEvents`: an event with what became of it. */
export interface BillingMeterListedEvent extends BillingMeterEvent {
  status: 'counted' | 'cancelled' | 'rejected';
}

export interface BillingMeterEventBatch {
  object: 'billing.meter_event_batch';
  created: number;
  livemode: boolean;
  count: number;
  /** Events whose identifier was already accepted with the same content (not resent). */
  duplicates: number;
  data: BillingMeterEvent[];
}

export interface BillingMeterEventSummary {
  id: string;
  object: 'billing.meter_event_summary';
  meter: string;
  customer: string;
  livemode: boolean;
  startTime: number;
  endTime: number;
  /** A JSON number, for display; `aggregatedValueDecimal` is exact. */
  aggregatedValue: number;
  aggregatedValueDecimal: string;
}

export interface BillingMeterEventAdjustment extends ApiObject {
  object: 'billing.meter_event_adjustment';
  eventName: string;
  type: 'cancel';
  cancel: { identifier: string };
  /** `pending`: the event has not arrived yet; it will never count. */
  status: 'complete' | 'pending';
}

export interface BillingMeterEventAdjustmentCreateParams {
  eventName: string;
  type: 'cancel';
  cancel: { identifier: string };
}

export interface BillingAlertUsageThreshold {
  meter: string;
  /** An integer >= 1, compared with the meter's value over the customer's current period. */
  gte: number;
  recurrence: 'one_time';
}

export interface BillingAlert extends ApiObject {
  object: 'billing.alert';
  title: string;
  alertType: 'usage_threshold';
  status: 'active' | 'inactive' | 'archived';
  usageThreshold: BillingAlertUsageThreshold;
  filter: { customer: string } | null;
}

export interface BillingAlertCreateParams {
  title: string;
  alertType: 'usage_threshold';
  usageThreshold: BillingAlertUsageThreshold;
  filter?: { customer: string };
}

/** The `data` of a `billing.alert.triggered` event. */
export interface BillingAlertTriggered {
  object: 'billing.alert_triggered';
  alert: BillingAlert;
  customer: string;
  value: number;
  valueDecimal: string;
  created: number;
  livemode: boolean;
}

// ---- test helpers --------------------------------------------------------------------

export interface TestClock extends ApiObject {
  object: 'test_helpers.test_clock';
  name: string | null;
  frozenTime: number;
  status: string;
}

export interface TestClockCreateParams {
  frozenTime: number;
  name?: string;
}

export interface TestClockAdvanceParams {
  frozenTime: number;
}

// ---- webhooks and events -------------------------------------------------------------

export interface WebhookEndpoint extends ApiObject {
  object: 'webhook_endpoint';
  url: string;
  enabledEvents: string[];
  /** `enabled`, `disabled` (by you), or `failing` (deliveries failed for 3 days). */
  status: 'enabled' | 'disabled' | 'failing' | (string & {});
  description?: string | null;
  /** Only returned by `create` and `rollSecret`. */
  secret?: string;
}

export interface WebhookEndpointCreateParams {
  url: string;
  enabledEvents: string[];
  description?: string;
}

export interface WebhookEndpointUpdateParams {
  url?: string;
  enabledEvents?: string[];
  description?: string | null;
  /** `enabled` also clears `failing`; `disabled` cancels pending deliveries. */
  status?: 'enabled' | 'disabled';
}

export interface DeletedWebhookEndpoint {
  id: string;
  object: 'webhook_endpoint';
  deleted: true;
}

export interface WebhookAttempt {
  attempt: number;
  /** The endpoint's HTTP status, or null when no response came (see `error`). */
  statusCode: number | null;
  error: string | null;
  durationMs: number;
  created: number;
}

/** One event's delivery to one endpoint, with every attempt. */
export interface WebhookDelivery extends ApiObject {
  object: 'webhook_delivery';
  event: string;
  webhookEndpoint: string;
  url: string;
  status: 'pending' | 'delivered' | 'failed' | 'canceled' | (string & {});
  attemptCount: number;
  nextAttemptAt: number | null;
  firstAttemptAt: number | null;
  deliveredAt: number | null;
  lastStatusCode: number | null;
  lastError: string | null;
  attempts: List<WebhookAttempt>;
}

export interface DeliveryListParams extends ListParams {
  webhookEndpoint?: string;
}

export interface EventResendParams {
  /** Only this endpoint; by default every enabled endpoint subscribed to the event's type. */
  webhookEndpoint?: string;
}

export interface Charge extends ApiObject {
  object: 'charge';
  invoice: string;
  amount: number;
  currency: string;
  paymentMethod: string | null;
  status: string;
  paid: boolean;
  failureCode: string | null;
  failureMessage: string | null;
}

interface EventOf<TType extends string, TData> extends ApiObject {
  object: 'event';
  type: TType;
  data: TData;
}

export type InvoiceEventType =
  | 'invoice.created'
  | 'invoice.finalized'
  | 'invoice.paid'
  | 'invoice.payment_failed'
  | 'invoice.payment_succeeded'
  | 'invoice.marked_uncollectible';

export type SubscriptionEventType =
  | 'customer.subscription.created'
  | 'customer.subscription.updated'
  | 'customer.subscription.deleted';

/**
 * An event as delivered to webhooks and returned by `events`. `data` is the object itself
 * (for `invoice.*`, the invoice). Switching on `type` narrows `data`.
 */
export type VinrEvent =
  | EventOf<InvoiceEventType, Invoice>
  | EventOf<SubscriptionEventType, Subscription>
  | EventOf<'customer.created' | 'customer.updated', Customer>
  | EventOf<'charge.succeeded' | 'charge.failed', Charge>
  | EventOf<'test_helpers.test_clock.advanced', TestClock>
  | EventOf<'usage_record.dead_lettered', Record<string, unknown>>
  | EventOf<'webhook_endpoint.disabled', WebhookEndpoint>
  | EventOf<'billing.alert.triggered', BillingAlertTriggered>;

export type EventType = VinrEvent['type'];

export interface EventListParams extends ListParams {
  type?: string;
}
