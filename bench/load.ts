/**
 * Load generation: autocannon (programmatic API) for single-request scenarios, and a bounded
 * concurrent loop of our own for multi-request operations (a whole code flow, an argon2 verify).
 */
import autocannon from 'autocannon';

import type { Measurement } from './types.js';

export interface CannonOptions {
  url: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections: number;
  seconds: number;
  /** Per-request body (each request may differ). */
  setupRequest?: (request: autocannon.Request, context: object) => autocannon.Request;
  onResponse?: (status: number, body: string, context: object) => void;
}

const round = (n: number, digits = 2) => {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
};

/** Runs autocannon against one URL for `seconds`; only 2xx responses count as throughput. */
export async function cannon(o: CannonOptions): Promise<Measurement> {
  const url = new URL(o.url);
  if (url.hostname !== '127.0.0.1') throw new Error(`refusing to load a non-loopback target: ${o.url}`);
  const request: autocannon.Request = { method: o.method ?? 'GET', path: `${url.pathname}${url.search}` };
  if (o.headers) request.headers = o.headers;
  if (o.body !== undefined) request.body = o.body;
  if (o.setupRequest) request.setupRequest = o.setupRequest;
  if (o.onResponse) request.onResponse = o.onResponse;
  // autocannon's own histogram keeps whole milliseconds; its 'response' event has the exact time.
  const latencies: number[] = [];
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({ url: `${url.protocol}//${url.host}`, connections: o.connections, duration: o.seconds, timeout: 10, requests: [request] }, (err: unknown, res: autocannon.Result) => {
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(res);
    });
    instance.on('response', (_client, _status, _bytes, responseTime) => {
      latencies.push(responseTime);
    });
  });
  latencies.sort((a, b) => a - b);
  const seconds = result.duration;
  const ok = result['2xx'];
  return { rps: round(ok / seconds, 1), p50: round(percentile(latencies, 50)), p99: round(percentile(latencies, 99)), errors: result.non2xx + result.errors, ok, seconds: round(seconds) };
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/**
 * `concurrency` workers call `op` back to back until `seconds` have passed (no new operation
 * starts after the deadline; running ones finish, each bounded by its own timeouts).
 */
export async function loop(concurrency: number, seconds: number, op: (worker: number) => Promise<void>, onError?: (err: unknown) => void): Promise<Measurement> {
  const latencies: number[] = [];
  let errors = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const worker = async (w: number) => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        await op(w);
        latencies.push(performance.now() - t0);
      } catch (err) {
        errors++;
        onError?.(err);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { rps: round(latencies.length / elapsed, 1), p50: round(percentile(latencies, 50)), p99: round(percentile(latencies, 99)), errors, ok: latencies.length, seconds: round(elapsed) };
}
