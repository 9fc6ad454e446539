/**
 * Mocha root hook (.mocharc.json `require`): after the whole run, fails when a database dump or a
 * server log of the run held a secret the run used (secrets-registry.ts), naming the kind, the
 * encoding and where — never the secret itself.
 */
import { findings, type Finding } from './secrets-registry.js';

/**
 * Known and open: oidc-provider's opaque artefacts (authorization codes, refresh tokens, device
 * codes) are the primary keys of `provider_state` as issued, so a dump of that table holds them.
 * Listed (and printed) rather than failing until the adapter stores a keyed hash of the id;
 * anything else found anywhere fails the run.
 */
const OPEN: ReadonlySet<string> = new Set(['code', 'refresh_token', 'device_code']);
const isOpen = (f: Finding) => OPEN.has(f.kind) && f.where.startsWith('table provider_state ');

export const mochaHooks = {
  afterAll(): void {
    const found = findings();
    const open = found.filter(isOpen);
    if (open.length) console.warn(`secrets scan: ${open.length} oidc-provider ids (${[...new Set(open.map((f) => f.kind))].join(', ')}) in provider_state as issued (open, see test/helpers/secrets-scan-hooks.ts)`);
    const failing = found.filter((f) => !isOpen(f));
    if (failing.length === 0) return;
    const lines = failing.map((f) => `${f.kind} (${f.prefix}…) ${f.encoding} in ${f.where}`);
    throw new Error(`secrets at rest in the clear (${failing.length}):\n  ${[...new Set(lines)].join('\n  ')}`);
  },
};
