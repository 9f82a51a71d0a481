import type { EventListParams, List, RequestOptions, VinrEvent } from '../types.js';
import { Resource, pathId } from './resource.js';

export class Events extends Resource {
  async retrieve(id: string, options?: RequestOptions): Promise<VinrEvent> {
    return this.http.request({ method: 'GET', path: `/v1/events/${pathId(id)}`, options });
  }

  async list(params?: EventListParams, options?: RequestOptions): Promise<List<VinrEvent>> {
    return this.http.request({ method: 'GET', path: '/v1/events', query: params, options });
  }
}
