/** What every resource shares: the transport and a safe way to put ids into paths. */

import type { HttpClient } from '../http.js';

export abstract class Resource {
  protected readonly http: HttpClient;

  constructor(http: HttpClient) {
    this.http = http;
  }
}

/** Percent-encode an object id for a URL path; reject empty or non-string ids early. */
export function pathId(id: string): string {
  if (typeof id !== 'string' || id === '') {
    throw new TypeError(`expected a non-empty object id, got ${JSON.stringify(id)}`);
  }
  return encodeURIComponent(id);
}
