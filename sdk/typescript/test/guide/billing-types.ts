/*
 * Mistakes the billing types must catch: `npm test` compiles this file, and tsc fails if a
 * line marked @ts-expect-error is accepted. Nothing here runs.
 */
import { Vinr } from '@vinr/sdk';
import type { BillingMeterEventSummary, UpcomingInvoice, VinrEvent } from '@vinr/sdk';

export async function mistakes(vinr: Vinr): Promise<void> {
  // @ts-expect-error: no such formula
  await vinr.billing.meters.create({ displayName: 'T', eventName: 't', defaultAggregation: { formula: 'average' } });
  // @ts-expect-error: snake_case is not the wire's casing
  await vinr.billing.meterEvents.create({ event_name: 't', payload: { customer: 'cust_1' } });
  // @ts-expect-error: a payload value is a number or a decimal string
  await vinr.billing.meterEvents.create({ eventName: 't', payload: { customer: 'cust_1', value: true } });
  // @ts-expect-error: cancel is the only adjustment
  await vinr.billing.meterEventAdjustments.create({ eventName: 't', type: 'undo', cancel: { identifier: 'x' } });
  // @ts-expect-error: endTime is required
  await vinr.billing.meters.listEventSummaries('mtr_1', { customer: 'cust_1', startTime: 0 });
  // @ts-expect-error: the window is an hour or a day
  await vinr.billing.meters.listEventSummaries('mtr_1', { customer: 'cust_1', startTime: 0, endTime: 60, valueGroupingWindow: 'week' });
  await vinr.billing.alerts.create({
    title: 'x',
    alertType: 'usage_threshold',
    // @ts-expect-error: gte is a number
    usageThreshold: { meter: 'mtr_1', gte: '10', recurrence: 'one_time' },
  });
  // @ts-expect-error: the upcoming invoice is per subscription
  await vinr.invoices.upcoming({ customer: 'cust_1' });
}

export function shapes(summary: BillingMeterEventSummary, upcoming: UpcomingInvoice, event: VinrEvent): string {
  const exact: string = summary.aggregatedValueDecimal;
  const value: number = summary.aggregatedValue;
  const id: null = upcoming.id;
  const quantity: string | null | undefined = upcoming.lines.data[0]?.quantityDecimal;
  if (event.type === 'billing.alert.triggered') {
    // Narrowed by `type`: the data is the alert_triggered object.
    const meter: string = event.data.alert.usageThreshold.meter;
    return `${exact} ${value} ${id} ${quantity} ${meter} ${event.data.customer} ${event.data.valueDecimal}`;
  }
  return exact;
}
