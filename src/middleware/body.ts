import type { IncomingMessage } from 'node:http';

import type Koa from 'koa';

import { BodyError } from '../errors/index.js';

/** Largest form body accepted: login and consent forms are tiny. */
const LIMIT = 64 * 1024;

export { BodyError };

/**
 * Reads the request body as UTF-8 text, at most `limit` bytes: 413 `tooLarge` beyond, 400
 * `incomplete` when the client goes away mid-body ("aborted", ECONNRESET: bad input, not a
 * server failure).
 */
export async function readBodyText(ctx: Koa.Context, limit: number, messages: { tooLarge: string; incomplete: string }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    // destroyOnReturn: false leaves an oversized body's rest to discardUnreadBody instead of
    // destroying the request stream (which stalls a keep-alive connection).
    for await (const chunk of ctx.req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw new BodyError(413, messages.tooLarge);
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof BodyError) throw err;
    throw new BodyError(400, messages.incomplete);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads an application/x-www-form-urlencoded body (bounded) into a plain object of strings. */
export async function readForm(ctx: Koa.Context): Promise<Record<string, string>> {
  if (!ctx.is('application/x-www-form-urlencoded')) throw new BodyError(415, 'expected a form submission');
  const text = await readBodyText(ctx, LIMIT, { tooLarge: 'form too large', incomplete: 'incomplete form submission' });
  const form: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(text)) {
    // First value wins; repeated fields are not meaningful in our forms.
    if (!(k in form)) form[k] = v;
  }
  return form;
}

/**
 * A response sent before its request body was read to the end (a body refused as too large, or
 * of the wrong type) leaves the rest of that body on the connection. Node only discards bodies
 * nobody started reading; for a partly read one it never parses the next request of the
 * keep-alive connection, which then stalls until requestTimeout and gets a 408. Once the
 * response is done, read and discard what is left, as Node does for unread bodies (and as
 * body-parser does on error). Applies to Latch's routes and to oidc-provider's (its parser stops
 * at 56 KiB). Called by the request middleware (middleware/request.ts) when the response closes.
 */
export function discardUnreadBody(req: IncomingMessage): void {
  if (!req.complete && !req.destroyed) req.resume();
}
