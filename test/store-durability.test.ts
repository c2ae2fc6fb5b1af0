// Why: the scheduler promises that whatever it acknowledged survives its death, a power cut
// included. A resource row must only ever point at bytes that are on disk (file fsynced, renamed,
// folder fsynced) when it commits; a write that fails must say why (STORE_WRITE_FAILED with the
// system's cause) and leave no row; and the initiator's private masks must never live only in
// memory, where a restart would lose them. The file-system calls are observed through node:fs
// itself (syncBuiltinESMExports), and failures are made with real paths: a folder replaced by a
// regular file fails with ENOTDIR even for root, which ignores permission bits.
import { spawnSync } from 'node:child_process';
import fs, { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import t, { type Test } from 'tap';
import { sha256Hex } from '../lib/store/blobs.ts';
import { LocalsStore } from '../lib/store/locals.ts';
import { openSqlite } from '../lib/store/sqlite.ts';
import type { SqliteEngine } from '../lib/store/sqlite-engine.ts';
import { Store } from '../lib/store/store.ts';
import { waitFor } from './helpers/cluster.ts';

const waitUntil = (check: () => boolean, what: string) => waitFor(check, { what });

const tempDir = (t: Test, name: string) => {
  const dir = mkdtempSync(join(tmpdir(), `fdl-${name}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

/** A store on SQLite in a folder of its own (closed, then the folder removed, after the test), and its engine. */
const sqliteStore = (t: Test, name: string) => {
  const workdir = tempDir(t, name);
  const store = new Store(workdir);
  t.teardown(() => store.close());
  return { workdir, store, engine: store.db as SqliteEngine };
};

/** Replaces a folder with a regular file for the duration of `body`, then puts it back. */
const withFolderReplacedByFile = <T>(dir: string, body: () => T): T => {
  const aside = `${dir}.aside`;
  renameSync(dir, aside);
  writeFileSync(dir, 'not a folder');
  try {
    return body();
  } finally {
    rmSync(dir);
    renameSync(aside, dir);
  }
};

/** The files of a folder (its subfolders, such as the streamed uploads' `incoming/`, are not resources). */
const filesIn = (dir: string): string[] =>
  fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => e.name);

t.test('a resource is fsynced (file, then folder after the rename) before its row commits', async (t) => {
  const workdir = tempDir(t, 'durable');
  const store = new Store(workdir);
  store.inlineResourceMaxBytes = 0; // every resource a file: the path of large ones
  t.teardown(() => store.close());
  const resources = join(workdir, 'resources');

  const calls: string[] = [];
  const paths = new Map<number, string>();
  let id: string | undefined;
  const real = { openSync: fs.openSync, fsyncSync: fs.fsyncSync, renameSync: fs.renameSync };
  fs.openSync = ((path: fs.PathLike, flags?: fs.OpenMode, mode?: fs.Mode | null) => {
    const fd = real.openSync(path, flags ?? 'r', mode);
    paths.set(fd, String(path));
    return fd;
  }) as typeof fs.openSync;
  fs.fsyncSync = (fd: number) => {
    const path = paths.get(fd) ?? `fd ${fd}`;
    const what = path === resources ? 'fsync folder' : path.endsWith('.tmp') ? 'fsync temporary file' : `fsync ${path}`;
    calls.push(id && path === resources ? `${what} (row committed: ${store.resource(id) !== undefined})` : what);
    real.fsyncSync(fd);
  };
  fs.renameSync = (from: fs.PathLike, to: fs.PathLike) => {
    if (String(to).startsWith(resources)) {
      id = basename(String(to), '.bin');
      calls.push('rename to the real name');
    }
    real.renameSync(from, to);
  };
  syncBuiltinESMExports();
  t.teardown(() => {
    Object.assign(fs, real);
    syncBuiltinESMExports();
  });

  const bytes = new TextEncoder().encode('a product');
  const ref = store.putResource({ artifactId: 'a-1', jobId: 'a-1.0', producer: 'w1', sha256: sha256Hex(bytes) }, bytes, Date.now());
  t.same(calls, ['fsync temporary file', 'rename to the real name', 'fsync folder (row committed: false)'], 'bytes durable, then the row');
  t.equal(ref.id, id);
  t.same(store.readResource(ref.id)?.bytes, bytes, 'the row points at the bytes');
});

t.test('a small resource is a row of the database, written with its row in one transaction', async (t) => {
  const workdir = tempDir(t, 'inline');
  const store = new Store(workdir);
  t.teardown(() => store.close());
  const small = new Uint8Array(store.inlineResourceMaxBytes).fill(7);
  const large = new Uint8Array(store.inlineResourceMaxBytes + 1).fill(8);
  const put = (bytes: Uint8Array) =>
    store.putResource({ artifactId: 'a-1', jobId: 'a-1.0', producer: 'w1', sha256: sha256Hex(bytes) }, bytes, Date.now());
  const inline = put(small);
  const file = put(large);
  t.same(filesIn(join(workdir, 'resources')), [`${file.id}.bin`], 'only the large one is a file');
  const same = (a: Uint8Array | undefined, b: Uint8Array) => a !== undefined && Buffer.from(a).equals(Buffer.from(b));
  t.ok(same(store.readResource(inline.id)?.bytes, small), 'the inline bytes read back');
  t.ok(same(store.readResource(file.id)?.bytes, large), 'the file bytes read back');
  // Another connection sees only what a barrier committed (and may write only between barriers).
  store.barrier();
  const rows = openSqlite(join(workdir, 'scheduler.sqlite'));
  t.teardown(() => rows.close());
  t.equal((rows.prepare('SELECT location FROM resources WHERE id = ?').get(inline.id) as { location: string }).location, 'row', 'the small one is in its own row');
  t.equal((rows.prepare('SELECT COUNT(*) AS n FROM resource_bytes').get() as { n: number }).n, 0, 'and not in the table of rows from before schema 8');
  t.equal((rows.prepare('SELECT bytes FROM resources WHERE id = ?').get(file.id) as { bytes: unknown }).bytes, null, "the large one's row holds no bytes");
  rows.prepare('UPDATE resources SET bytes = ? WHERE id = ?').run(Buffer.from('rot'), inline.id);
  t.throws(() => store.readResource(inline.id), { code: 'CHECKSUM_MISMATCH' }, 'inline bytes are checked like files');
  t.throws(() => store.resourceBody(inline.id), { code: 'CHECKSUM_MISMATCH' }, 'by a streamed reader too');
  store.deleteArtifact('a-1');
  t.ok(fs.existsSync(join(workdir, 'resources', `${file.id}.bin`)), "the large one's file stays until its row's delete is durable");
  store.barrier();
  t.equal((rows.prepare('SELECT COUNT(*) AS n FROM resources').get() as { n: number }).n, 0, 'deleted with their artifact');
});

t.test('a small resource written before schema 8 (its bytes in resource_bytes) is still read, checked and deleted', async (t) => {
  const workdir = tempDir(t, 'inline-v7');
  const store = new Store(workdir);
  t.teardown(() => store.close());
  const bytes = new Uint8Array([1, 2, 3, 250]);
  // As schema 7 wrote one: location 'inline', the bytes a row of resource_bytes.
  store.db.prepare('INSERT INTO resource_bytes (id, bytes) VALUES (?, ?)').run('r-old', bytes);
  store.db
    .prepare('INSERT INTO resources (id, artifact_id, job_id, producer, size, sha256, location, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
    .run('r-old', 'a-old', 'a-old.0', 'w1', bytes.byteLength, sha256Hex(bytes), 'inline', Date.now());
  store.barrier();
  t.same([...(store.readResource('r-old')?.bytes ?? [])], [...bytes], 'read from resource_bytes');
  t.same([...(store.resourceBody('r-old')?.bytes ?? [])], [...bytes], 'by a streamed reader too');
  t.notOk(store.resourceBody('r-old')?.file, 'never as a file');
  store.db.prepare('UPDATE resource_bytes SET bytes = ? WHERE id = ?').run(Buffer.from('rot'), 'r-old');
  t.throws(() => store.readResource('r-old'), { code: 'CHECKSUM_MISMATCH' }, 'and checked');
  store.deleteArtifact('a-old');
  store.barrier();
  t.equal(store.db.prepare('SELECT COUNT(*) FROM resource_bytes').value(), 0, 'deleted with its artifact');
});

t.test('a resource that cannot be written fails with STORE_WRITE_FAILED naming the cause, and leaves no row', async (t) => {
  const workdir = tempDir(t, 'unwritable');
  const store = new Store(workdir);
  store.inlineResourceMaxBytes = 0; // a file, in a folder that is not one
  t.teardown(() => store.close());
  const bytes = new TextEncoder().encode('a product');
  let thrown: unknown;
  withFolderReplacedByFile(join(workdir, 'resources'), () => {
    try {
      store.putResource({ artifactId: 'a-1', jobId: 'a-1.0', producer: 'w1', sha256: sha256Hex(bytes) }, bytes, Date.now());
    } catch (e) {
      thrown = e;
    }
  });
  t.match(thrown, { code: 'STORE_WRITE_FAILED', retryable: true, message: /ENOTDIR/ }, 'the code, and the system cause in the message');
  t.same(filesIn(join(workdir, 'resources')), [], 'no file, not even a temporary one');
  const rows = openSqlite(join(workdir, 'scheduler.sqlite'), { readonly: true });
  t.teardown(() => rows.close());
  t.equal((rows.prepare('SELECT COUNT(*) AS n FROM resources').get() as { n: number }).n, 0, 'no row');
});

t.test("the initiator's masks are not kept in memory when their file cannot be written", async (t) => {
  const dir = join(tempDir(t, 'locals'), 'locals');
  const locals = new LocalsStore(dir);
  const vars = locals.for('a-1');
  vars.set('first', [1, 2, 3]);
  let thrown: unknown;
  withFolderReplacedByFile(dir, () => {
    try {
      vars.set('second', [4, 5, 6]);
    } catch (e) {
      thrown = e;
    }
  });
  t.match(thrown, { code: 'STORE_WRITE_FAILED', message: /ENOTDIR/ }, 'the set fails (so does the operation, hence its attempt)');
  t.equal(vars.get('second'), undefined, 'the failed value is not kept only in memory');
  t.same(vars.get('first'), [1, 2, 3], 'what was written is still there');
  t.same(new LocalsStore(dir).for('a-1').get('first'), [1, 2, 3], 'a restarted node reads what was written');
  t.same(
    fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')),
    [],
    'no temporary file left behind',
  );
});

t.test("SQLite: changes() moves with every write, inside an open transaction too, and with a transaction begun; not with a read", async (t) => {
  const { store, engine } = sqliteStore(t, 'changes');
  store.barrier();
  const before = engine.changes();
  store.ensureProject('a', 'token-a'); // begins the open transaction
  const first = engine.changes();
  store.ensureProject('b', 'token-b'); // inside it: the group commit's quiet wait must see this one
  const second = engine.changes();
  store.listProjects();
  const read = engine.changes();
  t.ok(first > before && second > first, `moved with each write (${before}, ${first}, ${second})`);
  t.equal(read, second, 'a read moves nothing');
  store.barrier();
  t.equal(engine.changes(), read, 'nor does the barrier (what it committed was counted)');
});

t.test('SQLite: writes between barriers are one open transaction: no other connection sees them, a kill loses them, a failed statement costs only itself', async (t) => {
  const workdir = tempDir(t, 'open-transaction');
  // A real process, killed with SIGKILL after one barriered write and one write no barrier covered.
  const child = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `import { Store } from ${JSON.stringify(join(process.cwd(), 'lib/store/store.ts'))};
       const store = new Store(${JSON.stringify(workdir)});
       store.ensureProject('told', 'token-told');
       store.barrier();
       store.ensureProject('untold', 'token-untold');
       process.kill(process.pid, 'SIGKILL');`,
    ],
    { encoding: 'utf8' },
  );
  t.equal(child.signal, 'SIGKILL', `the child was killed (${child.stderr.trim().slice(0, 300)})`);
  const store = new Store(workdir);
  t.teardown(() => store.close());
  t.same(
    store.listProjects().map((p) => p.name),
    ['told'],
    'the barriered write survived the kill; the one no barrier covered is gone',
  );

  store.ensureProject('pending', 'token-pending');
  const other = openSqlite(join(workdir, 'scheduler.sqlite'), { readonly: true });
  t.teardown(() => other.close());
  const names = () => other.prepare('SELECT name FROM projects ORDER BY name').all<{ name: string }>().map((r) => r.name);
  t.same(names(), ['told'], 'another connection does not see a write before its barrier');

  // A statement that fails (a unique constraint) rolls back itself only: the open transaction goes on.
  const insert = store.db.prepare('INSERT INTO projects (id, name, token_hash) VALUES (?, ?, ?)');
  t.throws(() => insert.run('p-twin', 'pending', 'another hash'), { code: 'ERR_SQLITE_ERROR' }, 'a second project of the same name is refused');
  store.ensureProject('after', 'token-after');
  store.barrier();
  t.same(names(), ['after', 'pending', 'told'], 'after the barrier it sees every write before it, the failed one excepted');
});

t.test("SQLite: the group commit's WAL sync leaves the event loop; its messages wait for it, in order; a failed sync stops the store", async (t) => {
  const { workdir, store, engine } = sqliteStore(t, 'wal-sync');
  // The WAL's fdatasync, held by the test: the threadpool's answer comes when the test says. (A
  // fast disk's syncs run on the event loop: the next test; this one is the slow disk's path.)
  const syncs: Array<{ fd: number; done: (e: NodeJS.ErrnoException | null) => void }> = [];
  engine.inlineSyncMaxMs = 0;
  engine.walSync = (fd, done) => syncs.push({ fd, done });
  const finish = (e: NodeJS.ErrnoException | null = null) => {
    const sync = syncs.shift();
    if (!sync) throw new Error('no sync under way');
    if (e) return sync.done(e);
    fs.fdatasync(sync.fd, sync.done);
  };
  const sent: string[] = [];
  const other = openSqlite(join(workdir, 'scheduler.sqlite'), { readonly: true });
  t.teardown(() => other.close());
  const projects = () => (other.prepare('SELECT name FROM projects ORDER BY name').all() as Array<{ name: string }>).map((r) => r.name);

  store.ensureProject('p', 'token-p');
  store.afterDurable(() => sent.push('p'));
  await waitUntil(() => syncs.length === 1, 'the WAL sync to be asked for');
  t.equal(fs.fstatSync(syncs[0]?.fd as number).ino, fs.statSync(join(workdir, 'scheduler.sqlite-wal')).ino, 'it syncs the WAL file');
  t.same(projects(), ['p'], 'committed (another connection sees it) before it is durable');
  t.same(sent, [], 'but its message waits for the sync');

  // The event loop goes on: a second write begins a second transaction; its barrier commits
  // when the sync under way ends.
  store.ensureProject('q', 'token-q');
  t.ok(engine.db.inTransaction, 'a new transaction while the first sync runs');
  store.afterDurable(() => sent.push('q'));
  finish();
  await waitUntil(() => sent.length === 1, 'the first message');
  t.same(sent, ['p'], 'the first sync releases only the first barrier');
  await waitUntil(() => syncs.length === 1, 'the second sync');
  t.same(projects(), ['p', 'q'], 'the second barrier committed before its sync');
  finish();
  await waitUntil(() => sent.length === 2, 'the second message');
  t.same(sent, ['p', 'q']);

  // A failed sync: nothing more goes out, the engine gives up and says so once.
  const failures: Error[] = [];
  engine.onFailed = (e) => failures.push(e);
  store.ensureProject('r', 'token-r');
  store.afterDurable(() => sent.push('r'));
  await waitUntil(() => syncs.length === 1, 'the third sync');
  finish(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
  await waitUntil(() => failures.length === 1, 'the engine to give up');
  t.match(failures[0]?.message, /could not sync its WAL to disk \(EIO: i\/o error, fdatasync\): this scheduler must stop/);
  t.equal(engine.lost, failures[0], 'the reason is kept for whoever stops the scheduler');
  t.throws(() => store.ensureProject('s', 'token-s'), /must stop/, 'no write after it');
  t.same(sent, ['p', 'q'], 'the message of the unsynced commit never went out');
});

t.test("SQLite: the group commit's WAL sync runs on the event loop while syncs are fast, in the threadpool once they are slow, and back", async (t) => {
  const { store, engine } = sqliteStore(t, 'wal-sync-where');
  const where: string[] = [];
  // A disk as fast or slow as the test says (no real sync: the test is about where syncs run, and
  // this machine's disk must not decide it): a sync on the loop takes `slowMs` (a busy wait stands
  // for the disk; the engine times the call), the threadpool answers as late (a timer stands for it).
  let slowMs = 0;
  engine.walSyncNow = () => {
    where.push('loop');
    const until = performance.now() + slowMs;
    while (performance.now() < until) {}
  };
  engine.walSync = (_fd, done) => {
    where.push('threadpool');
    if (slowMs > 0) setTimeout(() => done(null), slowMs);
    else setImmediate(() => done(null)); // a timer of 0 is 1 ms in Node
  };
  const sent: string[] = [];
  const write = async (name: string) => {
    store.ensureProject(name, `token-${name}`);
    store.afterDurable(() => sent.push(name));
    await waitUntil(() => sent.includes(name), `${name}'s message, after its sync`);
  };

  await write('a');
  t.same(where, ['loop'], 'a fast disk (the first sync): on the event loop, no hand-off');
  t.ok(engine.syncCost.onLoop);

  slowMs = 3 * engine.inlineSyncMaxMs + 1;
  for (let i = 0; where.at(-1) !== 'threadpool'; i++) {
    if (i === 20) return t.fail(`still on the loop after 20 slow syncs: ${where.join(',')}`);
    await write(`slow-${i}`);
  }
  t.ok(where.filter((w) => w === 'loop').length <= 4, `a slow disk: the threadpool after a few slow syncs (${where.join(',')})`);
  t.notOk(engine.syncCost.onLoop);

  slowMs = 0;
  const before = where.length;
  for (let i = 0; where.at(-1) !== 'loop'; i++) {
    if (i === 50) return t.fail(`still in the threadpool after 50 fast syncs: ${where.slice(before).join(',')}`);
    await write(`fast-${i}`);
  }
  t.pass(`fast again: back on the loop after ${where.length - before - 1} syncs in the threadpool`);
  t.equal(sent[0], 'a', 'every message went out after its sync');
  t.equal(new Set(sent).size, sent.length);
});

t.test('SQLite: a failed sync on the event loop stops the store as one in the threadpool does: nothing waiting goes out, one reason', async (t) => {
  const { store, engine } = sqliteStore(t, 'wal-sync-loop-fails');
  const failures: Error[] = [];
  engine.onFailed = (e) => failures.push(e);
  let calls = 0;
  engine.walSyncNow = () => {
    calls++;
    throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
  };
  engine.walSync = () => t.fail('a fast disk syncs on the loop: the threadpool is not asked');
  const sent: string[] = [];
  store.ensureProject('p', 'token-p');
  store.afterDurable(() => sent.push('p'));
  await waitUntil(() => failures.length === 1, 'the engine to give up');
  t.equal(calls, 1, 'tried once, never again (its pages may be gone)');
  t.match(failures[0]?.message, /could not sync its WAL to disk \(EIO: i\/o error, fdatasync\): this scheduler must stop/);
  t.equal(engine.lost, failures[0], 'the reason is kept for whoever stops the scheduler');
  t.throws(() => store.ensureProject('q', 'token-q'), /must stop/, 'no write after it');
  t.same(sent, [], 'the message of the unsynced commit never went out');
});

t.test('SQLite: a barrier called directly (the CLI, the network stamp) syncs the WAL before it returns', async (t) => {
  const { workdir, store } = sqliteStore(t, 'barrier-sync');
  const synced: number[] = [];
  const real = fs.fdatasyncSync;
  fs.fdatasyncSync = (fd: number) => {
    synced.push(fs.fstatSync(fd).ino);
    real(fd);
  };
  syncBuiltinESMExports();
  t.teardown(() => {
    fs.fdatasyncSync = real;
    syncBuiltinESMExports();
  });
  store.createToken('join', {}, Date.now());
  t.same(synced, [], 'a write syncs nothing');
  store.barrier();
  t.same(synced, [fs.statSync(join(workdir, 'scheduler.sqlite-wal')).ino], 'the barrier synced the WAL, on the caller’s thread');
  store.barrier();
  t.equal(synced.length, 1, 'nothing new: no second sync');
});
