import type {
  Invoice,
  InvoiceListParams,
  InvoicePayParams,
  InvoiceUpcomingParams,
  List,
  RequestOptions,
  UpcomingInvoice,
} from '../types.js';
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

  /**
   * The invoice the subscription's current period would close with now (meter and usage
   * lines, amounts, total); not stored: `id` is null and `status` `draft`.
   */
  async upcoming(params: InvoiceUpcomingParams, options?: RequestOptions): Promise<UpcomingInvoice> {
    return this.http.request({ method: 'GET', path: '/v1/invoices/upcoming', query: params, options });
  }
}
