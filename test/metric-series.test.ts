/**
 * The HTTP request series (services/metric-series.ts) as Prometheus reads them: the counter, the
 * cumulative buckets (an observation equal to a bound is in that bucket, as prom-client's
 * Histogram counts it), `+Inf`, sum and count, per label set, through prom-client's registry.
 */
import { expect } from 'chai';
import { Counter, Histogram, Registry } from 'prom-client';

import { createCounterSeries, createHttpSeries, HTTP_DURATION_BUCKETS } from '../src/services/metric-series.js';

describe('HTTP request series', () => {
  it('expose the same text as prom-client Counter and Histogram fed the same responses', async () => {
    const ours = new Registry();
    const series = createHttpSeries(ours);
    const reference = new Registry();
    const histogram = new Histogram({ name: 'latch_http_request_duration_seconds', help: 'x', labelNames: ['method', 'route', 'status'], buckets: [...HTTP_DURATION_BUCKETS], registers: [reference] });
    const responses: [string, string, number, number][] = [
      ['POST', 'token', 200, 0.005],
      ['POST', 'token', 200, 0.0051],
      ['POST', 'token', 200, 12],
      ['POST', 'token', 400, 0.2],
      ['GET', '/interaction/:uid', 200, 0],
    ];
    for (const [method, route, status, seconds] of responses) {
      series.observe(method, route, status, seconds);
      histogram.observe({ method, route, status: String(status) }, seconds);
    }
    const text = await ours.metrics();
    const lines = (t: string, name: string) => t.split('\n').filter((l) => l.startsWith(name)).sort();
    expect(lines(text, 'latch_http_request_duration_seconds')).to.deep.equal(lines(await reference.metrics(), 'latch_http_request_duration_seconds'));
    expect(lines(text, 'latch_http_requests_total')).to.deep.equal([
      'latch_http_requests_total{method="GET",route="/interaction/:uid",status="200"} 1',
      'latch_http_requests_total{method="POST",route="token",status="200"} 3',
      'latch_http_requests_total{method="POST",route="token",status="400"} 1',
    ]);
    expect(text).to.contain('# TYPE latch_http_requests_total counter').and.contain('# TYPE latch_http_request_duration_seconds histogram');
    expect(text).to.contain('latch_http_request_duration_seconds_bucket{le="0.005",method="POST",route="token",status="200"} 1');
  });

  it('a labelled counter exposes what prom-client\'s Counter does', async () => {
    const ours = new Registry();
    const counter = createCounterSeries(ours, { name: 'latch_tokens_issued_total', help: 'x', labelNames: ['grant_type', 'client_id'] as const });
    const reference = new Registry();
    const theirs = new Counter({ name: 'latch_tokens_issued_total', help: 'x', labelNames: ['grant_type', 'client_id'], registers: [reference] });
    for (const [g, c] of [['client_credentials', 'a'], ['client_credentials', 'a'], ['refresh_token', 'a'], ['client_credentials', 'b"\\\n']] as const) {
      counter.inc(g, c);
      theirs.inc({ grant_type: g, client_id: c });
    }
    expect(await ours.metrics()).to.equal(await reference.metrics());
  });
});
