/**
 * SQLite against PostgreSQL as the scheduler's store, in the same run on the same machine:
 *  1. the store in this process: one read by key (`projectByToken`), one write (`nodeLeft`) and
 *     one barrier (SQLite: the FULL commit's fsync; PostgreSQL: the COMMIT), and a bare
 *     `SELECT 1` through the PostgreSQL bridge (worker thread + Atomics.wait): its per-query cost;
 *     and the barrier again with the failover lease's fence before each COMMIT;
 *  2. a cluster (scheduler + 2 worker processes, California shards) on each engine: a tiny
 *     artifact `[Parallel(Noop, Collect), Finalize(Noop)]` submit -> result (median), and the
 *     per-round cost of a tiny Iterate from wall(R = 25) - wall(R = 5).
 *
 *   node --import tsx bench/store-engines.ts      # needs the test PostgreSQL (scripts/test-postgres.sh)
 *
 * BENCH_REPEATS (5), BENCH_QUERIES (2000). Each PostgreSQL part gets a database of its own, dropped after.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Cluster, EXAMPLE_DATA } from '../lib/sim/cluster.ts';
import { createLogger } from '../lib/log.ts';
import { Lease } from '../lib/store/lease.ts';
import { PostgresEngine } from '../lib/store/postgres.ts';
import { Store } from '../lib/store/store.ts';
import { distributions, steps } from '../lib/workbench.ts';
import type { Step } from '../protocols/entities.ts';
import { testDatabase } from '../test/helpers/postgres.ts';
import { perRound } from './rounds.ts';
import { Cleanup, median, ms, now, type Row, ratio, table } from './util.ts';

const REPEATS = Number(process.env.BENCH_REPEATS ?? 5);
const QUERIES = Number(process.env.BENCH_QUERIES ?? 2000);
const SHARDS = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f) => join(EXAMPLE_DATA, f));

const cleanup = new Cleanup();
const database = (label: string) => testDatabase({ teardown: (fn) => cleanup.add(`drop ${label}`, fn) }, label);

/** Median ms per call of `fn`, over `n` calls in batches (after a warm-up batch). */
function perCall(n: number, fn: (i: number) => void): number {
  const batches: number[] = [];
  const size = Math.max(1, Math.floor(n / 10));
  for (let b = -1; b < 10; b++) {
    const t0 = now();
    for (let i = 0; i < size; i++) fn(i);
    if (b >= 0) batches.push((now() - t0) / size);
  }
  return median(batches);
}

function storeFigures(store: Store): { read: number; write: number; barrier: number } {
  store.ensureProject('p', 'token-123456');
  store.upsertNode({ id: 'w1', name: 'w1', role: 'worker', lastSeen: 1, projects: [] });
  store.barrier();
  const read = perCall(QUERIES, () => store.projectByToken('token-123456'));
  const write = perCall(QUERIES, (i) => store.nodeLeft('w1', i));
  store.barrier();
  const barrier = perCall(200, (i) => {
    store.nodeLeft('w1', i);
    store.barrier();
  });
  return { read, write, barrier };
}

async function clusterFigures(label: string, scheduler: Record<string, unknown>) {
  const dir = cleanup.tempDir(`fdl-bench-engines-${label}-`);
  const token = randomBytes(16).toString('hex');
  const cluster = await Cluster.start({
    dir,
    projectName: 'california',
    projectToken: token,
    workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
    scheduler,
    env: { FDL_LOG_LEVEL: 'warn' },
  });
  cleanup.add(`cluster ${label}`, () => cluster.stop());
  const wb = await cluster.connect('bench-engines');
  cleanup.add(`workbench ${label}`, () => wb.close());
  const project = await wb.project(token);
  const tinySteps = [
    { kind: 'Parallel' as const, operation: { kind: 'Noop' as const }, distribution: distributions.collect() },
    { kind: 'Finalize' as const, operation: { kind: 'Noop' as const } },
  ];
  const tinyArtifact: Step[] = tinySteps;
  const walls: number[] = [];
  for (let r = -1; r < REPEATS * 4; r++) {
    const t0 = now();
    await (await project.submit(tinyArtifact)).result();
    if (r >= 0) walls.push(now() - t0);
  }
  const tiny = (rounds: number): Step[] => [steps.iterate(rounds, tinySteps)];
  const rounds = await perRound(project, tiny, 5, 25, REPEATS);
  wb.close();
  await cluster.stop();
  return { artifact: median(walls), round: rounds.perRound };
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const sqliteStore = new Store(cleanup.tempDir('fdl-bench-engines-store-'));
  const sqlite = storeFigures(sqliteStore);
  sqliteStore.close();
  const url = await database('bench_store');
  const pgStore = new Store(cleanup.tempDir('fdl-bench-engines-pgstore-'), { url });
  const pg = storeFigures(pgStore);
  pgStore.close();
  // The same with the failover lease's fence before each COMMIT (every scheduler on PostgreSQL runs it).
  const fencedUrl = await database('bench_fenced');
  const lease = await Lease.acquire({ url: fencedUrl, holder: 'bench', leaseMs: 60_000, log: createLogger('bench', 'silent'), onLost: () => {} });
  const fencedStore = new Store(cleanup.tempDir('fdl-bench-engines-fenced-'), { url: fencedUrl });
  (fencedStore.db as PostgresEngine).beforeCommit = () => lease.fence(fencedStore.db);
  const fenced = storeFigures(fencedStore);
  fencedStore.close();
  await lease.release();
  const engine = new PostgresEngine(await database('bench_bridge'));
  const select1 = engine.prepare('SELECT 1 AS one');
  const bridge = perCall(QUERIES, () => select1.get());
  engine.close();
  for (const [figure, key] of [
    ['store: a read by key', 'read'],
    ['store: a write (no barrier)', 'write'],
    ['store: a write + its barrier', 'barrier'],
  ] as const) {
    rows.push({ figure: `${figure}, PostgreSQL`, value: ms(pg[key]), baseline: `SQLite ${ms(sqlite[key])}`, ratio: ratio(pg[key] / sqlite[key]) });
  }
  rows.push({ figure: 'store: a write + its barrier, fenced by the lease', value: ms(fenced.barrier), baseline: `unfenced ${ms(pg.barrier)}`, ratio: ratio(fenced.barrier / pg.barrier) });
  rows.push({ figure: 'bridge: SELECT 1 (thread hop + loopback round trip)', value: ms(bridge), note: 'outside a transaction: no savepoint' });
  process.stdout.write(`[engines] store in process: SQLite ${JSON.stringify(sqlite)} PostgreSQL ${JSON.stringify(pg)} bridge ${ms(bridge)}\n`);

  const onSqlite = await clusterFigures('sqlite', {});
  const onPg = await clusterFigures('postgres', { store: { url: await database('bench_cluster') } });
  rows.push({ figure: 'tiny artifact submit -> result, PostgreSQL', value: ms(onPg.artifact), baseline: `SQLite ${ms(onSqlite.artifact)}`, ratio: ratio(onPg.artifact / onSqlite.artifact) });
  rows.push({ figure: 'tiny Iterate round (R 5..25), PostgreSQL', value: ms(onPg.round), baseline: `SQLite ${ms(onSqlite.round)}`, ratio: ratio(onPg.round / onSqlite.round) });
  process.stdout.write(`${table(rows)}\n`);
}

try {
  await main();
} finally {
  await cleanup.run();
}
