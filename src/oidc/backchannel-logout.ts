import type { LogoutTokenSigner } from '../services/backchannel-logout.js';
import type { Oidc } from './provider.js';
import { signLogoutToken } from './provider-internals.js';

/**
 * Signs each attempt's logout token with the provider current at that moment (keys rotate), for
 * the client as registered now: a client since disabled, deleted or unregistered from
 * back-channel logout gets nothing.
 */
export function logoutTokenSigner(oidc: Pick<Oidc, 'provider'>): LogoutTokenSigner {
  return async ({ clientId, sub, sid }) => {
    const { provider } = oidc;
    const client = await provider.Client.find(clientId);
    const uri = client?.backchannelLogoutUri;
    if (!client || typeof uri !== 'string') return undefined;
    return { uri, token: await signLogoutToken(provider, client, sub, sid) };
  };
}
