import type { Registry } from 'prom-client';

/** The upper bounds (seconds) of latch_http_request_duration_seconds' buckets. */
export const HTTP_DURATION_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type Labels = { method: string; route: string; status: string };
interface Series {
  labels: Labels;
  count: number;
  sum: number;
  /** Observations per bucket, not cumulative; the last slot is above every bound (+Inf only). */
  perBucket: number[];
}

type Sample = { labels: Record<string, string | number>; value: number; metricName?: string };

/**
 * Hands prom-client's registry a metric it reads at scrape time: `samples()` is called then, and
 * the registry formats them (label escaping and all) as it does its own metrics'.
 */
function register(registry: Registry, metric: { name: string; help: string; type: 'counter' | 'histogram'; samples: () => Sample[]; reset: () => void }): void {
  const { name, help, type } = metric;
  registry.registerMetric({ name, help, type, aggregator: 'sum', get: async () => ({ name, help, type, aggregator: 'sum', values: metric.samples() }), reset: metric.reset } as never);
}

/**
 * `latch_http_requests_total` (counter) and `latch_http_request_duration_seconds` (histogram),
 * by method, route and status: written on every response, so kept in one Map of plain series
 * and handed to prom-client's registry as two metrics read at scrape time. prom-client's own
 * `inc`/`observe` validate and hash the label object on every call, twice per response.
 * The exposition is prom-client's (its registry formats `get()`, and a cluster's aggregator
 * sums it like a Counter's and a Histogram's).
 */
export function createHttpSeries(registry: Registry) {
  const series = new Map<string, Series>();
  const bounds = HTTP_DURATION_BUCKETS;
  const reset = () => series.clear();

  register(registry, {
    name: 'latch_http_requests_total',
    help: 'HTTP requests by method, route and status.',
    type: 'counter',
    samples: () => [...series.values()].map((s) => ({ labels: { ...s.labels }, value: s.count })),
    reset,
  });
  const duration = 'latch_http_request_duration_seconds';
  register(registry, {
    name: duration,
    help: 'HTTP request latency in seconds, until the response is sent, by method, route and status.',
    type: 'histogram',
    samples: () => {
      const values: Sample[] = [];
      for (const s of series.values()) {
        let cumulative = 0;
        for (let i = 0; i < bounds.length; i++) {
          cumulative += s.perBucket[i]!;
          values.push({ labels: { le: bounds[i]!, ...s.labels }, value: cumulative, metricName: `${duration}_bucket` });
        }
        values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: `${duration}_bucket` });
        values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${duration}_sum` });
        values.push({ labels: { ...s.labels }, value: s.count, metricName: `${duration}_count` });
      }
      return values;
    },
    reset,
  });

  return {
    /** One response: its method, route label (bounded), status and duration. */
    observe(method: string, route: string, status: number, seconds: number): void {
      const key = `${method} ${route} ${status}`;
      let s = series.get(key);
      if (!s) {
        s = { labels: { method, route, status: String(status) }, count: 0, sum: 0, perBucket: new Array<number>(bounds.length + 1).fill(0) };
        series.set(key, s);
      }
      s.count++;
      s.sum += seconds;
      let i = 0;
      while (i < bounds.length && seconds > bounds[i]!) i++;
      s.perBucket[i]!++;
    },
  };
}

/**
 * A counter with labels, kept the same way: one Map of plain series, read by prom-client's
 * registry at scrape time. For counters incremented on a hot path (a token response).
 */
export function createCounterSeries<const L extends readonly string[]>(registry: Registry, options: { name: string; help: string; labelNames: L }) {
  const series = new Map<string, { labels: Record<string, string>; value: number }>();
  const { name, help, labelNames } = options;
  register(registry, { name, help, type: 'counter', samples: () => [...series.values()].map((s) => ({ labels: { ...s.labels }, value: s.value })), reset: () => series.clear() });
  return {
    /** Adds one to the series of these label values, in `labelNames` order. */
    inc(...values: { [K in keyof L]: string }): void {
      const key = values.join('\u0000');
      let s = series.get(key);
      if (!s) {
        const labels: Record<string, string> = {};
        labelNames.forEach((label, i) => (labels[label] = values[i]!));
        s = { labels, value: 0 };
        series.set(key, s);
      }
      s.value++;
    },
  };
}
