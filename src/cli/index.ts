import { readFile } from 'node:fs/promises';

import { ConfigError, loadConfig, type Config } from '../config/index.js';
import { connectDatabase } from '../db/connect.js';
import { openDatabase } from '../db/knex.js';
import { migrateLatest } from '../db/migrate.js';
import { createLogger } from '../lib/logger.js';
import type { ClientRecord } from '../repositories/clients.js';
import { checkEmail, describeAccount } from '../services/accounts.js';
import { CLI_ACTOR } from '../services/audit.js';
import { apiAudience } from '../services/bootstrap.js';
import { describeClient } from '../services/clients.js';
import { AppError, ConflictError, NotFoundError, ValidationError } from '../errors/index.js';
import { createServices, type Services } from '../services/index.js';
import { describeResource } from '../services/resources.js';
import { bool, expandToggles, integer, list, parse, required, UsageError, type Command, type Handler } from './args.js';
import { IDP_COMMANDS } from './idps.js';
import { IMPORT_COMMANDS } from './import.js';
import { ORG_COMMANDS, ROLE_COMMANDS } from './rbac.js';

type ClientPatch = Parameters<Services['clients']['update']>[1];
/** One `clients update` flag: a string, a repeatable list (replaces the whole list) or an on/off toggle. */
type UpdateFlag = { kind: 'text' | 'list'; meta: string; field: keyof ClientPatch; clearable?: true } | { kind: 'toggle'; field: keyof ClientPatch };

/**
 * `latch clients update` sets what `PATCH /api/v1/clients/{id}` sets, through the same service
 * call: one line per flag. As there, the authentication method, public/confidential and the
 * secret do not change (a new client is registered for those).
 */
const CLIENT_UPDATE_FLAGS: Record<string, UpdateFlag> = {
  name: { kind: 'text', meta: 'N', field: 'name' },
  grant: { kind: 'list', meta: 'G', field: 'grants' },
  'redirect-uri': { kind: 'list', meta: 'U', field: 'redirectUris' },
  'post-logout-redirect-uri': { kind: 'list', meta: 'U', field: 'postLogoutRedirectUris' },
  scope: { kind: 'list', meta: 'S', field: 'scopes' },
  resource: { kind: 'list', meta: 'URI', field: 'resources' },
  'web-origin': { kind: 'list', meta: 'O', field: 'webOrigins' },
  'jwks-uri': { kind: 'text', meta: 'U', field: 'jwksUri', clearable: true },
  'exchange-subject-audience': { kind: 'list', meta: 'URI', field: 'exchangeSubjectAudiences' },
  'first-party': { kind: 'toggle', field: 'firstParty' },
  'require-par': { kind: 'toggle', field: 'requirePar' },
  'require-dpop': { kind: 'toggle', field: 'requireDpop' },
  'backchannel-logout-uri': { kind: 'text', meta: 'URL', field: 'backchannelLogoutUri', clearable: true },
};

const COMMANDS: Record<string, Command> = {
  migrate: {
    usage: 'migrate',
    raw: true,
    async run({ db }) {
      return { applied: await migrateLatest(db) };
    },
  },
  'users create': {
    usage: 'users create --email E --password P [--name N] [--superuser] [--email-verified] [--allow-weak-password]',
    async run({ args, services }) {
      const u = this.usage;
      const { values } = parse(args, { email: { type: 'string' }, password: { type: 'string' }, name: { type: 'string' }, superuser: { type: 'boolean' }, 'email-verified': { type: 'boolean' }, 'allow-weak-password': { type: 'boolean' } }, u);
      const account = await services.accounts.provision({ email: required(values.email, 'email', u), password: required(values.password, 'password', u), name: values.name, superuser: values.superuser ?? false, emailVerified: values['email-verified'] ?? false, allowWeakPassword: values['allow-weak-password'] ?? false }, CLI_ACTOR);
      return describeAccount(account);
    },
  },
  'users list': {
    usage: 'users list',
    async run({ services }) {
      return (await services.accounts.list()).map(describeAccount);
    },
  },
  'users update': {
    usage: 'users update --email E [--active true|false] [--superuser true|false] [--name N] [--email-verified true|false]',
    async run({ args, services }) {
      const u = this.usage;
      const { values } = parse(args, { email: { type: 'string' }, active: { type: 'string' }, superuser: { type: 'string' }, name: { type: 'string' }, 'email-verified': { type: 'string' } }, u);
      const email = required(values.email, 'email', u);
      const account = await services.accounts.findByEmail(email);
      if (!account) throw new NotFoundError(`account ${email}`);
      const updated = await services.accounts.adminUpdate(account.id, { active: bool(values.active, 'active'), superuser: bool(values.superuser, 'superuser'), name: values.name, emailVerified: bool(values['email-verified'], 'email-verified') }, CLI_ACTOR);
      return describeAccount(updated);
    },
  },
  'users import': {
    usage: 'users import FILE',
    async run({ args, services }) {
      const file = onePositional(args, this.usage);
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        throw new UsageError(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      }
      const report = await services.accounts.importLines(text, CLI_ACTOR);
      return report;
    },
  },
  ...IMPORT_COMMANDS,
  'users invite': {
    usage: 'users invite --email E',
    async run({ args, services, config }) {
      const u = this.usage;
      const { values } = parse(args, { email: { type: 'string' } }, u);
      const email = checkEmail(required(values.email, 'email', u));
      if (config.registration === 'closed') throw new UsageError('REGISTRATION is closed: an invitation could not be used (set REGISTRATION=invite or open)');
      if (await services.accounts.findByEmail(email)) throw new ConflictError(`an account with email ${email} already exists`);
      const invitation = await services.accountMail.sendInvitation(email, CLI_ACTOR);
      return { email: invitation.email, invitation_url: invitation.url, expires_at: invitation.expiresAt };
    },
  },
  'resources create': {
    usage: 'resources create --identifier URI [--scope S]... [--ttl SECONDS] [--alg RS256|ES256|EdDSA] [--name N] [--rbac]',
    async run({ args, services }) {
      const u = this.usage;
      const { values } = parse(args, { identifier: { type: 'string' }, scope: { type: 'string', multiple: true }, ttl: { type: 'string' }, alg: { type: 'string' }, name: { type: 'string' }, rbac: { type: 'boolean' } }, u);
      const r = await services.resources.create({ identifier: required(values.identifier, 'identifier', u), scopes: list(values.scope), ttl: integer(values.ttl, 'ttl'), alg: values.alg, name: values.name, rbac: values.rbac ?? false }, CLI_ACTOR);
      return describeResource(r);
    },
  },
  'resources list': {
    usage: 'resources list',
    async run({ services }) {
      return (await services.resources.list()).map(describeResource);
    },
  },
  ...ROLE_COMMANDS,
  ...ORG_COMMANDS,
  'clients create': {
    usage:
      'clients create --name N [--grant G]... [--redirect-uri U]... [--post-logout-redirect-uri U]... [--scope S]... [--resource URI]... [--public] [--first-party] [--web-origin O]... [--auth-method client_secret_basic|client_secret_post|private_key_jwt|none] [--jwks-uri U] [--exchange-subject-audience URI]... [--secret] [--require-par] [--require-dpop] [--backchannel-logout-uri URL]',
    async run({ args, services, note }) {
      const u = this.usage;
      const { values } = parse(
        args,
        {
          name: { type: 'string' },
          grant: { type: 'string', multiple: true },
          'redirect-uri': { type: 'string', multiple: true },
          'post-logout-redirect-uri': { type: 'string', multiple: true },
          scope: { type: 'string', multiple: true },
          resource: { type: 'string', multiple: true },
          public: { type: 'boolean' },
          'first-party': { type: 'boolean' },
          'web-origin': { type: 'string', multiple: true },
          'auth-method': { type: 'string' },
          'jwks-uri': { type: 'string' },
          'exchange-subject-audience': { type: 'string', multiple: true },
          secret: { type: 'boolean' },
          'require-par': { type: 'boolean' },
          'require-dpop': { type: 'boolean' },
          'backchannel-logout-uri': { type: 'string' },
        },
        u,
      );
      const created = await services.clients.create({
        name: required(values.name, 'name', u),
        grants: list(values.grant),
        redirectUris: list(values['redirect-uri']),
        postLogoutRedirectUris: list(values['post-logout-redirect-uri']),
        scopes: list(values.scope),
        resources: list(values.resource),
        // Unset: public for a device_code client (unless --secret), confidential otherwise.
        isPublic: values.public,
        secret: values.secret,
        requirePar: values['require-par'] ?? false,
        requireDpop: values['require-dpop'] ?? false,
        firstParty: values['first-party'] ?? false,
        webOrigins: list(values['web-origin']),
        authMethod: values['auth-method'],
        jwksUri: values['jwks-uri'],
        exchangeSubjectAudiences: list(values['exchange-subject-audience']),
        backchannelLogoutUri: values['backchannel-logout-uri'],
      }, CLI_ACTOR);
      // A browser app served from another origin calls the token endpoint cross-origin: without
      // its origin registered, CORS refuses it (the browser never hands it the response).
      if (created.client.isPublic && created.client.webOrigins.length === 0 && created.client.grantTypes.includes('authorization_code')) {
        note('no --web-origin: a browser app on another origin cannot reach the token endpoint (CORS) until its origin is registered with --web-origin');
      }
      return { ...describeCliClient(created.client), ...(created.client_secret ? { client_secret: created.client_secret } : {}) };
    },
  },
  'clients update': {
    usage: `clients update CLIENT_ID ${Object.entries(CLIENT_UPDATE_FLAGS).map(([flag, f]) => (f.kind === 'toggle' ? `[--[no-]${flag}]` : f.kind === 'list' ? `[--${flag} ${f.meta}]...` : `[--${flag} ${f.meta}]`)).join(' ')}`,
    async run({ args, services }) {
      const u = this.usage;
      const toggles = Object.keys(CLIENT_UPDATE_FLAGS).filter((flag) => CLIENT_UPDATE_FLAGS[flag]!.kind === 'toggle');
      const options = Object.fromEntries(Object.entries(CLIENT_UPDATE_FLAGS).map(([flag, f]) => [flag, { type: 'string' as const, multiple: f.kind === 'list' }]));
      const { values, positionals } = parse(expandToggles(args, toggles), options, u);
      if (positionals.length !== 1) throw new UsageError(`expected exactly one CLIENT_ID (usage: latch ${u})`);
      const patch: ClientPatch = {};
      for (const [flag, f] of Object.entries(CLIENT_UPDATE_FLAGS)) {
        const value = values[flag];
        if (value === undefined) continue;
        // A clearable text flag given '' removes the value (`--jwks-uri ''`), as null does in the API.
        (patch as Record<string, unknown>)[f.field] = f.kind === 'toggle' ? bool(value, flag) : f.kind === 'list' ? list(value) : f.clearable && value === '' ? null : value;
      }
      if (Object.keys(patch).length === 0) throw new UsageError(`nothing to change (usage: latch ${u})`);
      const updated = await services.clients.update(positionals[0]!, patch, CLI_ACTOR);
      if (!updated) throw new NotFoundError(`client ${positionals[0]!}`);
      return describeCliClient(updated);
    },
  },
  'clients list': {
    usage: 'clients list',
    async run({ services }) {
      return (await services.clients.list()).map(describeCliClient);
    },
  },
  'clients disable': { usage: 'clients disable CLIENT_ID', run: (c) => setEnabled(c, false, 'clients disable CLIENT_ID') },
  'clients enable': { usage: 'clients enable CLIENT_ID', run: (c) => setEnabled(c, true, 'clients enable CLIENT_ID') },
  'clients delete': {
    usage: 'clients delete CLIENT_ID',
    async run({ args, services }) {
      const id = onePositional(args, this.usage);
      if (!(await services.clients.delete(id, CLI_ACTOR))) throw new NotFoundError(`client ${id}`);
      return { client_id: id, deleted: true };
    },
  },
  ...IDP_COMMANDS,
  'issuer show': {
    usage: 'issuer show',
    async run({ config }) {
      return { issuer: config.issuer, api_resource: apiAudience(config.issuer) };
    },
  },
  'issuer set': {
    usage: 'issuer set URL',
    ownIssuer: true,
    async run({ args, services, env }) {
      const url = onePositional(args, this.usage);
      let issuer: string;
      try {
        // The same rules as ISSUER itself (absolute http(s) URL, https in production).
        issuer = loadConfig({ ...env, ISSUER: url }).issuer;
      } catch (err) {
        if (err instanceof ConfigError) throw new UsageError(`${url} cannot be the issuer: ${err.message} (usage: latch ${this.usage})`);
        throw err;
      }
      return services.bootstrap.changeIssuer(issuer);
    },
  },
  'keys list': {
    usage: 'keys list',
    async run({ services }) {
      return services.keys.list();
    },
  },
  'keys rotate': {
    usage: 'keys rotate',
    async run({ services }) {
      const kids = await services.keys.rotate(CLI_ACTOR);
      return { rotated: kids, keys: await services.keys.list() };
    },
  },
  'keys retire': {
    usage: 'keys retire KID',
    async run({ args, services }) {
      const kid = onePositional(args, this.usage);
      await services.keys.retire(kid, CLI_ACTOR);
      return { retired: kid };
    },
  },
};

function onePositional(args: string[], usage: string): string {
  const { positionals } = parse(args, {}, usage);
  if (positionals.length !== 1) throw new UsageError(`expected exactly one argument (usage: latch ${usage})`);
  return positionals[0]!;
}

async function setEnabled({ args, services }: Parameters<Handler>[0], enabled: boolean, usage: string) {
  const id = onePositional(args, usage);
  if (!(await services.clients.setEnabled(id, enabled, CLI_ACTOR))) throw new NotFoundError(`client ${id}`);
  return { client_id: id, enabled };
}

const describeCliClient = (c: ClientRecord) => ({ client_id: c.id, ...describeClient(c) });

function help(): string {
  return ['Usage: latch <command> [options]', '', 'Commands:', ...Object.values(COMMANDS).map((c) => `  latch ${c.usage}`), '', 'Acts on the database named by DATABASE_URL (default: SQLite file data/latch.sqlite).'].join('\n');
}

/** Runs one CLI invocation; returns the exit code. Output: JSON on stdout, one error line on stderr. */
export async function runCli(argv: string[], env: Record<string, string | undefined> = process.env, out: { stdout: (s: string) => void; stderr: (s: string) => void } = { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) }): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === 'help' || argv[0] === '-h') {
    out.stdout(`${help()}\n`);
    return argv.length === 0 ? 2 : 0;
  }
  // Commands are one to three words ("migrate", "users create", "orgs members add"): the longest match wins.
  const key = [3, 2, 1].map((n) => argv.slice(0, n).join(' ')).find((k) => COMMANDS[k]) ?? argv[0]!;
  const command = COMMANDS[key];
  if (!command) {
    out.stderr(`latch: unknown command "${argv.slice(0, 2).join(' ')}" (run \`latch --help\`)\n`);
    return 2;
  }
  const args = argv.slice(key.split(' ').length);
  // A command whose usage is its name alone takes nothing: a flag given to it is a mistake too.
  if (command.usage === key && args.length > 0) {
    out.stderr(`latch: ${args[0]!.startsWith('-') ? 'unknown flag' : 'unexpected argument'} ${args[0]!.split('=')[0]} (usage: latch ${command.usage})\n`);
    return 2;
  }

  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      out.stderr(`latch: invalid configuration: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  const db = openDatabase(config.database);
  try {
    await connectDatabase(db, config.database);
    const logger = createLogger('error');
    let services = createServices({ db, config, logger });
    if (!command.raw) {
      await migrateLatest(db);
      if (!command.ownIssuer) {
        // Without ISSUER the command acts for the issuer recorded in the database (API resource,
        // mailed links); with it, ISSUER must be that issuer. The first command records one.
        const configured = env.ISSUER?.trim() ? config.issuer : undefined;
        const issuer = await services.bootstrap.settleIssuer(configured, config.issuer);
        if (issuer !== config.issuer) {
          config = loadConfig({ ...env, ISSUER: issuer });
          services = createServices({ db, config, logger });
        }
      }
      await services.bootstrap.verifySecret();
      // The API's resource server exists from the first command on, server started or not.
      if (!command.ownIssuer) await services.bootstrap.seed(config.issuer);
    }
    const result = await command.run.call(command, { args, services, db, config, env, note: (line) => out.stderr(`latch: note: ${line}\n`) });
    // `ISSUER=… latch migrate` records (or must match) the issuer too, once the table exists.
    if (command.raw && env.ISSUER?.trim()) await services.bootstrap.settleIssuer(config.issuer, config.issuer);
    out.stdout(`${JSON.stringify(result, null, 2)}\n`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      out.stderr(`latch: ${err.message}\n`);
      return 2;
    }
    if (err instanceof ValidationError) {
      out.stderr(`latch: --${err.field} ${err.detail}\n`);
      return 1;
    }
    if (err instanceof AppError && err.expose) {
      out.stderr(`latch: ${err.message}\n`);
      return 1;
    }
    out.stderr(`latch: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}\n`);
    return 1;
  } finally {
    await db.destroy();
  }
}
