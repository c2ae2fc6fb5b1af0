// Why: a researcher installs fdl as a package, not as a checkout. This does what they do, with
// plain Node 20 and no tsx: `npm pack` (which runs `prepack`: the build and its types are current), install
// the tarball into an empty project, run `npx fdl demo` there, and type-check and run a
// TypeScript file that imports the workbench library from 'fdl' (compiled JavaScript and .d.ts
// through the package's `exports`). It checks what the tarball holds, so a file left out of
// package.json's `files` fails here and not on a user's machine.
//
// The install takes the packages from npm's cache (`npm ci` filled it; --prefer-offline asks the
// registry only for what is missing), install scripts and all, as a user's does: every native
// dependency's binary ships inside its npm package (the store's SQLite too, since it left
// better-sqlite3, whose compile took 60-420 s: docs/PERFORMANCE.md), so nothing is compiled.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../lib/paths.ts';
import { PROCESS_FILE_TIMEOUT_MS } from '../helpers/cluster.ts';
import { testDatabase } from '../helpers/postgres.ts';

t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment of a user's shell: nothing of this checkout's test run. */
const env: NodeJS.ProcessEnv = { ...process.env, FDL_LOG_LEVEL: 'warn' };
for (const k of Object.keys(env)) if (/^(FDL_(?!LOG_LEVEL)|TAP|NODE_OPTIONS)/.test(k)) delete env[k];

function run(cmd: string, args: string[], cwd: string, timeoutMs = 300_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const versionOf = (dir: string, pkg: string): string =>
  (JSON.parse(readFileSync(createRequire(join(dir, 'package.json')).resolve(`${pkg}/package.json`), 'utf8')) as { version: string }).version;

t.test('npm pack installs into an empty project: npx fdl demo runs and `import { Workbench, where } from "fdl"` type-checks and runs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fdl-package-'));
  t.teardown(() => {
    if (!process.env.FDL_KEEP_TEST_DIRS) rmSync(dir, { recursive: true, force: true });
  });

  const pack = await run('npm', ['pack', '--json', '--pack-destination', dir], PACKAGE_ROOT);
  t.equal(pack.code, 0, `npm pack: ${pack.stderr}`);
  const [packed] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  if (!packed) throw new Error(`npm pack printed no package: ${pack.stdout}`);
  const files = packed.files.map((f) => f.path);
  for (const f of ['bin/fdl.js', 'dist/cli.js', 'dist/workbench.js', 'dist/types/lib/workbench.d.ts', 'dist/pool-thread.js', 'dist/pg-thread.js', 'examples/data/california_housing.MedInc1.csv', 'README.md']) {
    t.ok(files.includes(f), `the package holds ${f}`);
  }
  t.notOk(
    files.some((f) => /^(lib|protocols|actors|test)\//.test(f) || f.endsWith('.ts') && !f.endsWith('.d.ts')),
    'and no TypeScript sources or tests',
  );

  const project = join(dir, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'fdl-user', private: true, type: 'module' }));
  const install = await run(
    'npm',
    [
      'install',
      join(dir, packed.filename),
      `typescript@${versionOf(PACKAGE_ROOT, 'typescript')}`,
      `@types/node@${versionOf(PACKAGE_ROOT, '@types/node')}`,
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
    ],
    project,
  );
  t.equal(install.code, 0, `npm install: ${install.stderr}`);
  t.equal(versionOf(project, '@photostructure/sqlite'), versionOf(PACKAGE_ROOT, '@photostructure/sqlite'), 'the same SQLite binding as the checkout');

  const demo = await run('npx', ['fdl', 'demo', '--json'], project);
  t.equal(demo.code, 0, `npx fdl demo exits 0: ${demo.stderr}`);
  const report = JSON.parse(demo.stdout) as { ok: boolean; workers: number; results: Array<{ statistic: string; match: boolean }> };
  t.equal(report.ok, true, 'every federated figure equals the central one');
  t.equal(report.workers, 2);
  t.ok(report.results.length > 5 && report.results.every((r) => r.match), 'each figure matches');

  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, outDir: 'out', types: ['node'] }, include: ['*.ts'] }),
  );
  writeFileSync(
    join(project, 'main.ts'),
    [
      "import { type ConnectOptions, Workbench, where } from 'fdl';",
      "const filter = where('HouseAge', '>', 30);",
      "const options: ConnectOptions = { token: 'x', reconnect: false };",
      'const connect: (url: string, o: ConnectOptions) => Promise<Workbench> = Workbench.connect;',
      'console.log(JSON.stringify({ filter, connect: typeof connect, reconnect: options.reconnect }));',
      '',
    ].join('\n'),
  );
  const tsc = await run(process.execPath, [join(project, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], project);
  t.equal(tsc.code, 0, `tsc type-checks the import from 'fdl': ${tsc.stdout}${tsc.stderr}`);
  const main = await run(process.execPath, [join(project, 'out', 'main.js')], project);
  t.equal(main.code, 0, `node runs it: ${main.stderr}`);
  t.same(JSON.parse(main.stdout), { filter: { feature: 'HouseAge', op: '>', value: 30 }, connect: 'function', reconnect: false });

  // The PostgreSQL store's bridge thread is found in the package: `fdl tokens` opens the store of
  // a scheduler config on PostgreSQL (and migrates the empty database) from the installed fdl.
  const url = await testDatabase(t, 'package');
  writeFileSync(join(project, 'scheduler.yaml'), `mode: scheduler\nname: s\nworkdir: ./work\nprojects: [{ name: p, token: abcdefgh12 }]\nstore: { url: '${url}' }\n`);
  const tokens = await run('npx', ['fdl', 'tokens', 'create', '--config', 'scheduler.yaml', '--kind', 'join', '--json'], project);
  t.equal(tokens.code, 0, `fdl tokens create on PostgreSQL: ${tokens.stderr}`);
  t.match(JSON.parse(tokens.stdout), { kind: 'join', token: /^fdl_j_/ });
  const listed = await run('npx', ['fdl', 'tokens', 'list', '--config', 'scheduler.yaml', '--json'], project);
  t.equal(listed.code, 0, `fdl tokens list: ${listed.stderr}`);
  t.match(JSON.parse(listed.stdout), [{ id: JSON.parse(tokens.stdout).id, kind: 'join' }], 'the token was committed to the database');

  // The types are the library's, not `any`: a wrong use is refused.
  writeFileSync(join(project, 'wrong.ts'), "import { where } from 'fdl';\nconst n: number = where('HouseAge', '>', 30);\nconsole.log(n);\n");
  const wrong = await run(process.execPath, [join(project, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.', '--noEmit'], project);
  t.not(wrong.code, 0, 'a wrong use of the types is refused');
  t.match(wrong.stdout, /wrong\.ts.*TS2322/, 'by the type of where()');
});
