import type { IncomingMessage } from 'node:http';

import type Koa from 'koa';

/**
 * A bounded name for the route that answered a request, for logs and metric labels: never the
 * raw path (unbounded, and it may carry identifiers). oidc-provider's route name
 * (`ctx.oidc.route`: "token", "authorization", …) and pattern ("/auth/:uid") are handed over on
 * the IncomingMessage by a post-hook of the provider (src/oidc/provider.ts).
 */
const PROVIDER_ROUTE = Symbol('latch.providerRoute');

type Labelled = IncomingMessage & { [PROVIDER_ROUTE]?: { name: string; pattern: string | undefined } };

const matchedPattern = (ctx: Koa.Context): string | undefined => {
  const matched = (ctx as Koa.Context & { _matchedRoute?: string | RegExp })._matchedRoute;
  return matched === undefined ? undefined : String(matched);
};

/** Called by oidc-provider middleware once its router has matched (see src/oidc/provider.ts). */
export function setProviderRoute(req: IncomingMessage, name: string, pattern: string | undefined): void {
  (req as Labelled)[PROVIDER_ROUTE] = { name, pattern };
}

/** oidc-provider's route name ("token"), else @koa/router's matched pattern ("/interaction/:uid"), else "other". */
export function routeLabel(ctx: Koa.Context): string {
  return (ctx.req as Labelled)[PROVIDER_ROUTE]?.name ?? matchedPattern(ctx) ?? 'other';
}

/**
 * The request path for a log line, without the query string. On a route with parameters the
 * pattern is logged instead ("/interaction/:uid/login", "/auth/:uid"): an interaction uid is
 * also the value of an interaction cookie, and cookie values never go to the logs.
 */
export function loggablePath(ctx: Koa.Context): string {
  const pattern = matchedPattern(ctx) ?? (ctx.req as Labelled)[PROVIDER_ROUTE]?.pattern;
  if (pattern?.includes(':')) return pattern;
  return ctx.path.length > 256 ? `${ctx.path.slice(0, 256)}…` : ctx.path;
}
