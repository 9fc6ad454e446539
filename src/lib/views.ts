import { join } from 'node:path';

import ejs from 'ejs';

import { VIEWS_DIR } from './paths.js';

export interface PageLocals {
  title: string;
  [key: string]: unknown;
}

export type Render = (view: string, locals: PageLocals) => Promise<string>;

/**
 * Renders views/<view>.ejs inside views/layout.ejs. EJS escapes every `<%= %>` value; templates
 * never use `<%- %>` with request data.
 */
export function createRenderer(options: { cache?: boolean; productName?: string } = {}): Render {
  const cache = options.cache ?? true;
  return async (view, locals) => {
    const all = { productName: options.productName ?? 'Latch', ...locals };
    const body = await ejs.renderFile(join(VIEWS_DIR, `${view}.ejs`), all, { cache, async: false });
    return ejs.renderFile(join(VIEWS_DIR, 'layout.ejs'), { ...all, body }, { cache, async: false });
  };
}
