import Router from '@koa/router';

import { requireAdmin } from '../../middleware/api-auth.js';
import { paginate, pageParams, sendResource } from '../../middleware/api-paging.js';
import { notFound } from '../../middleware/api-problem.js';
import type { KeyInfo } from '../../services/keys.js';
import { byPrincipal, type ApiDeps } from './common.js';

/** The API shape of a signing key: its `id` is the kid (an RFC 7638 thumbprint). */
export const describeKey = ({ kid, ...k }: KeyInfo) => ({ id: kid, ...k });

/** A kid Latch generates: base64url, never longer than this. */
const KID = /^[A-Za-z0-9_-]{1,128}$/;

/** /api/v1/keys: the signing keys published at /jwks, their rotation and retirement. */
export function keyRoutes(deps: ApiDeps): Router {
  const router = new Router();
  const { services } = deps;
  const read = requireAdmin('read');
  const write = requireAdmin('write');

  /** One key with its public JWK (the representation of GET and retire). */
  const keyOr404 = async (id: string) => {
    const key = KID.test(id) ? await services.keys.get(id) : undefined;
    if (!key) throw notFound(`key ${id}`);
    const { public_jwk, ...info } = key;
    return { ...describeKey(info), public_jwk };
  };

  const cursorOf = (k: ReturnType<typeof describeKey>) => ({ at: k.created_at, id: k.id });

  router.get('/keys', read, async (ctx) => {
    const page = pageParams(ctx);
    const { items, next_cursor } = paginate((await services.keys.list()).map(describeKey), cursorOf, page);
    ctx.body = { data: items, next_cursor };
  });

  // A collection action: a new current key for every algorithm. Earlier keys stay published
  // until retired, so tokens they signed keep verifying.
  router.post('/keys/rotate', write, async (ctx) => {
    await deps.bodies.read(ctx);
    const rotated = await services.keys.rotate(byPrincipal(ctx));
    const all = (await services.keys.list()).map(describeKey);
    // Every key, in the order of GET /keys.
    const keys = paginate(all, cursorOf, { limit: all.length, cursor: undefined }).items;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { rotated, data: keys };
  });

  router.get('/keys/:id', read, async (ctx) => {
    sendResource(ctx, await keyOr404(ctx.params.id!));
  });

  // A new current key of the algorithm of {id}; {id} stays published until retired.
  router.post('/keys/:id/rotate', write, async (ctx) => {
    const like = KID.test(ctx.params.id!) ? await services.keys.rotateLike(ctx.params.id!, byPrincipal(ctx)) : undefined;
    if (!like) throw notFound(`key ${ctx.params.id}`);
    sendResource(ctx, await keyOr404(like));
  });

  router.post('/keys/:id/retire', write, async (ctx) => {
    const key = await keyOr404(ctx.params.id!);
    if (key.status !== 'active') throw notFound(`active key ${key.id}`);
    // The service refuses the current key of its algorithm (409) and one retired meanwhile (404).
    await services.keys.retire(key.id, byPrincipal(ctx));
    sendResource(ctx, await keyOr404(key.id));
  });

  return router;
}
