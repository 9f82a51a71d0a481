import type {
  DeletedWebhookEndpoint,
  List,
  ListParams,
  RequestOptions,
  WebhookEndpoint,
  WebhookEndpointCreateParams,
  WebhookEndpointUpdateParams,
} from '../types.js';
import { Resource, pathId } from './resource.js';

export class WebhookEndpoints extends Resource {
  /** The returned `secret` (`whsec_…`) is only shown here and by `rollSecret`: store it. */
  async create(params: WebhookEndpointCreateParams, options?: RequestOptions): Promise<WebhookEndpoint> {
    return this.http.request({ method: 'POST', path: '/v1/webhook_endpoints', body: params, options });
  }

  async retrieve(id: string, options?: RequestOptions): Promise<WebhookEndpoint> {
    return this.http.request({ method: 'GET', path: `/v1/webhook_endpoints/${pathId(id)}`, options });
  }

  async update(id: string, params: WebhookEndpointUpdateParams, options?: RequestOptions): Promise<WebhookEndpoint> {
    return this.http.request({ method: 'POST', path: `/v1/webhook_endpoints/${pathId(id)}`, body: params, options });
  }

  async del(id: string, options?: RequestOptions): Promise<DeletedWebhookEndpoint> {
    return this.http.request({ method: 'DELETE', path: `/v1/webhook_endpoints/${pathId(id)}`, options });
  }

  /** A new secret, returned this once; the old one keeps signing deliveries for 24 h. */
  async rollSecret(id: string, options?: RequestOptions): Promise<WebhookEndpoint> {
    return this.http.request({ method: 'POST', path: `/v1/webhook_endpoints/${pathId(id)}/roll_secret`, body: {}, options });
  }

  async list(params?: ListParams, options?: RequestOptions): Promise<List<WebhookEndpoint>> {
    return this.http.request({ method: 'GET', path: '/v1/webhook_endpoints', query: params, options });
  }
}
