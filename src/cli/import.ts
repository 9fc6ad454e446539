import { readFile } from 'node:fs/promises';

import { ImportError } from '../errors/index.js';
import { CLI_ACTOR } from '../services/audit.js';
import { parseMapping, PRESETS, type Mapping } from '../services/app-import/mapping.js';
import { openSource } from '../services/app-import/sources.js';
import { parse, required, UsageError, type Command } from './args.js';

const PRESET_NAMES = Object.keys(PRESETS);

/** A progress line on a terminal only: stderr, rewritten in place; never mixed into the JSON on stdout. */
function progressBar(): ((table: string, rows: number) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  return (table, rows) => process.stderr.write(`\r\u001b[Klatch: importing ${table}: ${rows} rows read`);
}

export const IMPORT_COMMANDS: Record<string, Command> = {
  'import app': {
    usage: `import app --from sqlite:PATH|postgres://…|jsonl:DIR (--preset ${PRESET_NAMES.join('|')} | --map FILE.yaml) [--dry-run] [--update]`,
    async run({ args, services }) {
      const u = this.usage;
      const { values, positionals } = parse(args, { from: { type: 'string' }, preset: { type: 'string' }, map: { type: 'string' }, 'dry-run': { type: 'boolean' }, update: { type: 'boolean' } }, u);
      if (positionals.length) throw new UsageError(`unexpected argument ${positionals[0]} (usage: latch ${u})`);
      const from = required(values.from, 'from', u);
      if (Boolean(values.preset) === Boolean(values.map)) throw new UsageError(`give either --preset or --map (usage: latch ${u})`);
      const sqlSource = !from.startsWith('jsonl:');
      let mapping: Mapping;
      if (values.preset) {
        const preset = PRESETS[values.preset];
        if (!preset) throw new UsageError(`--preset must be one of ${PRESET_NAMES.join(', ')} (got "${values.preset}")`);
        mapping = preset;
      } else {
        let text: string;
        try {
          text = await readFile(values.map!, 'utf8');
        } catch (err) {
          throw new ImportError(`cannot read the mapping ${values.map} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
        }
        try {
          mapping = parseMapping(text, { sqlSource });
        } catch (err) {
          if (err instanceof ImportError) throw new ImportError(`mapping ${values.map}: ${err.message}`);
          throw err;
        }
      }
      const source = await openSource(from);
      const progress = progressBar();
      try {
        return await services.appImport.run({ source, mapping, dryRun: values['dry-run'] ?? false, update: values.update ?? false, by: CLI_ACTOR, progress });
      } finally {
        if (progress) process.stderr.write('\n');
        await source.close();
      }
    },
  },
};
