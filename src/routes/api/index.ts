import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import Router from '@koa/router';
import type Koa from 'koa';

import type { Config } from '../../config/index.js';
import type { Db } from '../../db/knex.js';
import type { Logger } from '../../lib/logger.js';
import { bearerAuth } from '../../middleware/api-auth.js';
import { createBodyValidators, loadOpenApi } from '../../middleware/api-body.js';
import { problems, ProblemError } from '../../middleware/api-problem.js';
import type { OutageCheck } from '../../db/outage.js';
import type { Oidc } from '../../oidc/provider.js';
import type { Services } from '../../services/index.js';
import { apiAudience } from '../../services/bootstrap.js';
import { auditEventRoutes } from './audit-events.js';
import { clientRoutes } from './clients.js';
import type { ApiDeps } from './common.js';
import { identityProviderRoutes } from './identity-providers.js';
import { keyRoutes } from './keys.js';
import { meRoutes } from './me.js';
import { organizationRoutes } from './organizations.js';
import { resourceRoutes } from './resources.js';
import { roleRoutes } from './roles.js';
import { userRoutes } from './users.js';


const swaggerDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

const DOCS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Latch admin API</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script>
</body>
</html>
`;

/** No request leaves for another host: the spec comes from here, the validator badge is off. */
const DOCS_INIT = `window.addEventListener('load', function () {
  window.ui = SwaggerUIBundle({ url: '/api/openapi.yaml', dom_id: '#swagger-ui', validatorUrl: null, deepLinking: true });
});
`;

/** The docs page runs Swagger UI's script from this origin: the only place scripts are allowed. */
const DOCS_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const ASSETS: Record<string, { file: string; type: string }> = {
  'swagger-ui.css': { file: 'swagger-ui.css', type: 'text/css; charset=utf-8' },
  'swagger-ui-bundle.js': { file: 'swagger-ui-bundle.js', type: 'text/javascript; charset=utf-8' },
};

/**
 * Latch's own REST API under /api: the contract (`/api/openapi.yaml`), its rendering
 * (`/api/docs`) and the admin/account API (`/api/v1`, bearer tokens for `${ISSUER}/api`).
 */
export function apiRoutes(deps: { config: Config; db: Db; logger: Logger; services: Services; oidc: Oidc; outage: OutageCheck }): Router {
  const { config, services, oidc } = deps;
  const spec = loadOpenApi();
  const api: ApiDeps = {
    ...deps,
    mail: services.accountMail,
    auditEvents: services.audit,
    bodies: createBodyValidators(spec.doc),
  };
  const assets = new Map(Object.entries(ASSETS).map(([name, a]) => [name, { body: readFileSync(join(swaggerDir, a.file)), type: a.type }]));

  const docs = new Router({ prefix: '/api' });
  docs.get('/openapi.yaml', (ctx) => {
    ctx.type = 'application/yaml';
    ctx.set('Cache-Control', 'no-cache');
    ctx.body = spec.bytes;
  });
  docs.get('/docs', (ctx) => {
    ctx.set('Content-Security-Policy', DOCS_CSP);
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = DOCS_HTML;
  });
  docs.get('/docs/:asset', (ctx) => {
    const name = ctx.params.asset!;
    const asset = name === 'init.js' ? { body: DOCS_INIT, type: 'text/javascript; charset=utf-8' } : assets.get(name);
    if (!asset) return;
    ctx.set('Cache-Control', 'public, max-age=3600');
    ctx.type = asset.type;
    ctx.body = asset.body;
  });

  const v1 = new Router({ prefix: '/api/v1' });
  v1.use(problems({ logger: deps.logger, outage: deps.outage }));
  v1.use(bearerAuth({ audience: apiAudience(config.issuer), verify: (token) => oidc.verifyAccessToken(token), accounts: services.accounts, personalTokens: services.personalTokens, limits: services.limits, dpop: { check: (proof, expected) => oidc.checkDpopProof(proof, expected), issuer: config.issuer } }));
  // No resource id contains NUL (PostgreSQL text cannot even hold one): such a path names nothing.
  v1.use((ctx, next) => {
    if (/%00/.test(ctx.path) || ctx.path.includes('\u0000')) throw new ProblemError(404, 'not-found', 'there is no such resource');
    return next();
  });
  const groups = [userRoutes(api), clientRoutes(api), resourceRoutes(api), keyRoutes(api), roleRoutes(api), organizationRoutes(api), meRoutes(api), auditEventRoutes(api), identityProviderRoutes(api)];
  for (const group of groups) v1.use(group.routes());
  // Anything else under /api/v1: 405 for a known path with another method, else 404 (as problems).
  v1.all('/{*rest}', (ctx: Koa.Context) => {
    const allowed = new Set(v1.match(ctx.path, ctx.method).path.filter((l) => l.methods.length && !String(l.path).endsWith('{*rest}')).flatMap((l) => l.methods));
    if (allowed.size) throw new ProblemError(405, 'method-not-allowed', `${ctx.method} is not allowed here`, { headers: { Allow: [...allowed].join(', ') } });
    throw new ProblemError(404, 'not-found', 'there is no such endpoint');
  });

  const router = new Router();
  router.use(docs.routes());
  router.use(v1.routes());
  return router;
}

/** Every operation of the API as `METHOD /path/{param}` (the OpenAPI test compares them with openapi.yaml). */
export function apiOperations(router: Router): string[] {
  const ops = new Set<string>();
  for (const layer of router.stack) {
    if (!layer.methods.length || String(layer.path).endsWith('{*rest}')) continue;
    const path = String(layer.path).replace(/:([A-Za-z_]+)/g, '{$1}');
    for (const m of layer.methods) if (m !== 'HEAD') ops.add(`${m} ${path}`);
  }
  return [...ops].sort();
}
