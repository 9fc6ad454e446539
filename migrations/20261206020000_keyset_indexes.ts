import type { Knex } from 'knex';

/**
 * The admin API's lists are paged newest first with a keyset on (created_at, id): each page is an
 * index seek and `limit + 1` rows, whatever the table's size. Lists scoped to a parent (an
 * organization's members and invitations, a role's holders, an account's tokens) lead with the
 * parent's column, so the seek stays inside that parent.
 */
const INDEXES: { table: string; name: string; columns: string[] }[] = [
  { table: 'accounts', name: 'accounts_created', columns: ['created_at', 'id'] },
  { table: 'clients', name: 'clients_created', columns: ['created_at', 'id'] },
  { table: 'resource_servers', name: 'resource_servers_created', columns: ['created_at', 'id'] },
  { table: 'roles', name: 'roles_created', columns: ['created_at', 'id'] },
  { table: 'organizations', name: 'organizations_created', columns: ['created_at', 'id'] },
  { table: 'organization_members', name: 'organization_members_created', columns: ['organization_id', 'created_at'] },
  { table: 'organization_invitations', name: 'organization_invitations_created', columns: ['organization_id', 'created_at', 'id'] },
  { table: 'role_assignments', name: 'role_assignments_created', columns: ['role_id', 'created_at'] },
  { table: 'personal_access_tokens', name: 'personal_access_tokens_created', columns: ['account_id', 'created_at', 'id'] },
];

export async function up(knex: Knex): Promise<void> {
  for (const { table, name, columns } of INDEXES) {
    await knex.schema.alterTable(table, (t) => {
      t.index(columns, name);
    });
  }
}

export async function down(knex: Knex): Promise<void> {
  for (const { table, name, columns } of [...INDEXES].reverse()) {
    await knex.schema.alterTable(table, (t) => {
      t.dropIndex(columns, name);
    });
  }
}
