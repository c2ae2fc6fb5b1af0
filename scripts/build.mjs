// npm run build (also `prepare`, so npm ci/install builds): compiles protocols/, actors/ and
// lib/ to JavaScript + .d.ts in dist/ with tsc (tsconfig.build.json), and stamps dist/ with the
// fingerprint of the sources it compiled (bin/fingerprint.mjs). `--if-stale` builds only when
// dist/ does not match the sources. The new build is written aside and swapped in whole, so a
// failed build never leaves a half-written dist/ (nor a stamp that lies).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { matchesSources, sourceFingerprint, stampText } from '../bin/fingerprint.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
const stamp = join(dist, '.fingerprint');

const before = sourceFingerprint(root);
if (process.argv.includes('--if-stale') && existsSync(stamp) && matchesSources(root, readFileSync(stamp, 'utf8'))) process.exit(0);

const t0 = performance.now();
const tmp = join(root, `dist.tmp-${process.pid}`);
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', tmp], { stdio: 'inherit' });
if (r.status !== 0) {
  rmSync(tmp, { recursive: true, force: true });
  process.stderr.write(`build: tsc failed (exit ${r.status ?? r.signal}); dist/ is left as it was\n`);
  process.exit(1);
}
const after = sourceFingerprint(root);
if (after.content !== before.content) {
  rmSync(tmp, { recursive: true, force: true });
  process.stderr.write('build: the sources changed while they were compiled; build again\n');
  process.exit(1);
}
writeFileSync(join(tmp, '.fingerprint'), stampText(before));
const old = join(root, `dist.old-${process.pid}`);
if (existsSync(dist)) renameSync(dist, old);
renameSync(tmp, dist);
rmSync(old, { recursive: true, force: true });
process.stderr.write(`build: dist/ built in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
