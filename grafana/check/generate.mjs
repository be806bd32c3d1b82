// Writes generated/<dashboard>.ts: each dashboard's JSON pasted as an object literal
// that must satisfy ShardlineDashboard. A literal (not `import x from './x.json'`) is
// what makes the check strict: TypeScript widens imported JSON strings to `string`
// and skips excess-property checks on it, so a misspelt or unknown field would pass.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const here = new URL('.', import.meta.url).pathname;
const dashboards = join(here, '..', 'dashboards');
const out = join(here, 'generated');
rmSync(out, { recursive: true, force: true });
mkdirSync(out);
const files = readdirSync(dashboards).filter((f) => f.endsWith('.json'));
if (files.length === 0) throw new Error(`no dashboards in ${dashboards}`);
for (const file of files) {
  const json = JSON.stringify(JSON.parse(readFileSync(join(dashboards, file), 'utf8')), null, 2);
  const name = file.replace(/\.json$/, '').replace(/[^A-Za-z0-9]/g, '_');
  writeFileSync(
    join(out, `${name}.ts`),
    `// Generated from grafana/dashboards/${file} by generate.mjs; not committed.\n` +
      `import type { ShardlineDashboard } from '../schema';\n\n` +
      `export const ${name} = ${json} satisfies ShardlineDashboard;\n`,
  );
  console.log(`checking ${file}`);
}
