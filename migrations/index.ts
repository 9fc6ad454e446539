import type { Knex } from 'knex';

import * as core from './20261123000000_core.js';
import * as accounts from './20261123010000_accounts.js';
import * as rateLimits from './20261123020000_rate_limits.js';
import * as rbac from './20261123030000_rbac.js';
import * as api from './20261123040000_api.js';
import * as partialIndexes from './20261206000000_provider_state_partial_indexes.js';
import * as settings from './20261206010000_settings.js';
import * as keysetIndexes from './20261206020000_keyset_indexes.js';
import * as federation from './20261207000000_federation.js';
import * as clientPar from './20261207100000_client_par.js';
import * as tokenExchange from './20261207200000_token_exchange.js';
import * as clientDpop from './20261207300000_client_dpop.js';
import * as mailQueue from './20261208000000_mail_queue.js';
import * as importedApiKeys from './20261208010000_imported_api_keys.js';
import * as backchannelLogout from './20261208020000_backchannel_logout.js';
import * as hashedTokenIds from './20261208030000_hashed_token_ids.js';

/** Every migration, in order. Knex records applied names in knex_migrations. */
export const migrations: Record<string, Knex.Migration> = {
  '20261123000000_core': core,
  '20261123010000_accounts': accounts,
  '20261123020000_rate_limits': rateLimits,
  '20261123030000_rbac': rbac,
  '20261123040000_api': api,
  '20261206000000_provider_state_partial_indexes': partialIndexes,
  '20261206010000_settings': settings,
  '20261206020000_keyset_indexes': keysetIndexes,
  '20261207000000_federation': federation,
  '20261207100000_client_par': clientPar,
  '20261207200000_token_exchange': tokenExchange,
  '20261207300000_client_dpop': clientDpop,
  '20261208000000_mail_queue': mailQueue,
  '20261208010000_imported_api_keys': importedApiKeys,
  '20261208020000_backchannel_logout': backchannelLogout,
  '20261208030000_hashed_token_ids': hashedTokenIds,
};
