#!/usr/bin/env node
// The `fdl` command. It runs the compiled JavaScript of dist/ (npm run build, run by `prepare`
// on npm ci/install) with plain node. In a checkout, where the TypeScript sources sit beside it,
// it first checks that dist/ was built from exactly these sources (bin/fingerprint.mjs); when
// it was not (a source edited since, or no build yet) it runs the sources through tsx instead,
// slower to start but never stale. FDL_FROM_SOURCE=1 asks for the sources.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const checkout = existsSync(new URL('../lib/cli.ts', import.meta.url));

function distIsCurrent() {
  let built;
  try {
    built = readFileSync(new URL('../dist/.fingerprint', import.meta.url), 'utf8');
  } catch {
    return false;
  }
  return import('./fingerprint.mjs').then(({ matchesSources }) => matchesSources(root, built));
}

const fromSource = checkout && (process.env.FDL_FROM_SOURCE === '1' || !(await distIsCurrent()));
if (process.env.FDL_DEBUG) process.stderr.write(`fdl: running ${fromSource ? 'the sources (tsx)' : 'dist/'}\n`);
if (fromSource) {
  if (process.stderr.isTTY && process.env.FDL_FROM_SOURCE !== '1') {
    process.stderr.write('fdl: dist/ is missing or older than the sources: running them through tsx (npm run build to start fast)\n');
  }
  process.env.FDL_FROM_SOURCE = '1'; // the processes it starts (workers of fdl demo) run the sources too
  const { register } = await import('tsx/esm/api');
  register();
  await import('../lib/cli.ts');
} else {
  await import('../dist/cli.js');
}
