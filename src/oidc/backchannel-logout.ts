import type { LogoutTokenSigner } from '../services/backchannel-logout.js';
import type { Oidc } from './provider.js';
import { signLogoutToken } from './provider-internals.js';

/**
 * Signs each attempt's logout token with the provider current at that moment (keys rotate), for
 * the client as registered now: a client since disabled, deleted or unregistered from
 * back-channel logout gets nothing.
 */
export function logoutTokenSigner(oidc: Pick<Oidc, 'provider'>, clients: { forget(id: string): void }): LogoutTokenSigner {
  return async ({ clientId, sub, sid }) => {
    const { provider } = oidc;
    let client = await provider.Client.find(clientId);
    if (typeof client?.backchannelLogoutUri !== 'string') {
      // The row was queued because the database said the client has a URI: a cache the change
      // feed has not cleared yet (registered a moment ago, perhaps by another process) must not
      // drop it. Asked again from the database before giving up.
      clients.forget(clientId);
      client = await provider.Client.find(clientId);
    }
    const uri = client?.backchannelLogoutUri;
    if (!client || typeof uri !== 'string') return undefined;
    return { uri, token: await signLogoutToken(provider, client, sub, sid) };
  };
}
