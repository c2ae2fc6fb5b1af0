// npm run build: the JavaScript that runs (dist/*.js) and the types of the library (dist/types/).
//
// - JavaScript: esbuild bundles lib/cli.ts (the `fdl` command), lib/workbench.ts (the library,
//   `import ... from 'fdl'`), lib/ops/pool-thread.ts (a compute thread's entry) and
//   lib/store/pg-thread.ts (the PostgreSQL bridge's thread) into dist/,
//   the code they share split into chunks beside them and loaded when first used (the node, the
//   store and DuckDB only by the commands that run a node). npm packages stay imports. ~1 s.
// - Types (--types, and `npm run build`; `prepack` asks for them, so npm pack ships them): tsc
//   writes the .d.ts of protocols/, actors/ and lib/ to dist/types/ (tsconfig.build.json), tens
//   of seconds here, so `prepare` (npm ci/install) and `npm test` build only the JavaScript.
//
// Each part is stamped with the fingerprint of the sources it was built from (bin/fingerprint.mjs):
// bin/fdl.js runs dist/ only when its stamp matches the sources. --if-stale builds a part only
// when its stamp does not match. A part is written aside and swapped in whole, so a failed
// build never leaves a half-written dist/ (nor a stamp that lies).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { matchesSources, sourceFingerprint, stampText } from '../bin/fingerprint.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
const types = join(dist, 'types');
const ifStale = process.argv.includes('--if-stale');
const withTypes = process.argv.includes('--types');

/** Packages left as imports: native code (or its loader), and files loaded by path (worker threads, transports). */
const EXTERNAL = ['@photostructure/sqlite', '@duckdb/*', 'bufferutil', 'utf-8-validate', 'msgpackr-extract', 'pino', 'pino-*', 'thread-stream', 'piscina', 'sonic-boom'];

const current = (dir) => existsSync(join(dir, '.fingerprint')) && matchesSources(root, readFileSync(join(dir, '.fingerprint'), 'utf8'));

/** Builds into a fresh folder with `make(tmp)`, checks the sources did not change meanwhile, stamps it, returns it. */
async function aside(name, make) {
  const before = sourceFingerprint(root);
  const tmp = join(root, `dist.${name}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  const t0 = performance.now();
  try {
    await make(tmp);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    process.stderr.write(`build: ${name} failed (${e.message}); dist/ is left as it was\n`);
    process.exit(1);
  }
  if (sourceFingerprint(root).content !== before.content) {
    rmSync(tmp, { recursive: true, force: true });
    process.stderr.write('build: the sources changed while they were built; build again\n');
    process.exit(1);
  }
  writeFileSync(join(tmp, '.fingerprint'), stampText(before));
  process.stderr.write(`build: ${name} built in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return tmp;
}

/** Puts `tmp` where `target` was (the old one removed after). */
function swap(tmp, target) {
  const old = `${target}.old-${process.pid}`;
  if (existsSync(target)) renameSync(target, old);
  renameSync(tmp, target);
  rmSync(old, { recursive: true, force: true });
}

if (!(ifStale && current(dist))) {
  const { build } = await import('esbuild');
  const tmp = await aside('javascript', (out) =>
    build({
      absWorkingDir: root,
      entryPoints: { cli: 'lib/cli.ts', workbench: 'lib/workbench.ts', 'pool-thread': 'lib/ops/pool-thread.ts', 'pg-thread': 'lib/store/pg-thread.ts' },
      outdir: out,
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      // Pure-JavaScript packages are bundled too (fewer files to find and read at each start);
      // those with native parts or files of their own loaded by path stay imports.
      external: EXTERNAL,
      // CommonJS packages inside an ES module call require(): give them one.
      banner: { js: "import { createRequire as __fdlCreateRequire } from 'node:module'; const require = __fdlCreateRequire(import.meta.url);" },
      // Chunks sit beside the entries: a module's URL finds pool-thread.js and the package root alike.
      chunkNames: '[name]-[hash]',
      // No keepNames: it wrapped every closure the code makes at run time (a defineProperty per
      // closure, ~1-3% of a round's scheduler CPU); without minify a name changes only where two
      // modules share it (a digit appended: `send2`), which stack traces show as it is.
      logLevel: 'warning',
    }),
  );
  if (existsSync(types)) renameSync(types, join(tmp, 'types')); // the types are swapped on their own
  swap(tmp, dist);
}

if (withTypes && !(ifStale && current(types))) {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const tmp = await aside('types', async (out) => {
    const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', out], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`tsc exited with ${r.status ?? r.signal}`);
  });
  swap(tmp, types);
}
