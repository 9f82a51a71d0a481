/*
 * The TypeScript snippets of the user guide "Bill for usage"
 * (docs/guide/bill-for-usage.md), copied verbatim and in order. guide.test.ts
 * checks that every snippet still appears here character for character, then imports
 * this module, which runs them against the server at VINR_API_BASE.
 *
 * Only two things are added around them: the import of the guide's undefined helpers
 * (extendAccess, startDunning) just below, and an export list at the end.
 */
import { extendAccess, startDunning } from './recorder.js';

// ---- "Define a metered price" ----
import { Vinr } from '@vinr/sdk';

const vinr = new Vinr({ secretKey: process.env.VINR_SECRET_KEY });

const product = await vinr.products.create({
  name: 'API access',
});

const price = await vinr.prices.create({
  product: product.id,            // prod_...
  currency: 'EUR',
  billingScheme: 'usage',
  unitAmountDecimal: '0.2',       // €0.002 per unit, in minor-unit decimals
  recurring: {
    interval: 'month',
    usageType: 'metered',
    aggregateUsage: 'sum',        // sum | last_during_period | max
  },
});

// ---- "Subscribe the customer" ----
const subscription = await vinr.subscriptions.create({
  customer: 'cust_8aZ2',
  items: [{ price: price.id }],   // price_...
});

console.log(subscription.id);     // sub_...

// ---- "Report usage records" ----
async function reportApiCall(subscriptionItemId: string, count: number, requestId: string) {
  const record = await vinr.usageRecords.create(
    {
      subscriptionItem: subscriptionItemId,
      quantity: count,
      timestamp: Math.floor(Date.now() / 1000),
      action: 'increment',        // increment | set
    },
    { idempotencyKey: `usage-${requestId}` },
  );

  return record.id;               // mbu_...
}

await vinr.usageRecords.createBatch({
  subscriptionItem: 'si_4Kp1',
  records: [
    { quantity: 1200, timestamp: 1748390400, action: 'increment' },
    { quantity: 980,  timestamp: 1748476800, action: 'increment' },
  ],
});

// ---- "Aggregation & windows" ----
const summary = await vinr.usageRecords.summaries({
  subscriptionItem: 'si_4Kp1',
});

console.log(summary.data[0].totalUsage);   // e.g. 18420

// ---- "Invoicing usage" ----
export async function POST(req: Request) {
  const event = vinr.webhooks.verify(
    await req.text(),
    req.headers.get('x-vinr-signature'),
  );

  switch (event.type) {
    case 'invoice.paid':
      // inv_... — quantity already aggregated and priced
      await extendAccess(event.data.subscription, event.data.periodEnd);
      break;
    case 'invoice.payment_failed':
      await startDunning(event.data.customer);
      break;
  }
  return new Response('OK', { status: 200 });
}

export { vinr, product, price, subscription, reportApiCall, summary };
