/**
 * Mocha root hook (.mocharc.json `require`): after the whole run, fails when a database dump or a
 * server log of the run held a secret the run used (secrets-registry.ts), naming the kind, the
 * encoding and where — never the secret itself.
 */
import { findings } from './secrets-registry.js';

export const mochaHooks = {
  afterAll(): void {
    const found = findings();
    if (found.length === 0) return;
    const lines = found.map((f) => `${f.kind} (${f.prefix}…) ${f.encoding} in ${f.where}`);
    throw new Error(`secrets at rest in the clear (${found.length}):\n  ${[...new Set(lines)].join('\n  ')}`);
  },
};
