import { randomUUID } from 'node:crypto';

import type Koa from 'koa';
import Provider from 'oidc-provider';
import type { Client } from 'oidc-provider';

/**
 * Everything Latch does to oidc-provider beyond its documented configuration, in one place. Each
 * relies on how the library is built today; test/provider-internals.test.ts asserts each of them
 * against the installed version, so an upgrade that changes one fails there first.
 */

/**
 * A handler that runs the provider's own middleware (its Koa app's `middleware` array) on the
 * caller's Koa context: one context per request, Latch's cookie keys, proxy settings and error
 * handling, instead of `provider.callback()` building a second context.
 */
export function providerHandler(provider: Provider): (ctx: Koa.Context) => Promise<unknown> {
  const stack = (provider as unknown as { middleware: Koa.Middleware[] }).middleware;
  const dispatch = (ctx: Koa.Context, i: number): Promise<unknown> => (i < stack.length ? Promise.resolve(stack[i]!(ctx, () => dispatch(ctx, i + 1))) : Promise.resolve());
  return (ctx) => dispatch(ctx, 0);
}

/**
 * oidc-provider stores only the properties a model lists in its static `IN_PAYLOAD`; `property`
 * joins the Grant's list, so a Grant saved with it keeps it. Must run before any Grant is built
 * (the library reads the list once per model).
 */
export function keepInGrantPayload(provider: Provider, property: string): void {
  const listed = (provider.Grant as unknown as { IN_PAYLOAD: string[] }).IN_PAYLOAD;
  if (listed.includes(property)) return;
  Object.defineProperty(provider.Grant, 'IN_PAYLOAD', { value: [...listed, property] });
}

/**
 * oidc-provider hashes a client's metadata (JSON + SHA-256) on every `Client.find` to reuse the
 * Client it built from it. `metadataOf` hands out the same metadata object until the client
 * changes, so that object identifies the Client built from it: the hash is skipped. The library
 * looks clients up through the static `Client.find`, which is what is replaced.
 */
export function memoiseClientFind(provider: Provider, metadataOf: (id: string) => Promise<object | undefined>): void {
  const builtFrom = new WeakMap<object, Client>();
  const find = provider.Client.find.bind(provider.Client);
  provider.Client.find = async (id: string) => {
    const metadata = typeof id === 'string' && id ? await metadataOf(id) : undefined;
    const known = metadata && builtFrom.get(metadata);
    if (known) return known;
    const client = await find(id);
    if (metadata && client) builtFrom.set(metadata, client);
    return client;
  };
}

/**
 * Client secrets are stored as HMACs (services/secrets.ts): oidc-provider's `client_secret_basic`
 * and `client_secret_post` authentication compare through the Client's `compareClientSecret`,
 * which `verify(presented, stored)` replaces (it must compare in constant time).
 */
export function compareClientSecretsWith(provider: Provider, verify: (presented: string, stored: string) => boolean): void {
  provider.Client.prototype.compareClientSecret = function compareClientSecret(this: { clientSecret?: string }, actual: string) {
    return verify(actual, this.clientSecret ?? '');
  };
}

/**
 * The id (and opaque value) of the refresh token a rotation issues comes from `successorOf(the
 * rotated token's id)` instead of fresh randomness. oidc-provider's refresh_token grant marks the
 * token it rotates as the `RotatedRefreshToken` entity, then saves a new RefreshToken, whose
 * `save()` asks the instance's `generateTokenId` for an id: that method is what is replaced.
 * Every other refresh token (from a code, a device code…) keeps the library's random id.
 */
export function deriveRotatedRefreshTokenIds(provider: Provider, successorOf: (rotatedId: string) => string): void {
  const proto = provider.RefreshToken.prototype as unknown as { generateTokenId(): string };
  const random = proto.generateTokenId;
  proto.generateTokenId = function generateTokenId(this: { jti?: string }) {
    const rotated = (Provider.ctx as { oidc?: { entities?: { RotatedRefreshToken?: { jti?: string } } } } | undefined)?.oidc?.entities?.RotatedRefreshToken;
    return rotated?.jti && rotated.jti !== this.jti ? successorOf(rotated.jti) : random.call(this);
  };
}

/**
 * oidc-provider remembers single-use `jti`s (DPoP proofs, client assertions) through the static
 * `ReplayDetection.unique(iss, jti, exp)`, which finds then saves: two instances (or two requests
 * whose writes the adapter defers) can both find nothing and both accept the value. `unique` is
 * replaced by one atomic insert-if-absent, `remember(id, payload, expiresIn)`, true when stored.
 * The id is the library's own (SHA-256 of iss and jti).
 */
export function atomicReplayDetection(provider: Provider, remember: (id: string, payload: Record<string, unknown>, expiresIn: number) => Promise<boolean>, idOf: (iss: string, jti: string) => string): void {
  const model = provider.ReplayDetection as unknown as { unique(iss: string, jti: string, exp: number): Promise<boolean> };
  model.unique = async (iss, jti, exp) => {
    const id = idOf(iss, jti);
    return remember(id, { jti: id, iss, kind: 'ReplayDetection' }, Math.max(1, exp - Math.floor(Date.now() / 1000)));
  };
}
/** OIDC Back-Channel Logout 1.0 §2.4: the event that makes a JWT a logout token. */
export const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

/**
 * With `features.backchannelLogout` on, RP-initiated logout (end_session) calls each client's
 * `backchannelLogout(sub, sid)` before it removes the session, and the library would POST the
 * logout token itself (no loopback, 2.5 s, no retry). `enqueue` replaces that delivery: the
 * session's end is handed to Latch's queue instead.
 */
export function deliverBackchannelLogoutsWith(provider: Provider, enqueue: (clientId: string, sub: string, sid: string | undefined) => Promise<void>): void {
  const proto = provider.Client.prototype as unknown as { backchannelLogout(sub: string, sid?: string): Promise<void> };
  proto.backchannelLogout = function backchannelLogout(this: Client, sub: string, sid?: string) {
    return enqueue(this.clientId, sub, sid);
  };
}

/**
 * ID tokens name the session (`sid`, OIDC Front-/Back-Channel Logout) for every client: the
 * library adds it only when `Client.prototype.includeSid()` says so (clients registered for
 * back-channel logout with sessions required), which is what is replaced.
 */
export function sidInEveryIdToken(provider: Provider): void {
  (provider.Client.prototype as unknown as { includeSid(): boolean }).includeSid = () => true;
}

/**
 * A logout token (§2.4) signed as the library signs ID tokens for `client` (its
 * id_token_signed_response_alg, the provider's keys, `typ: logout+jwt`, iss, aud, iat, a
 * two-minute exp, sub as the client sees it): the library's IdToken with `use: 'logout'`, as
 * its own `Client#backchannelLogout` builds it, plus `jti`, `sid` and `events`; never a nonce.
 */
export async function signLogoutToken(provider: Provider, client: Client, sub: string, sid: string | null): Promise<string> {
  type LogoutToken = { mask: unknown; set(key: string, value: unknown): void; issue(options: { use: 'logout' }): Promise<string> };
  const IdToken = provider.IdToken as unknown as new (claims: object, options: { client: Client; ctx: undefined }) => LogoutToken;
  const token = new IdToken({ sub }, { client, ctx: undefined });
  token.mask = { sub: null };
  token.set('events', { [BACKCHANNEL_LOGOUT_EVENT]: {} });
  token.set('jti', randomUUID());
  if (sid) token.set('sid', sid);
  return token.issue({ use: 'logout' });
}

/**
 * The error oidc-provider's session save throws for a session that was never stored but was
 * changed in the request (Session#persist: a TypeError). Its error handler does that on a
 * failed `/device/:uid`: it makes the code form's xsrf secret on a fresh session, and the save
 * that follows the page throws.
 */
export function isUnstoredSessionSave(err: unknown): boolean {
  return err instanceof TypeError && err.message === 'persist can only be called on previously persisted Sessions';
}
