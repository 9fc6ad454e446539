import { randomUUID } from 'node:crypto';

import type { Knex } from 'knex';

/** The built-in organization roles: they exist from the start, with no permission on any API. */
export const BUILTIN_ORG_ROLES: { name: string; description: string }[] = [
  { name: 'owner', description: 'Everything, including deleting the organization and managing owners' },
  { name: 'admin', description: 'Manages members, invitations and settings' },
  { name: 'member', description: 'Uses the organization' },
  { name: 'viewer', description: 'Read-only' },
];

/**
 * Roles and organizations: global roles (assigned to accounts and machine clients), organization
 * roles (held through a membership), the permissions (resource + scope) each role carries,
 * organizations with members and e-mailed invitations, personal access tokens, and the RBAC flag
 * of a resource server. A member or role holder is an account or a client: two nullable foreign
 * keys, so deleting either removes what it held.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('resource_servers', (t) => {
    t.boolean('rbac').notNullable().defaultTo(false).comment('scopes are granted only when the subject\'s roles permit them');
  });

  await knex.schema.createTable('roles', (t) => {
    t.string('id', 64).primary();
    t.string('kind', 16).notNullable().comment('global (assigned directly) or organization (held through a membership)');
    t.string('name', 64).notNullable().comment('unique per kind');
    t.string('description', 255).nullable();
    t.boolean('builtin').notNullable().defaultTo(false).comment('owner, admin, member, viewer: cannot be deleted');
    t.string('created_at', 32).notNullable();
    t.string('updated_at', 32).notNullable();
    t.unique(['kind', 'name'], { indexName: 'roles_kind_name' });
  });

  await knex.schema.createTable('role_permissions', (t) => {
    t.string('role_id', 64).notNullable().references('id').inTable('roles').onDelete('CASCADE');
    t.string('resource_id', 64).notNullable().references('id').inTable('resource_servers').onDelete('CASCADE');
    t.string('scope', 255).notNullable();
    t.primary(['role_id', 'resource_id', 'scope']);
    t.index(['resource_id'], 'role_permissions_resource');
  });

  await knex.schema.createTable('role_assignments', (t) => {
    t.bigIncrements('id').primary();
    t.string('role_id', 64).notNullable().references('id').inTable('roles').onDelete('CASCADE');
    t.string('account_id', 64).nullable().references('id').inTable('accounts').onDelete('CASCADE');
    t.string('client_id', 128).nullable().references('id').inTable('clients').onDelete('CASCADE');
    t.string('created_at', 32).notNullable();
    t.unique(['role_id', 'account_id'], { indexName: 'role_assignments_account' });
    t.unique(['role_id', 'client_id'], { indexName: 'role_assignments_client' });
    t.index(['account_id'], 'role_assignments_by_account');
    t.index(['client_id'], 'role_assignments_by_client');
  });

  await knex.schema.createTable('organizations', (t) => {
    t.string('id', 64).primary().comment('UUID: the org_id claim');
    t.string('name', 255).notNullable();
    t.string('slug', 64).notNullable().unique();
    t.string('created_by', 128).nullable().comment('account id, or "cli"');
    t.string('created_at', 32).notNullable();
    t.string('updated_at', 32).notNullable();
  });

  await knex.schema.createTable('organization_members', (t) => {
    t.bigIncrements('id').primary();
    t.string('organization_id', 64).notNullable().references('id').inTable('organizations').onDelete('CASCADE');
    t.string('account_id', 64).nullable().references('id').inTable('accounts').onDelete('CASCADE');
    t.string('client_id', 128).nullable().references('id').inTable('clients').onDelete('CASCADE');
    t.string('role_id', 64).notNullable().references('id').inTable('roles').comment('an organization role');
    t.string('created_at', 32).notNullable();
    t.string('updated_at', 32).notNullable();
    t.unique(['organization_id', 'account_id'], { indexName: 'organization_members_account' });
    t.unique(['organization_id', 'client_id'], { indexName: 'organization_members_client' });
    t.index(['account_id'], 'organization_members_by_account');
    t.index(['client_id'], 'organization_members_by_client');
  });

  await knex.schema.createTable('organization_invitations', (t) => {
    t.string('id', 64).primary();
    t.string('organization_id', 64).notNullable().references('id').inTable('organizations').onDelete('CASCADE');
    t.string('email', 320).notNullable();
    t.string('role_id', 64).notNullable().references('id').inTable('roles');
    t.string('token_hash', 128).notNullable().unique().comment('HMAC-SHA-256 of the link token; never the token');
    t.string('invited_by', 128).nullable();
    t.string('status', 16).notNullable().defaultTo('pending').comment('pending, accepted, declined, revoked');
    t.string('created_at', 32).notNullable();
    t.string('expires_at', 32).notNullable();
    t.string('updated_at', 32).notNullable();
    t.index(['organization_id', 'status'], 'organization_invitations_org');
    t.index(['email'], 'organization_invitations_email');
  });

  await knex.schema.createTable('personal_access_tokens', (t) => {
    t.string('id', 64).primary();
    t.string('account_id', 64).notNullable().references('id').inTable('accounts').onDelete('CASCADE');
    t.string('name', 100).notNullable();
    t.string('token_hash', 128).notNullable().unique().comment('HMAC-SHA-256 of the token; never the token');
    t.text('scopes').notNullable().defaultTo('').comment('space-separated');
    t.text('audience').notNullable().defaultTo('[]').comment('JSON array of resource identifiers its scopes belong to');
    t.string('organization_id', 64).nullable().references('id').inTable('organizations').onDelete('CASCADE');
    t.string('created_at', 32).notNullable();
    t.string('expires_at', 32).notNullable();
    t.string('last_used_at', 32).nullable();
    t.string('revoked_at', 32).nullable();
    t.index(['account_id'], 'personal_access_tokens_account');
  });

  const now = new Date().toISOString();
  await knex('roles').insert(BUILTIN_ORG_ROLES.map((r) => ({ id: randomUUID(), kind: 'organization', name: r.name, description: r.description, builtin: true, created_at: now, updated_at: now })));
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['personal_access_tokens', 'organization_invitations', 'organization_members', 'organizations', 'role_assignments', 'role_permissions', 'roles']) {
    await knex.schema.dropTableIfExists(table);
  }
  await knex.schema.alterTable('resource_servers', (t) => {
    t.dropColumn('rbac');
  });
}
