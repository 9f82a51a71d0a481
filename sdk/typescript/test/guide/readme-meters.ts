/*
 * The "Billing meters" example of README.md, copied verbatim. `npm test` compiles it in
 * plain strict mode against the built package, and test/unit/readme.test.mjs checks that
 * it still matches the README and runs it against a scripted local server (never a live
 * one). Only the export list at the end is added.
 */
import { Vinr } from '@vinr/sdk';

const vinr = new Vinr({ secretKey: process.env.VINR_SECRET_KEY });

// A meter: the sum of `tokens` over a customer's `llm.tokens` events.
const meter = await vinr.billing.meters.create({
  displayName: 'LLM tokens',
  eventName: 'llm.tokens',
  defaultAggregation: { formula: 'sum' },       // sum | count | last | max
  valueSettings: { eventPayloadKey: 'tokens' }, // the customer id is under `customer`
});

// A price on it: 0.04 cents per token, billed monthly in arrears; a subscription to it.
const product = await vinr.products.create({ name: 'LLM API' });
const price = await vinr.prices.create({
  product: product.id,
  currency: 'EUR',
  billingScheme: 'per_unit',
  unitAmountDecimal: '0.04',
  recurring: { interval: 'month', usageType: 'metered', meter: meter.id },
});
const subscription = await vinr.subscriptions.create({
  customer: 'cust_8aZ2',
  items: [{ price: price.id }],
});

// Send events. The identifier (your own event id) makes a resend count once.
await vinr.billing.meterEvents.create({
  eventName: 'llm.tokens',
  payload: { customer: 'cust_8aZ2', tokens: 1200 },
  identifier: 'req_7Hq2',
});
await vinr.billing.meterEvents.createBatch({
  events: [
    { eventName: 'llm.tokens', payload: { customer: 'cust_8aZ2', tokens: '350.5' }, identifier: 'req_7Hq3' },
    { eventName: 'llm.tokens', payload: { customer: 'cust_8aZ2', tokens: 99 }, identifier: 'req_7Hq4' },
  ],
});

// Cancel one (say, a refunded request): it never counts.
await vinr.billing.meterEventAdjustments.create({
  eventName: 'llm.tokens',
  type: 'cancel',
  cancel: { identifier: 'req_7Hq4' },
});

// Today's usage, hour by hour (UTC; the exact value is a decimal string).
const today = Math.floor(Date.now() / 86_400_000) * 86_400;
const summaries = await vinr.billing.meters.listEventSummaries(meter.id, {
  customer: 'cust_8aZ2',
  startTime: today,
  endTime: today + 86_400,
  valueGroupingWindow: 'hour',
});
const used = summaries.data.reduce((sum, s) => sum + s.aggregatedValue, 0);
console.log(`${used} tokens today`);              // 1550.5

// An alert: one `billing.alert.triggered` event when the period's usage reaches 1M tokens.
const alert = await vinr.billing.alerts.create({
  title: '1M tokens',
  alertType: 'usage_threshold',
  usageThreshold: { meter: meter.id, gte: 1_000_000, recurrence: 'one_time' },
  filter: { customer: 'cust_8aZ2' },
});

// What the period would invoice if it closed now (nothing is stored).
const upcoming = await vinr.invoices.upcoming({ subscription: subscription.id });
console.log(upcoming.total, upcoming.lines.data[0]?.quantityDecimal); // 62 '1550.5'

export { vinr, meter, price, subscription, summaries, used, alert, upcoming };
