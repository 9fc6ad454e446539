/** `displayName` → `display_name`; keys that are not camelCase identifiers (URLs, ids) stay as they are. */
export function snakeCaseKey(key: string): string {
  return /^[a-z][A-Za-z0-9]*$/.test(key) ? key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) : key;
}

/**
 * A JSON value with every object key in snake_case, nested objects and arrays included: the
 * convention of every JSON body Latch answers (audit details are built from field names of the
 * code, which are camelCase).
 */
export function snakeCaseKeys<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v: unknown) => snakeCaseKeys(v)) as T;
  if (value === null || typeof value !== 'object' || Object.getPrototypeOf(value) !== Object.prototype) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [snakeCaseKey(k), snakeCaseKeys(v as unknown)])) as T;
}
