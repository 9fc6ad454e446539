import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The repository's root folder. */
export const ROOT = new URL('../..', import.meta.url).pathname;

/** README.md first, then every docs/*.md page in name order: paths relative to the root. */
export function markdownFiles(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`);
  return ['README.md', ...docs];
}

export const readMarkdown = (file: string) => readFileSync(join(ROOT, file), 'utf8');

export interface FencedBlock {
  /** The info string's first word (`sh`, `json`, …), '' when none. */
  lang: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The block's text, without the fences and without the list indentation. */
  code: string;
  /** The `<!-- not run… -->` comment right above the block, if any. */
  notRun?: string;
}

/** Fenced code blocks (``` or ~~~), including those indented inside list items. */
export function fencedBlocks(markdown: string): FencedBlock[] {
  const lines = markdown.split('\n');
  const blocks: FencedBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)(`{3,}|~{3,})\s*([^\s`]*)/.exec(lines[i]!);
    if (!open) continue;
    const [, indent, fence, lang] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j]!;
      const close = /^\s*(`{3,}|~{3,})\s*$/.exec(l);
      if (close && close[1]![0] === fence![0] && close[1]!.length >= fence!.length) break;
      body.push(l.startsWith(indent!) ? l.slice(indent!.length) : l);
    }
    let k = i - 1;
    while (k >= 0 && lines[k]!.trim() === '') k--;
    const comment = k >= 0 ? /^\s*<!--\s*(not run\b.*?)\s*-->\s*$/.exec(lines[k]!) : null;
    blocks.push({ lang: lang ?? '', line: i + 1, code: body.join('\n'), ...(comment ? { notRun: comment[1] } : {}) });
    i = j;
  }
  return blocks;
}

/** The markdown with fenced blocks and inline code spans blanked out (links in code are not links). */
export function proseOnly(markdown: string): string {
  const lines = markdown.split('\n');
  let fence: string | undefined;
  const out = lines.map((l) => {
    const m = /^\s*(`{3,}|~{3,})/.exec(l);
    if (fence) {
      if (m && l.trim().startsWith(fence)) fence = undefined;
      return '';
    }
    if (m) {
      fence = m[1];
      return '';
    }
    return l.replace(/`[^`]*`/g, '``');
  });
  return out.join('\n');
}

/**
 * GitHub's heading anchors: lowercase, punctuation other than `-` and `_` dropped, spaces to
 * hyphens, and a repeated heading gets `-1`, `-2`, ….
 */
export function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fence: string | undefined;
  for (const line of markdown.split('\n')) {
    const f = /^\s*(`{3,}|~{3,})/.exec(line);
    if (fence) {
      if (f && line.trim().startsWith(fence)) fence = undefined;
      continue;
    }
    if (f) {
      fence = f[1];
      continue;
    }
    const h = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!h) continue;
    const text = h[1]!.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').toLowerCase();
    const base = text.replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}
