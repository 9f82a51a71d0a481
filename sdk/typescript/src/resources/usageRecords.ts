import type {
  List,
  RequestOptions,
  UsageRecord,
  UsageRecordBatch,
  UsageRecordBatchParams,
  UsageRecordCreateParams,
  UsageRecordSummary,
  UsageRecordSummaryParams,
} from '../types.js';
import { Resource } from './resource.js';

export class UsageRecords extends Resource {
  /** Report usage. Pass `idempotencyKey` so a retried report is never counted twice. */
  async create(params: UsageRecordCreateParams, options?: RequestOptions): Promise<UsageRecord> {
    return this.http.request({ method: 'POST', path: '/v1/usage_records', body: params, options });
  }

  /** Report 1–1000 records for one subscription item in one request (one idempotency key). */
  async createBatch(params: UsageRecordBatchParams, options?: RequestOptions): Promise<UsageRecordBatch> {
    return this.http.request({ method: 'POST', path: '/v1/usage_records/batch', body: params, options });
  }

  /** Per-period totals for an item, newest period first. */
  async summaries(params: UsageRecordSummaryParams, options?: RequestOptions): Promise<List<UsageRecordSummary>> {
    return this.http.request({ method: 'GET', path: '/v1/usage_records/summaries', query: params, options });
  }
}
