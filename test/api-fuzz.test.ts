import { expect } from 'chai';

import { doc, METHODS, startApiHarness, type ApiHarness } from './helpers/api.js';

/**
 * Junk against every operation of openapi.yaml with an admin token: odd ids in the path, bodies
 * of the wrong shape and fields of the wrong type. Every answer must be documented for its
 * operation (the harness checks status, headers and body) and none may be a 5xx.
 */
describe('admin API: junk input on every operation', function () {
  this.timeout(240_000);
  let h: ApiHarness;
  before(async () => {
    h = await startApiHarness();
  });
  after(async () => {
    await h?.close();
  });

  const IDS = ['x', '%00', 'a'.repeat(300), '-1', '00000000-0000-0000-0000-000000000000', "'%3B%20drop%20table%20accounts%3B--", '%F0%9F%98%80', '..%2F..'];
  const WRONG: unknown[] = [5, true, null, [], {}, 'x'.repeat(5000), [1, 2], { nested: { deep: [null] } }, 'a\u0000b', ['a\u0000b']];

  /** Every property an operation's JSON body may carry (from its schema, through $ref). */
  function bodyProperties(op: any): string[] {
    let schema = op.requestBody?.content?.['application/json']?.schema;
    if (schema?.$ref) schema = doc.components.schemas[schema.$ref.split('/').pop()];
    return Object.keys(schema?.properties ?? {});
  }

  it('never answers 5xx, and answers only what openapi.yaml documents', async () => {
    for (const [template, ops] of Object.entries(doc.paths)) {
      if (!template.startsWith('/api/v1/')) continue;
      for (const method of Object.keys(ops).filter((m) => METHODS.includes(m))) {
        const op = ops[method];
        const query = ((op.parameters ?? []) as { in?: string; name?: string }[]).filter((p) => p.in === 'query').map((p) => `${p.name}=%00`).join('&');
        // A path without parameters is the same path for every odd id: sent once.
        for (const id of template.includes('{') ? IDS : IDS.slice(0, 1)) {
          const path = template.replace(/\{[^}]+\}/g, id);
          if (query) {
            const r = await h.call(method.toUpperCase(), `${path}?${query}`, { token: h.admin });
            expect(r.status, `${method.toUpperCase()} ${path}?${query}`).to.be.below(500);
          }
          const bodies: { body?: unknown; raw?: string }[] = method === 'get' || method === 'delete' ? [{}] : [{ raw: '{' }, { body: [] }, { body: 'text' }, { body: null }, ...bodyProperties(op).flatMap((p) => WRONG.map((w) => ({ body: { [p]: w } })))];
          for (const b of bodies) {
            const r = await h.call(method.toUpperCase(), path, { token: h.admin, ...b });
            expect(r.status, `${method.toUpperCase()} ${path} ${JSON.stringify(b).slice(0, 80)}`).to.be.below(500);
          }
        }
      }
    }
  });
});
