/**
 * The guide's webhook handler calls `extendAccess` and `startDunning`, which the guide
 * leaves to the reader. These record their calls so the guide test can assert on them.
 */

export interface AccessExtension {
  subscriptionId: string;
  periodEnd: number;
}

export const accessExtensions: AccessExtension[] = [];
export const dunningStarts: string[] = [];

export async function extendAccess(subscriptionId: string, periodEnd: number): Promise<void> {
  accessExtensions.push({ subscriptionId, periodEnd });
}

export async function startDunning(customerId: string): Promise<void> {
  dunningStarts.push(customerId);
}
