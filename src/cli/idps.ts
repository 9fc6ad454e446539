import { CLI_ACTOR } from '../services/audit.js';
import type { CreateIdentityProviderInput } from '../services/identity-providers.js';
import { list, parse, required, UsageError, type Command } from './args.js';

const FLAGS = {
  kind: { type: 'string' },
  'client-id': { type: 'string' },
  'client-secret': { type: 'string' },
  'client-secret-stdin': { type: 'boolean' },
  issuer: { type: 'string' },
  'display-name': { type: 'string' },
  scope: { type: 'string', multiple: true },
  'allowed-domain': { type: 'string', multiple: true },
  link: { type: 'string' },
  'api-url': { type: 'string' },
  'web-url': { type: 'string' },
  disabled: { type: 'boolean' },
} as const;

type Values = { [K in keyof typeof FLAGS]?: (typeof FLAGS)[K] extends { multiple: true } ? string[] : (typeof FLAGS)[K]['type'] extends 'boolean' ? boolean : string };

/** Standard input, whole, without its final line break (`printf %s "$SECRET" | latch …`). */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/**
 * The client secret from `--client-secret` or, with `--client-secret-stdin`, from standard input:
 * a secret on the command line is visible to every user of the machine (`ps`) and kept in shell
 * history, as `docker login --password-stdin` avoids.
 */
async function clientSecretOf(values: Values, usage: string): Promise<string | undefined> {
  if (!values['client-secret-stdin']) return values['client-secret'];
  if (values['client-secret'] !== undefined) throw new UsageError(`give --client-secret or --client-secret-stdin, not both (usage: latch ${usage})`);
  const secret = await readStdin();
  if (!secret) throw new UsageError('--client-secret-stdin: standard input is empty');
  return secret;
}

/** The settings the flags give; an omitted flag is undefined (update keeps that field). */
function settingsOf(values: Values) {
  return {
    kind: values.kind,
    clientId: values['client-id'],
    issuer: values.issuer,
    displayName: values['display-name'],
    // `--scope "openid email"` (one space-separated string) or repeated.
    scopes: values.scope ? list(values.scope).flatMap((s) => s.split(/\s+/)).filter(Boolean) : undefined,
    // Repeatable; `--allowed-domain ''` clears the list on update.
    allowedDomains: values['allowed-domain'] ? list(values['allowed-domain']) : undefined,
    link: values.link,
    apiUrl: values['api-url'],
    webUrl: values['web-url'],
  };
}

const CREATE_USAGE =
  'idps create --name NAME --kind oidc|github --client-id ID (--client-secret SECRET | --client-secret-stdin) [--issuer URL] [--display-name TEXT] [--scope "S …"] [--allowed-domain D]... [--link auto|ask|never] [--api-url URL] [--web-url URL] [--disabled]';

/** `latch idps …`: upstream identity providers (sign in with GitHub, Google, any OpenID Connect provider). */
export const IDP_COMMANDS: Record<string, Command> = {
  'idps create': {
    usage: CREATE_USAGE,
    async run({ args, services }) {
      const u = this.usage;
      const { values, positionals } = parse(args, { name: { type: 'string' }, ...FLAGS }, u);
      if (positionals.length) throw new UsageError(`unexpected argument ${positionals[0]} (usage: latch ${u})`);
      const input: CreateIdentityProviderInput = {
        ...settingsOf(values),
        name: required(values.name, 'name', u),
        kind: required(values.kind, 'kind', u),
        clientId: required(values['client-id'], 'client-id', u),
        clientSecret: required(await clientSecretOf(values, u), 'client-secret', u),
        enabled: !values.disabled,
      };
      // Nothing is fetched from the issuer here: discovery happens at the first sign-in.
      return services.identityProviders.describe(await services.identityProviders.create(input, CLI_ACTOR));
    },
  },
  'idps list': {
    usage: 'idps list',
    async run({ services }) {
      return (await services.identityProviders.list()).map(services.identityProviders.describe);
    },
  },
  'idps update': {
    usage: 'idps update NAME [--kind oidc|github] [--client-id ID] [--client-secret SECRET | --client-secret-stdin] [--issuer URL] [--display-name TEXT] [--scope "S …"] [--allowed-domain D]... [--link auto|ask|never] [--api-url URL] [--web-url URL] [--enabled|--disabled]',
    async run({ args, services }) {
      const u = this.usage;
      const { values, positionals } = parse(args, { ...FLAGS, enabled: { type: 'boolean' } }, u);
      if (positionals.length !== 1) throw new UsageError(`expected exactly one provider name (usage: latch ${u})`);
      if (values.enabled && values.disabled) throw new UsageError(`give --enabled or --disabled, not both (usage: latch ${u})`);
      const enabled = values.enabled ? true : values.disabled ? false : undefined;
      const updated = await services.identityProviders.update(positionals[0]!, { ...settingsOf(values), clientSecret: await clientSecretOf(values, u), enabled }, CLI_ACTOR);
      return services.identityProviders.describe(updated);
    },
  },
  'idps delete': {
    usage: 'idps delete NAME',
    async run({ args, services }) {
      const { positionals } = parse(args, {}, this.usage);
      if (positionals.length !== 1) throw new UsageError(`expected exactly one provider name (usage: latch ${this.usage})`);
      await services.identityProviders.delete(positionals[0]!, CLI_ACTOR);
      return { name: positionals[0], deleted: true };
    },
  },
};
