import type {
  Customer,
  CustomerCreateParams,
  CustomerListParams,
  CustomerUpdateParams,
  List,
  RequestOptions,
} from '../types.js';
import { Resource, pathId } from './resource.js';

export class Customers extends Resource {
  async create(params: CustomerCreateParams, options?: RequestOptions): Promise<Customer> {
    return this.http.request({ method: 'POST', path: '/v1/customers', body: params, options });
  }

  async retrieve(id: string, options?: RequestOptions): Promise<Customer> {
    return this.http.request({ method: 'GET', path: `/v1/customers/${pathId(id)}`, options });
  }

  async update(id: string, params: CustomerUpdateParams, options?: RequestOptions): Promise<Customer> {
    return this.http.request({ method: 'POST', path: `/v1/customers/${pathId(id)}`, body: params, options });
  }

  async list(params?: CustomerListParams, options?: RequestOptions): Promise<List<Customer>> {
    return this.http.request({ method: 'GET', path: '/v1/customers', query: params, options });
  }
}
