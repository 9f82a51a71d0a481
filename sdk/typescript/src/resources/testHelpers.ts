/** Sandbox-only helpers (`sk_test_…` keys): move time forward without waiting. */

import type { HttpClient } from '../http.js';
import type {
  RequestOptions,
  Subscription,
  TestClock,
  TestClockAdvanceParams,
  TestClockCreateParams,
} from '../types.js';
import { Resource, pathId } from './resource.js';

export class TestSubscriptions extends Resource {
  /** End the current period now: it is invoiced and the next one starts. */
  async advancePeriod(id: string, options?: RequestOptions): Promise<Subscription> {
    return this.http.request({
      method: 'POST',
      path: `/v1/test_helpers/subscriptions/${pathId(id)}/advance_period`,
      body: {},
      options,
    });
  }
}

export class TestClocks extends Resource {
  async create(params: TestClockCreateParams, options?: RequestOptions): Promise<TestClock> {
    return this.http.request({ method: 'POST', path: '/v1/test_helpers/test_clocks', body: params, options });
  }

  async retrieve(id: string, options?: RequestOptions): Promise<TestClock> {
    return this.http.request({ method: 'GET', path: `/v1/test_helpers/test_clocks/${pathId(id)}`, options });
  }

  async advance(id: string, params: TestClockAdvanceParams, options?: RequestOptions): Promise<TestClock> {
    return this.http.request({
      method: 'POST',
      path: `/v1/test_helpers/test_clocks/${pathId(id)}/advance`,
      body: params,
      options,
    });
  }
}

export class TestHelpers {
  readonly subscriptions: TestSubscriptions;
  readonly testClocks: TestClocks;

  constructor(http: HttpClient) {
    this.subscriptions = new TestSubscriptions(http);
    this.testClocks = new TestClocks(http);
  }
}
