import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';

import { expect } from 'chai';
import { parse as parseYaml } from 'yaml';

import { createMetrics } from '../src/services/metrics.js';
import { runCliWith } from './helpers/server.js';
import { fencedBlocks, headingAnchors, markdownFiles, proseOnly, readMarkdown, ROOT } from './helpers/markdown.js';

/** Every `[text](target)` in the prose (not in code) of one page. */
function links(markdown: string): { target: string; line: number }[] {
  const found: { target: string; line: number }[] = [];
  proseOnly(markdown)
    .split('\n')
    .forEach((l, i) => {
      for (const m of l.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) found.push({ target: m[1]!, line: i + 1 });
    });
  return found;
}

describe('README and docs/', () => {
  it('every relative link points at an existing file, and every #anchor at a heading there', () => {
    const broken: string[] = [];
    let checked = 0;
    for (const file of markdownFiles()) {
      for (const { target, line } of links(readMarkdown(file))) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, …
        checked++;
        const [path, anchor] = target.split('#') as [string, string | undefined];
        const resolved = path ? normalize(join(dirname(file), decodeURIComponent(path))) : file;
        const where = `${file}:${line} → ${target}`;
        if (resolved.startsWith('..') || !existsSync(join(ROOT, resolved))) {
          broken.push(`${where} (no file ${resolved})`);
          continue;
        }
        if (anchor === undefined) continue;
        if (!resolved.endsWith('.md') || statSync(join(ROOT, resolved)).isDirectory()) {
          broken.push(`${where} (an anchor into a file that is not markdown)`);
          continue;
        }
        if (!headingAnchors(readMarkdown(resolved)).has(anchor)) broken.push(`${where} (no heading #${anchor} in ${resolved})`);
      }
    }
    expect(broken, broken.join('\n')).to.deep.equal([]);
    expect(checked, 'relative links found').to.be.greaterThan(20);
  });

  it('the README is the front door: at most 400 lines, and it links every docs page', () => {
    const readme = readMarkdown('README.md');
    expect(readme.split('\n').length).to.be.at.most(400);
    const linked = new Set(links(readme).map((l) => normalize(l.target.split('#')[0]!)));
    for (const page of markdownFiles().slice(1)) expect(linked.has(page), `README links ${page}`).to.equal(true);
  });

  it('shell sessions are fenced as sh, so the session test runs them', () => {
    for (const file of markdownFiles()) {
      for (const b of fencedBlocks(readMarkdown(file))) {
        expect(['bash', 'shell', 'console', 'zsh', 'shell-session'], `${file}:${b.line} fenced as ${b.lang}`).not.to.include(b.lang);
      }
    }
  });

  it('docs/api.md lists exactly the problem types of openapi.yaml', () => {
    const spec = parseYaml(readMarkdown('openapi.yaml')) as { components: { schemas: { Problem: { properties: { type: { enum: string[] } } } } } };
    const documented = spec.components.schemas.Problem.properties.type.enum.map((u) => u.replace('https://latch.dev/problems/', '')).sort();
    const rows = readMarkdown('docs/api.md')
      .split('\n')
      .map((l) => /^\| `([a-z-]+)` \| (\d{3}) \|/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => m[1]!)
      .sort();
    expect(documented.length).to.be.greaterThan(10);
    expect(rows).to.deep.equal(documented);
  });

  it('docs/operations.md documents exactly the metric series /metrics serves', () => {
    // The registry is only listed, never scraped, so no database is needed.
    const served = createMetrics({ db: {} as never })
      .registry.getMetricsAsArray()
      .map((m) => m.name);
    const table = readMarkdown('docs/operations.md')
      .split('\n')
      .filter((l) => l.startsWith('| `latch_'))
      .flatMap((l) => [...l.split('|')[1]!.matchAll(/`(latch_[a-z_*]+)`/g)].map((m) => m[1]!));
    const covers = (doc: string, name: string) => (doc.endsWith('*') ? name.startsWith(doc.slice(0, -1)) : doc === name);
    expect(served.filter((name) => !table.some((doc) => covers(doc, name))), 'series missing from the table').to.deep.equal([]);
    expect(table.filter((doc) => !served.some((name) => covers(doc, name))), 'documented series that are not served').to.deep.equal([]);
  });

  it('docs/cli.md has a row for every command of `latch --help`', async () => {
    const { code, stdout } = await runCliWith({}, ['--help']);
    expect(code).to.equal(0);
    // "  latch orgs members add|update|remove --org …" → ["orgs", "members", "add|update|remove"]
    const commands = stdout
      .split('\n')
      .filter((l) => l.startsWith('  latch '))
      .map((l) => {
        const words = l.trim().split(/\s+/).slice(1);
        const end = words.findIndex((w) => !/^[a-z|]+$/.test(w));
        return end === -1 ? words : words.slice(0, end);
      });
    expect(commands.length).to.be.greaterThan(20);
    // The first cell of each row of the command table, e.g. "`latch clients disable ID` / `enable ID` / `delete ID`".
    const firstCells = readMarkdown('docs/cli.md')
      .split('\n')
      .filter((l) => l.startsWith('| `latch '))
      .map((l) => l.split(/(?<!\\)\|/)[1]!.replace(/\\\|/g, '|'));
    const missing: string[] = [];
    for (const words of commands) {
      const named = (cell: string) =>
        cell.includes(`latch ${words[0]}`) && words.slice(1).every((w) => w.split('|').every((alt) => new RegExp(`[\\s|\`/]${alt}(?=[\\s|\`])`).test(cell)));
      if (!firstCells.some(named)) missing.push(`latch ${words.join(' ')}`);
    }
    expect(missing, 'commands without a docs/cli.md row').to.deep.equal([]);
  });
  it('docs/operations.md says what every production dependency is for, and lists no other', () => {
    const text = readMarkdown('docs/operations.md');
    const section = text.slice(text.indexOf('### Dependencies'));
    expect(section.length, 'a "### Dependencies" subsection').to.be.lessThan(text.length);
    const body = section.slice(0, section.slice(3).search(/\n#{2,3} /) + 3);
    // The first list is Latch's own; the list after "packages/verify" is the verifier's.
    const [own, verifier] = body.split('`packages/verify`').map((part) => [...part.matchAll(/^- `([^`]+)` — \S/gm)].map((m) => m[1]!).sort());
    const deps = (file: string) => Object.keys((JSON.parse(readFileSync(join(ROOT, file), 'utf8')) as { dependencies?: Record<string, string> }).dependencies ?? {}).sort();
    expect(own, 'package.json dependencies').to.deep.equal(deps('package.json'));
    expect(verifier, 'packages/verify dependencies').to.deep.equal(deps('packages/verify/package.json'));
  });

  it('CI installs from the lockfile only (npm ci)', () => {
    const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
    expect(ci).to.match(/^npm ci$/m);
    expect(ci).to.not.match(/^\s*npm (install|i)\b/m);
  });
});
