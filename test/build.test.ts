// Why: bin/fdl.js runs the compiled dist/ for a fast start, and every test that starts an `fdl`
// process (nodes, CLI) goes through it. A dist/ built from other sources than the checkout's
// would then test old code: bin/fdl.js must run dist/ only when its stamp matches the sources,
// and the sources themselves (through tsx) otherwise. This checks that choice on a copy of the
// checkout, so the real dist/ is never touched.
import { spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../lib/paths.ts';

/** `fdl --version` in the checkout `dir`: what it prints, and what it ran (FDL_DEBUG names it on stderr). */
function version(dir: string): { stdout: string; ran: string } {
  const r = spawnSync(process.execPath, [join(dir, 'bin', 'fdl.js'), '--version'], { env: { ...process.env, FDL_DEBUG: '1', FDL_FROM_SOURCE: '' }, encoding: 'utf8' });
  const ran = /running dist\//.test(r.stderr) ? 'dist' : /running the sources/.test(r.stderr) ? 'sources' : `unknown (exit ${r.status}): ${r.stderr}`;
  return { stdout: r.stdout.trim(), ran };
}

const built = existsSync(join(PACKAGE_ROOT, 'dist', '.fingerprint'));

t.test('bin/fdl.js runs dist/ only when it was built from the sources beside it', { skip: !built && 'no build here (npm run build)' }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fdl-build-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of ['bin', 'lib', 'protocols', 'actors', 'scripts', 'dist', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']) {
    cpSync(join(PACKAGE_ROOT, f), join(dir, f), { recursive: true, preserveTimestamps: true });
  }
  symlinkSync(realpathSync(join(PACKAGE_ROOT, 'node_modules')), join(dir, 'node_modules'));

  const first = version(dir);
  t.equal(first.stdout, (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version, 'fdl --version prints the package version');
  t.equal(first.ran, 'dist', 'the build matches the sources: dist/ runs');

  const source = join(dir, 'lib', 'paths.ts');
  const later = new Date(Date.now() + 5_000);
  utimesSync(source, later, later);
  t.equal(version(dir).ran, 'dist', 'a source touched but unchanged: its bytes decide, dist/ still runs');

  appendFileSync(source, '// edited after the build\n');
  t.equal(version(dir).ran, 'sources', 'a source edited after the build: the sources run, never the stale dist/');

  rmSync(join(dir, 'dist', '.fingerprint'));
  t.equal(version(dir).ran, 'sources', 'no stamp: the sources run');
  t.end();
});
