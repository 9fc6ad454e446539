// A Koa API that accepts Latch access tokens through @latch/verify.
// Run from the repository root: LATCH_ISSUER=… LATCH_AUDIENCE=… PORT=4000 node examples/node-api/server.js
import Router from '@koa/router';
import { bearerProtocol, createVerifier, koaBearer, verifyUpgrade, VerifyError } from '@latch/verify';
import Koa from 'koa';
import { WebSocketServer } from 'ws';

const { LATCH_ISSUER, LATCH_AUDIENCE, LATCH_INTROSPECTION_CLIENT_ID, LATCH_INTROSPECTION_CLIENT_SECRET } = process.env;
const port = Number(process.env.PORT ?? 4000);
if (!LATCH_ISSUER || !LATCH_AUDIENCE || !(Number.isInteger(port) && port >= 0 && port < 65536)) {
  console.error("node-api: set LATCH_ISSUER (Latch's URL), LATCH_AUDIENCE (this API's resource identifier) and PORT");
  process.exit(1);
}

const verifier = createVerifier({
  issuer: LATCH_ISSUER,
  audience: LATCH_AUDIENCE,
  // Personal access tokens (lat_…) are not JWTs: only Latch can say whether they are live (RFC 7662).
  ...(LATCH_INTROSPECTION_CLIENT_ID && LATCH_INTROSPECTION_CLIENT_SECRET
    ? { introspection: { clientId: LATCH_INTROSPECTION_CLIENT_ID, clientSecret: LATCH_INTROSPECTION_CLIENT_SECRET } }
    : {}),
});

const router = new Router();
const signedIn = koaBearer(verifier); // any valid token; refusals are 401/403 problem+json

router.get('/health', (ctx) => {
  ctx.body = { status: 'ok' };
});

// Every key is always there (null when the token lacks the claim, [] for an absent list), so clients need no guessing.
router.get('/me', signedIn, (ctx) => {
  const { sub, email, is_superuser, roles, scopes, org_id, org_role } = ctx.state.auth;
  ctx.body = { id: sub, email: email ?? null, is_superuser, roles, scopes, org_id: org_id ?? null, org_role: org_role ?? null };
});

// The token says who calls; which rows are theirs is the app's own check (WHERE owner_id = id).
router.get('/items', signedIn, (ctx) => {
  ctx.body = { owner_id: ctx.state.auth.sub };
});

// is_superuser is issued with scope `roles`: a token asked without it is refused here.
router.get('/admin', koaBearer(verifier, { superuser: true }), (ctx) => {
  ctx.body = { ok: true };
});

router.get('/scoped', koaBearer(verifier, { scopes: ['read'] }), (ctx) => {
  ctx.body = { ok: true };
});

// The requirement depends on the path: a function of the request. An organization token
// (authorization request with `organization=<id>`) carries org_id and the caller's org_role.
router.get(
  '/orgs/:org_id/settings',
  koaBearer(verifier, (ctx) => ({ organization: ctx.params?.org_id, orgRoles: ['owner', 'admin'] })),
  (ctx) => {
    ctx.body = { org_id: ctx.state.auth.org_id, org_role: ctx.state.auth.org_role };
  },
);

const app = new Koa();
app.use(router.routes()).use(router.allowedMethods());
const server = app.listen(port, '127.0.0.1', () => console.log(`node-api listening on http://127.0.0.1:${port}`));

// Browsers cannot set headers on a WebSocket, so the token may also come as the subprotocol pair
// `bearer, <token>` (the server then selects `bearer`, never echoing the token) or in the query string.
const wss = new WebSocketServer({
  server,
  path: '/ws',
  handleProtocols: bearerProtocol,
  maxPayload: 4096, // this endpoint reads nothing from clients
});
wss.on('connection', (socket, req) => {
  socket.on('error', () => socket.terminate()); // a malformed frame ends this socket, not the process
  void greet(socket, req);
});
wss.on('error', (err) => {
  console.error(`node-api: ${err.message}`);
  process.exit(1);
});

/** @param {import('ws').WebSocket} socket @param {import('node:http').IncomingMessage} req */
async function greet(socket, req) {
  try {
    // The Authorization header, the subprotocol pair, ?access_token= or ?token=.
    const { auth } = await verifyUpgrade(verifier, req);
    socket.send(JSON.stringify({ id: auth.sub }));
  } catch (err) {
    // Accepted, then closed with 1008 (RFC 6455 §7.4.1 policy violation): a browser never sees
    // the status of a refused handshake, but every client sees a close code.
    if (err instanceof VerifyError) socket.close(1008, err.message.slice(0, 120));
    else socket.close(1011);
  }
}
