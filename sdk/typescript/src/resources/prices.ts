import type { List, Price, PriceCreateParams, PriceListParams, RequestOptions } from '../types.js';
import { Resource, pathId } from './resource.js';

export class Prices extends Resource {
  async create(params: PriceCreateParams, options?: RequestOptions): Promise<Price> {
    return this.http.request({ method: 'POST', path: '/v1/prices', body: params, options });
  }

  async retrieve(id: string, options?: RequestOptions): Promise<Price> {
    return this.http.request({ method: 'GET', path: `/v1/prices/${pathId(id)}`, options });
  }

  async list(params?: PriceListParams, options?: RequestOptions): Promise<List<Price>> {
    return this.http.request({ method: 'GET', path: '/v1/prices', query: params, options });
  }
}
