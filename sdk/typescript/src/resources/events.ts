import type {
  DeliveryListParams,
  EventListParams,
  EventResendParams,
  List,
  RequestOptions,
  VinrEvent,
  WebhookDelivery,
} from '../types.js';
import { Resource, pathId } from './resource.js';

export class Events extends Resource {
  async retrieve(id: string, options?: RequestOptions): Promise<VinrEvent> {
    return this.http.request({ method: 'GET', path: `/v1/events/${pathId(id)}`, options });
  }

  async list(params?: EventListParams, options?: RequestOptions): Promise<List<VinrEvent>> {
    return this.http.request({ method: 'GET', path: '/v1/events', query: params, options });
  }

  /** The event's deliveries, one per endpoint, each with its attempts. */
  async deliveries(id: string, params?: DeliveryListParams, options?: RequestOptions): Promise<List<WebhookDelivery>> {
    return this.http.request({ method: 'GET', path: `/v1/events/${pathId(id)}/deliveries`, query: params, options });
  }

  /** Queue the event again, due now; returns the deliveries queued. */
  async resend(id: string, params: EventResendParams = {}, options?: RequestOptions): Promise<List<WebhookDelivery>> {
    return this.http.request({ method: 'POST', path: `/v1/events/${pathId(id)}/resend`, body: params, options });
  }
}
