import type { ClientRecord } from '../repositories/clients.js';
import { isLoopbackHost } from '../lib/loopback.js';
import { absoluteUri } from '../lib/validate.js';
import { ValidationError } from './errors.js';

/**
 * A client's OIDC Back-Channel Logout 1.0 registration (§2.2), in one place for every path that
 * registers or changes a client: validation, the stored record, oidc-provider's metadata and
 * the public shape (CLI JSON, admin API).
 */
export interface BackchannelLogoutInput {
  /** null removes it. */
  backchannelLogoutUri?: string | null | undefined;
  backchannelLogoutSessionRequired?: boolean | undefined;
}

/**
 * §2.2: an absolute URL without a fragment; https, except http to this machine (127.0.0.1,
 * localhost) outside production, where a relying party under development listens.
 */
export function checkBackchannelLogoutUri(value: string, production: boolean): string {
  absoluteUri('backchannel-logout-uri', value);
  const url = new URL(value);
  if (url.hash || value.includes('#')) throw new ValidationError('backchannel-logout-uri', 'must not contain a fragment');
  if (url.protocol === 'https:') return value;
  if (url.protocol === 'http:' && !production && isLoopbackHost(url.hostname)) return value;
  throw new ValidationError('backchannel-logout-uri', production ? 'must be an https URL' : 'must be an https URL (or http://127.0.0.1 / http://localhost outside production)');
}

/** The stored fields for validated input; `existing` supplies what the input leaves out. */
export function backchannelLogoutRegistration(input: BackchannelLogoutInput, production: boolean, existing?: Pick<ClientRecord, 'backchannelLogoutUri' | 'backchannelLogoutSessionRequired'>): Required<Pick<ClientRecord, 'backchannelLogoutUri' | 'backchannelLogoutSessionRequired'>> {
  const uri = input.backchannelLogoutUri === undefined ? (existing?.backchannelLogoutUri ?? null) : input.backchannelLogoutUri;
  return {
    backchannelLogoutUri: uri === null || uri === '' ? null : checkBackchannelLogoutUri(uri, production),
    backchannelLogoutSessionRequired: input.backchannelLogoutSessionRequired ?? existing?.backchannelLogoutSessionRequired ?? true,
  };
}

/** The registration under its metadata names (CLI JSON, admin API, oidc-provider). */
export const backchannelLogoutMetadata = (c: Pick<ClientRecord, 'backchannelLogoutUri' | 'backchannelLogoutSessionRequired'>) => ({
  backchannel_logout_uri: c.backchannelLogoutUri ?? null,
  backchannel_logout_session_required: c.backchannelLogoutSessionRequired ?? true,
});

/** oidc-provider's metadata: the URI only when there is one (it validates what it is given). */
export function backchannelLogoutProviderMetadata(c: Pick<ClientRecord, 'backchannelLogoutUri' | 'backchannelLogoutSessionRequired'>): Record<string, unknown> {
  return c.backchannelLogoutUri ? { backchannel_logout_uri: c.backchannelLogoutUri, backchannel_logout_session_required: c.backchannelLogoutSessionRequired ?? true } : {};
}
