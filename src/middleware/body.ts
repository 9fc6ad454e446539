import type Koa from 'koa';

/** Largest form body accepted: login and consent forms are tiny. */
const LIMIT = 64 * 1024;

export class BodyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Reads an application/x-www-form-urlencoded body (bounded) into a plain object of strings. */
export async function readForm(ctx: Koa.Context): Promise<Record<string, string>> {
  if (!ctx.is('application/x-www-form-urlencoded')) throw new BodyError(415, 'expected a form submission');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > LIMIT) throw new BodyError(413, 'form too large');
    chunks.push(chunk);
  }
  const form: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) {
    // First value wins; repeated fields are not meaningful in our forms.
    if (!(k in form)) form[k] = v;
  }
  return form;
}
