import type Koa from 'koa';

/**
 * A bounded name for the route that answered a request, for logs and metric labels: never the
 * raw path (unbounded, and it may carry identifiers). oidc-provider's middleware runs on Latch's
 * own context, so its route name (`ctx.oidc.route`: "token", "authorization", …) and its
 * router's pattern ("/auth/:uid") are read from the same context as @koa/router's.
 */
const matchedPattern = (ctx: Koa.Context): string | undefined => {
  const matched = (ctx as Koa.Context & { _matchedRoute?: string | RegExp })._matchedRoute;
  return matched === undefined ? undefined : String(matched);
};

const providerRoute = (ctx: Koa.Context): string | undefined => (ctx as Koa.Context & { oidc?: { route?: string } }).oidc?.route;

/**
 * `ctx.state[ROUTE_NAME]`: the name of an oidc-provider route answered without oidc-provider
 * (oidc/published-documents.ts serves the JWKS and discovery from kept bytes), the same name
 * oidc-provider gives it.
 */
export const ROUTE_NAME = Symbol('route name');

/** oidc-provider's route name ("token"), else @koa/router's matched pattern ("/interaction/:uid"), else "other". */
export function routeLabel(ctx: Koa.Context): string {
  return (ctx.state as Record<symbol, string | undefined>)[ROUTE_NAME] ?? providerRoute(ctx) ?? matchedPattern(ctx) ?? 'other';
}

/**
 * The request path for a log line, without the query string. On a route with parameters the
 * pattern is logged instead ("/interaction/:uid/login", "/auth/:uid"): an interaction uid is
 * also the value of an interaction cookie, and cookie values never go to the logs.
 */
export function loggablePath(ctx: Koa.Context): string {
  const pattern = matchedPattern(ctx);
  if (pattern?.includes(':')) return pattern;
  return ctx.path.length > 256 ? `${ctx.path.slice(0, 256)}…` : ctx.path;
}
