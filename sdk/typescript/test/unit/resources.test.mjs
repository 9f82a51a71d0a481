import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Vinr } from '@vinr/sdk';

import { startServer } from './helpers.mjs';

// Every resource method: the HTTP method, path (with query) and JSON body it sends.
describe('resources map to the documented endpoints', () => {
  let server;
  let vinr;
  before(async () => {
    server = await startServer((req) => ({ status: 200, body: { echo: `${req.method} ${req.url}` } }));
    vinr = new Vinr({ secretKey: 'sk_test_routes', apiBase: `${server.url}/`, maxRetries: 0 });
  });
  after(() => server.close());

  const calls = [
    ['products.create', (v) => v.products.create({ name: 'API access' }), 'POST', '/v1/products', { name: 'API access' }],
    ['products.retrieve', (v) => v.products.retrieve('prod_1'), 'GET', '/v1/products/prod_1'],
    ['products.list', (v) => v.products.list({ limit: 10, startingAfter: 'prod_9' }), 'GET', '/v1/products?limit=10&startingAfter=prod_9'],
    ['products.list without params', (v) => v.products.list(), 'GET', '/v1/products'],
    ['prices.create', (v) => v.prices.create({ product: 'prod_1', currency: 'EUR', billingScheme: 'usage', unitAmountDecimal: '0.2', recurring: { interval: 'month', usageType: 'metered', aggregateUsage: 'sum' } }), 'POST', '/v1/prices', { product: 'prod_1', currency: 'EUR', billingScheme: 'usage', unitAmountDecimal: '0.2', recurring: { interval: 'month', usageType: 'metered', aggregateUsage: 'sum' } }],
    ['prices.retrieve', (v) => v.prices.retrieve('price_1'), 'GET', '/v1/prices/price_1'],
    ['prices.list', (v) => v.prices.list({ product: 'prod_1', active: true }), 'GET', '/v1/prices?product=prod_1&active=true'],
    ['customers.create', (v) => v.customers.create({ id: 'cust_8aZ2', name: 'Ada', paymentMethod: 'pm_card_visa' }), 'POST', '/v1/customers', { id: 'cust_8aZ2', name: 'Ada', paymentMethod: 'pm_card_visa' }],
    ['customers.retrieve', (v) => v.customers.retrieve('cust_8aZ2'), 'GET', '/v1/customers/cust_8aZ2'],
    ['customers.update', (v) => v.customers.update('cust_8aZ2', { email: 'ada@example.com' }), 'POST', '/v1/customers/cust_8aZ2', { email: 'ada@example.com' }],
    ['customers.list', (v) => v.customers.list({ limit: 3 }), 'GET', '/v1/customers?limit=3'],
    ['subscriptions.create', (v) => v.subscriptions.create({ customer: 'cust_8aZ2', items: [{ price: 'price_1' }] }), 'POST', '/v1/subscriptions', { customer: 'cust_8aZ2', items: [{ price: 'price_1' }] }],
    ['subscriptions.retrieve', (v) => v.subscriptions.retrieve('sub_1'), 'GET', '/v1/subscriptions/sub_1'],
    ['subscriptions.update', (v) => v.subscriptions.update('sub_1', { cancelAtPeriodEnd: true }), 'POST', '/v1/subscriptions/sub_1', { cancelAtPeriodEnd: true }],
    ['subscriptions.cancel', (v) => v.subscriptions.cancel('sub_1'), 'DELETE', '/v1/subscriptions/sub_1'],
    ['subscriptions.list', (v) => v.subscriptions.list({ customer: 'cust_8aZ2', status: undefined }), 'GET', '/v1/subscriptions?customer=cust_8aZ2'],
    ['usageRecords.create', (v) => v.usageRecords.create({ subscriptionItem: 'si_1', quantity: 5, timestamp: 1748390400, action: 'increment' }, { idempotencyKey: 'usage-1' }), 'POST', '/v1/usage_records', { subscriptionItem: 'si_1', quantity: 5, timestamp: 1748390400, action: 'increment' }],
    ['usageRecords.createBatch', (v) => v.usageRecords.createBatch({ subscriptionItem: 'si_4Kp1', records: [{ quantity: 1200, timestamp: 1748390400, action: 'increment' }] }), 'POST', '/v1/usage_records/batch', { subscriptionItem: 'si_4Kp1', records: [{ quantity: 1200, timestamp: 1748390400, action: 'increment' }] }],
    ['usageRecords.summaries', (v) => v.usageRecords.summaries({ subscriptionItem: 'si_4Kp1' }), 'GET', '/v1/usage_records/summaries?subscriptionItem=si_4Kp1'],
    ['invoices.retrieve', (v) => v.invoices.retrieve('inv_1'), 'GET', '/v1/invoices/inv_1'],
    ['invoices.list', (v) => v.invoices.list({ subscription: 'sub_1', customer: 'cust_8aZ2' }), 'GET', '/v1/invoices?subscription=sub_1&customer=cust_8aZ2'],
    ['invoices.pay', (v) => v.invoices.pay('inv_1'), 'POST', '/v1/invoices/inv_1/pay', {}],
    ['webhookEndpoints.create', (v) => v.webhookEndpoints.create({ url: 'http://127.0.0.1:9999/', enabledEvents: ['invoice.paid'] }), 'POST', '/v1/webhook_endpoints', { url: 'http://127.0.0.1:9999/', enabledEvents: ['invoice.paid'] }],
    ['webhookEndpoints.list', (v) => v.webhookEndpoints.list(), 'GET', '/v1/webhook_endpoints'],
    ['webhookEndpoints.retrieve', (v) => v.webhookEndpoints.retrieve('we_1'), 'GET', '/v1/webhook_endpoints/we_1'],
    ['webhookEndpoints.update', (v) => v.webhookEndpoints.update('we_1', { status: 'disabled' }), 'POST', '/v1/webhook_endpoints/we_1', { status: 'disabled' }],
    ['webhookEndpoints.del', (v) => v.webhookEndpoints.del('we_1'), 'DELETE', '/v1/webhook_endpoints/we_1'],
    ['webhookEndpoints.rollSecret', (v) => v.webhookEndpoints.rollSecret('we_1'), 'POST', '/v1/webhook_endpoints/we_1/roll_secret', {}],
    ['events.retrieve', (v) => v.events.retrieve('evt_1'), 'GET', '/v1/events/evt_1'],
    ['events.list', (v) => v.events.list({ limit: 100 }), 'GET', '/v1/events?limit=100'],
    ['events.deliveries', (v) => v.events.deliveries('evt_1', { webhookEndpoint: 'we_1' }), 'GET', '/v1/events/evt_1/deliveries?webhookEndpoint=we_1'],
    ['events.resend', (v) => v.events.resend('evt_1'), 'POST', '/v1/events/evt_1/resend', {}],
    ['events.resend to one endpoint', (v) => v.events.resend('evt_1', { webhookEndpoint: 'we_1' }), 'POST', '/v1/events/evt_1/resend', { webhookEndpoint: 'we_1' }],
    ['testHelpers.subscriptions.advancePeriod', (v) => v.testHelpers.subscriptions.advancePeriod('sub_1'), 'POST', '/v1/test_helpers/subscriptions/sub_1/advance_period', {}],
    ['testHelpers.testClocks.create', (v) => v.testHelpers.testClocks.create({ frozenTime: 1748390400, name: 'guide' }), 'POST', '/v1/test_helpers/test_clocks', { frozenTime: 1748390400, name: 'guide' }],
    ['testHelpers.testClocks.retrieve', (v) => v.testHelpers.testClocks.retrieve('clock_1'), 'GET', '/v1/test_helpers/test_clocks/clock_1'],
    ['testHelpers.testClocks.advance', (v) => v.testHelpers.testClocks.advance('clock_1', { frozenTime: 1751000000 }), 'POST', '/v1/test_helpers/test_clocks/clock_1/advance', { frozenTime: 1751000000 }],
  ];

  for (const [name, call, method, url, body] of calls) {
    test(name, async () => {
      server.requests.length = 0;
      const result = await call(vinr);
      assert.deepEqual(result, { echo: `${method} ${url}` });
      const [req] = server.requests;
      assert.equal(req.method, method);
      assert.equal(req.url, url);
      assert.deepEqual(req.body, body);
      assert.equal(req.headers.authorization, 'Bearer sk_test_routes');
      if (method === 'POST') {
        assert.equal(req.headers['content-type'], 'application/json');
        assert.ok(req.headers['idempotency-key']);
      } else {
        assert.equal(req.headers['idempotency-key'], undefined);
      }
    });
  }

  test('ids are percent-encoded in paths and empty ids rejected', async () => {
    server.requests.length = 0;
    await vinr.customers.retrieve('cust_a/b?c');
    assert.equal(server.requests[0].url, '/v1/customers/cust_a%2Fb%3Fc');
    await assert.rejects(vinr.customers.retrieve(''), TypeError);
  });
});
