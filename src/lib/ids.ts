/**
 * The shapes an account or organization id may have. Latch makes UUIDv4s for its own; an
 * imported one keeps the id its app gave it (`latch import app`), so the rows of that app that
 * point at a user or an organization match the token's `sub` and `org_id` unchanged:
 * - a UUID, stored in lower-case canonical form;
 * - a 24-hex MongoDB ObjectId, lower-case;
 * - a decimal integer without leading zeros (an auto-increment key).
 * The three shapes cannot overlap, so an id Latch makes never equals an imported ObjectId or
 * integer; an imported UUID is the app's own random one, and the primary key refuses a duplicate.
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const OBJECT_ID = /^[0-9a-f]{24}$/i;
const DECIMAL = /^(0|[1-9][0-9]{0,18})$/;

export const isUuid = (value: string) => UUID.test(value);

/** The id in its stored form, or undefined when it has none of the three shapes. */
export function canonicalId(value: string): string | undefined {
  if (typeof value !== 'string') return undefined;
  if (UUID.test(value) || OBJECT_ID.test(value)) return value.toLowerCase();
  if (DECIMAL.test(value)) return value;
  return undefined;
}

export const isEntityId = (value: string) => canonicalId(value) !== undefined;
