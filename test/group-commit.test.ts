// Group commit is what lets the scheduler skip an fsync per transition without breaking its promise:
// nothing it tells a peer may go out before the state behind it is durable. These tests pin that
// promise (a message waits for the barrier, in order, and is held while the barrier fails) and that
// the barrier is shared by the changes of one cascade.
import { join } from 'node:path';
import t from 'tap';
import { type Durable, GroupCommit, HOLD_MAX_MS } from '../lib/store/group-commit.ts';
import { forEachEngine } from './helpers/engines.ts';

/** A store stand-in: `write()` is a change; `barrier()` can be made to fail. */
class FakeStore implements Durable {
  count = 0;
  synced = 0;
  failing = false;
  barrierCalls = 0;
  write(): void {
    this.count++;
  }
  changes(): number {
    return this.count;
  }
  barrier(): void {
    this.barrierCalls++;
    if (this.failing) throw new Error('ENOSPC: no space left on device');
    this.synced = this.count;
  }
}

/** Resolves once `cond` holds, checking after every event-loop turn; fails with `what` after `ms`. */
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

t.test('a message waits for the barrier that makes its state durable; nothing pending, it goes at once', async (t) => {
  const store = new FakeStore();
  const errors: unknown[] = [];
  const commit = new GroupCommit(store, (e) => errors.push(e));
  const sent: string[] = [];

  commit.afterDurable(() => sent.push('clean'));
  t.same(sent, ['clean'], 'nothing changed: sent at once, no barrier');
  t.equal(store.barrierCalls, 0);

  store.write();
  commit.afterDurable(() => sent.push(`a (durable up to ${store.synced})`));
  store.write(); // the cascade goes on: a second change before the barrier
  commit.afterDurable(() => sent.push(`b (durable up to ${store.synced})`));
  t.same(sent, ['clean'], 'held while the change is not durable');
  await until(() => sent.length === 3, 'the held messages');
  t.same(sent, ['clean', 'a (durable up to 2)', 'b (durable up to 2)'], 'in order, after one barrier covering both changes');
  t.equal(store.barrierCalls, 1, 'one barrier for the cascade');
  t.equal(commit.barriers, 1);
  t.same(errors, []);
});

t.test('a hold keeps the barrier waiting for in-process work of the cascade, until released or for HOLD_MAX_MS at most', async (t) => {
  const store = new FakeStore();
  // Holds that last long enough for this test's turns however loaded the machine: their bound is tested below.
  const commit = new GroupCommit(store, () => {}, 60_000);
  const sent: string[] = [];
  store.write(); // the artifact accepted
  const release = commit.hold(); // its init handed to the initiator in-process
  commit.afterDurable(() => sent.push(`accepted (durable up to ${store.synced})`));
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r)); // the init runs, writing nothing
  t.same(sent, [], 'no barrier while the in-process job runs');
  store.write(); // its product and the next job's assignment
  release();
  release(); // idempotent
  commit.afterDurable(() => sent.push(`assigned (durable up to ${store.synced})`));
  await until(() => sent.length === 2, 'both messages');
  t.same(sent, ['accepted (durable up to 2)', 'assigned (durable up to 2)'], 'one barrier covers the cascade and its continuation');
  t.equal(store.barrierCalls, 1);

  // A hold never released (a job cancelled before it reports) ends by itself.
  const short = new GroupCommit(store, () => {});
  store.write();
  short.hold();
  short.afterDurable(() => sent.push('later'));
  await until(() => sent.length === 3, 'the message behind a forgotten hold');
  t.equal(store.barrierCalls, 2);
  t.ok(HOLD_MAX_MS <= 10, 'a hold is a few milliseconds at most');
});

t.test('a failing barrier holds every message until it succeeds', async (t) => {
  const store = new FakeStore();
  const errors: unknown[] = [];
  const commit = new GroupCommit(store, (e) => errors.push(e));
  const sent: number[] = [];
  store.failing = true;
  store.write();
  commit.afterDurable(() => sent.push(1));
  await until(() => errors.length >= 2, 'two failed barriers');
  t.same(sent, [], 'not sent while its state cannot be made durable');
  t.match(String(errors[0]), /ENOSPC/);
  commit.afterDurable(() => sent.push(2));
  store.failing = false;
  await until(() => sent.length === 2, 'the messages after the disk recovered');
  t.same(sent, [1, 2], 'in order');
  t.equal(store.synced, 1);
});

forEachEngine(t, 'the real store: a change, then a message: the message waits for its barrier (SQLite: a FULL commit; PostgreSQL: the COMMIT)', async (t, open) => {
  const dir = t.testdir({});
  const store = open(join(dir, 'work'));
  t.teardown(() => store.close());
  const sent: string[] = [];
  store.afterDurable(() => sent.push('before any change'));
  t.same(sent, ['before any change']);

  const before = store.barriers;
  store.ensureProject('p', 'token-1');
  store.afterDurable(() => sent.push(`after the project (barriers ${store.barriers - before})`));
  t.equal(sent.length, 1, 'held');
  await until(() => sent.length === 2, 'the message');
  t.same(sent[1], 'after the project (barriers 1)');

  // A read changes nothing: the next message goes at once.
  store.listProjects();
  store.afterDurable(() => sent.push('after a read'));
  t.equal(sent.length, 3);
  t.equal(store.barriers - before, 1);
});

t.test('closing flushes what waits, and a tick still queued does not touch the closed store', async (t) => {
  const store = new FakeStore();
  const commit = new GroupCommit(store, () => {});
  const sent: string[] = [];
  store.write();
  commit.afterDurable(() => sent.push('last words'));
  commit.close();
  t.same(sent, ['last words'], 'flushed at close');
  t.equal(store.synced, 1);
  const changes = store.changes.bind(store);
  store.changes = () => {
    throw new Error('the database connection is not open');
  };
  await new Promise((r) => setTimeout(r, 0)); // the tick queued before close runs now
  await new Promise((r) => setImmediate(r));
  store.changes = changes;
  t.pass('no tick touched the closed store');
});

t.test('a write nobody waits for still gets its barrier (an open transaction never idles)', async (t) => {
  const store = new FakeStore();
  const commit = new GroupCommit(store, () => {});
  t.teardown(() => commit.close());
  store.write();
  commit.soon(); // what an engine calls when it begins a transaction
  commit.soon(); // a second call arms nothing more
  t.equal(store.barrierCalls, 0, 'not at once: the next cascade that waits for one may cover it');
  await until(() => store.synced === 1, 'the lazy barrier');
  t.equal(store.barrierCalls, 1, 'one barrier');
});

/**
 * A store that splits its barrier as SQLite's does: `commit()` ends the transaction, `sync(done)`
 * is answered by the test (`syncs`), as libuv's threadpool would answer an fdatasync.
 */
class SplitStore extends FakeStore {
  committed = 0;
  commitCalls = 0;
  readonly syncs: Array<{ covers: number; done: (e?: Error) => void }> = [];
  commit(): void {
    this.commitCalls++;
    this.committed = this.count;
  }
  sync(done: (e?: Error) => void): void {
    const covers = this.committed;
    this.syncs.push({
      covers,
      done: (e) => {
        if (!e) this.synced = Math.max(this.synced, covers);
        done(e);
      },
    });
  }
  /** Answers the oldest sync asked for. */
  finishSync(e?: Error): void {
    const sync = this.syncs.shift();
    if (!sync) throw new Error('no sync under way');
    sync.done(e);
  }
}

t.test('a split barrier: held messages wait for the sync, the loop goes on, and syncs are ordered', async (t) => {
  const store = new SplitStore();
  const errors: unknown[] = [];
  const commit = new GroupCommit(store, (e) => errors.push(e));
  const sent: string[] = [];

  store.write();
  commit.afterDurable(() => sent.push(`a (durable up to ${store.synced})`));
  await until(() => store.syncs.length === 1, 'the first sync to be asked for');
  t.equal(store.commitCalls, 1, 'committed');
  t.equal(store.barrierCalls, 0, 'no barrier on the event loop');
  t.same(sent, [], 'committed is not durable: held');

  // The loop goes on while the sync runs: the next cascade writes and waits for its own barrier,
  // whose commit waits for the sync under way (its messages could not go out before it anyway).
  store.write();
  commit.afterDurable(() => sent.push(`b (durable up to ${store.synced})`));
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r)); // long past the quiet turns
  t.equal(store.commitCalls, 1, 'the second commit waits for the first sync');
  store.write(); // a third change meanwhile joins it
  // A message with nothing new since its change rides the barrier that covers it.
  commit.afterDurable(() => sent.push(`c (durable up to ${store.synced})`));
  t.same(sent, [], 'all held');

  store.finishSync();
  t.same(sent, ['a (durable up to 1)'], "the first sync releases only its barrier's messages");
  t.equal(store.commitCalls, 2, 'then the waiting barrier commits, once for both changes');
  t.equal(store.syncs.length, 1, 'and its sync starts');
  t.equal(store.syncs[0]?.covers, 3, 'covering them');
  store.finishSync();
  t.same(sent, ['a (durable up to 1)', 'b (durable up to 3)', 'c (durable up to 3)'], 'then the next, in order');
  t.equal(commit.barriers, 2);

  // Everything durable: a message goes at once again.
  commit.afterDurable(() => sent.push('d'));
  t.equal(sent.at(-1), 'd');
  t.same(errors, []);
});

t.test('a split barrier whose sync fails releases nothing, now or later, and says so', async (t) => {
  const store = new SplitStore();
  const errors: unknown[] = [];
  const commit = new GroupCommit(store, (e) => errors.push(e));
  const sent: string[] = [];
  store.write();
  commit.afterDurable(() => sent.push('a'));
  await until(() => store.syncs.length === 1, 'the sync');
  store.finishSync(new Error('EIO: i/o error, fdatasync'));
  t.match(String(errors[0]), /EIO/, 'the error is told');
  commit.afterDurable(() => sent.push('b (nothing new)'));
  store.write();
  commit.afterDurable(() => sent.push('c (a new change)'));
  commit.atNextBarrier(() => sent.push('d (a rider)'));
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  t.same(sent, [], 'never released: a failed fdatasync is not retried (its pages may be gone)');
  t.equal(store.syncs.length, 0, 'no second sync');
  commit.close();
  t.same(sent, [], 'not at close either');
});

t.test('closing during a sync makes everything durable at once, in order, and the late sync does nothing', async (t) => {
  const store = new SplitStore();
  const commit = new GroupCommit(store, () => {});
  const sent: string[] = [];
  store.write();
  commit.afterDurable(() => sent.push('a'));
  await until(() => store.syncs.length === 1, 'the sync');
  store.write();
  commit.afterDurable(() => sent.push('b'));
  commit.close();
  t.equal(store.barrierCalls, 1, 'one barrier on the caller’s thread');
  t.equal(store.synced, 2);
  t.same(sent, ['a', 'b'], 'released in order');
  store.finishSync();
  t.same(sent, ['a', 'b'], 'the late sync releases nothing twice');
});
