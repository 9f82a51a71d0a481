import type {
  List,
  RequestOptions,
  Subscription,
  SubscriptionCreateParams,
  SubscriptionListParams,
  SubscriptionUpdateParams,
} from '../types.js';
import { Resource, pathId } from './resource.js';

export class Subscriptions extends Resource {
  async create(params: SubscriptionCreateParams, options?: RequestOptions): Promise<Subscription> {
    return this.http.request({ method: 'POST', path: '/v1/subscriptions', body: params, options });
  }

  async retrieve(id: string, options?: RequestOptions): Promise<Subscription> {
    return this.http.request({ method: 'GET', path: `/v1/subscriptions/${pathId(id)}`, options });
  }

  async update(id: string, params: SubscriptionUpdateParams, options?: RequestOptions): Promise<Subscription> {
    return this.http.request({
      method: 'POST',
      path: `/v1/subscriptions/${pathId(id)}`,
      body: params,
      options,
    });
  }

  /** Cancel now (`DELETE`): the period's usage so far is invoiced at once. */
  async cancel(id: string, options?: RequestOptions): Promise<Subscription> {
    return this.http.request({ method: 'DELETE', path: `/v1/subscriptions/${pathId(id)}`, options });
  }

  async list(params?: SubscriptionListParams, options?: RequestOptions): Promise<List<Subscription>> {
    return this.http.request({ method: 'GET', path: '/v1/subscriptions', query: params, options });
  }
}
