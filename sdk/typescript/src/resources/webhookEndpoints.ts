import type { List, ListParams, RequestOptions, WebhookEndpoint, WebhookEndpointCreateParams } from '../types.js';
import { Resource } from './resource.js';

export class WebhookEndpoints extends Resource {
  /** The returned `secret` (`whsec_…`) is only ever shown here: store it. */
  async create(params: WebhookEndpointCreateParams, options?: RequestOptions): Promise<WebhookEndpoint> {
    return this.http.request({ method: 'POST', path: '/v1/webhook_endpoints', body: params, options });
  }

  async list(params?: ListParams, options?: RequestOptions): Promise<List<WebhookEndpoint>> {
    return this.http.request({ method: 'GET', path: '/v1/webhook_endpoints', query: params, options });
  }
}
