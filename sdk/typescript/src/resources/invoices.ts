import type { Invoice, InvoiceListParams, InvoicePayParams, List, RequestOptions } from '../types.js';
import { Resource, pathId } from './resource.js';

export class Invoices extends Resource {
  async retrieve(id: string, options?: RequestOptions): Promise<Invoice> {
    return this.http.request({ method: 'GET', path: `/v1/invoices/${pathId(id)}`, options });
  }

  async list(params?: InvoiceListParams, options?: RequestOptions): Promise<List<Invoice>> {
    return this.http.request({ method: 'GET', path: '/v1/invoices', query: params, options });
  }

  /** Attempt payment of an open invoice now, with its customer's default payment method. */
  async pay(id: string, params?: InvoicePayParams, options?: RequestOptions): Promise<Invoice> {
    return this.http.request({ method: 'POST', path: `/v1/invoices/${pathId(id)}/pay`, body: params ?? {}, options });
  }
}
