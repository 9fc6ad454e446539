/**
 * Host names of this machine as a URL's `hostname` spells them (IPv6 in brackets). Where plain
 * http is allowed because nothing leaves the machine: an issuer or a relying party under
 * development, a local upstream provider in tests.
 */
const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(['localhost', '127.0.0.1', '[::1]']);

/** True for `localhost`, `127.0.0.1` and `[::1]` (a URL's `hostname`). */
export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname.toLowerCase());
}
