import type { List, ListParams, Product, ProductCreateParams, RequestOptions } from '../types.js';
import { Resource, pathId } from './resource.js';

export class Products extends Resource {
  async create(params: ProductCreateParams, options?: RequestOptions): Promise<Product> {
    return this.http.request({ method: 'POST', path: '/v1/products', body: params, options });
  }

  async retrieve(id: string, options?: RequestOptions): Promise<Product> {
    return this.http.request({ method: 'GET', path: `/v1/products/${pathId(id)}`, options });
  }

  async list(params?: ListParams, options?: RequestOptions): Promise<List<Product>> {
    return this.http.request({ method: 'GET', path: '/v1/products', query: params, options });
  }
}
