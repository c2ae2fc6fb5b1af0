/**
 * The store's own speed on its hot path, in one process, on the SQLite binding lib/store/sqlite.ts
 * wraps: per artifact one createArtifact transaction, then per job RUNNING, a 200-byte inline
 * resource, COMPLETED and a status() read, and (unless BARRIER=0) one barrier, the
 * synchronous=FULL commit the group commit runs once per cascade. Prints one JSON line, with the
 * CPU time per artifact (steadier than the wall time on a shared machine).
 *
 *   node --import tsx bench/store.ts            # N=400 artifacts of 5 jobs, in a temp folder
 *   BARRIER=0 N=1000 node --import tsx bench/store.ts
 *   BENCH_STORE_URL=postgres://u:p@host/db node --import tsx bench/store.ts   # on PostgreSQL (an empty database)
 *
 * On PostgreSQL a barrier is the COMMIT of the open transaction (lib/store/postgres.ts), and the
 * CPU time is this process's only (the server's is not counted): compare the wall times.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bindArtifact } from '../lib/plan/index.ts';
import { Store } from '../lib/store/store.ts';
import { RetryPolicySchema, type Step } from '../protocols/entities.ts';

const STEPS: Step[] = [
  { kind: 'Parallel', operation: { kind: 'Noop' } },
  { kind: 'Finalize', operation: { kind: 'Noop' } },
];
const N = Number(process.env.N ?? 400);
const barriers = process.env.BARRIER !== '0';
const dir = mkdtempSync(join(tmpdir(), 'fdl-bench-store-'));
const url = process.env.BENCH_STORE_URL;
const store = new Store(dir, { url });
const project = store.ensureProject('p', 'token-123456').id;
const bytes = new Uint8Array(200).fill(7);
const sha256 = createHash('sha256').update(bytes).digest('hex');
let commits = 0;
const started = process.hrtime.bigint();
const cpu = process.cpuUsage();
for (let a = 0; a < N; a++) {
  const id = `a-${a}`;
  store.createArtifact({
    id,
    projectId: project,
    projectToken: 'token-123456',
    spec: { name: id, steps: STEPS },
    policy: RetryPolicySchema.parse({}),
    plan: bindArtifact(STEPS, { initiator: 's', workers: ['w1', 'w2', 'w3', 'w4'] }),
    now: a,
  });
  commits++;
  for (const job of store.jobs(id)) {
    store.updateJob(job.id, { state: 'RUNNING' });
    const ref = store.putResource({ artifactId: id, jobId: job.id, producer: job.worker, sha256 }, bytes, a);
    store.updateJob(job.id, { state: 'COMPLETED', resultResourceId: ref.id });
    store.status(id);
    commits += 3;
  }
  if (barriers) store.barrier();
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const used = process.cpuUsage(cpu);
const cpuSeconds = (used.user + used.system) / 1e6;
store.close();
rmSync(dir, { recursive: true, force: true });
console.log(
  JSON.stringify({
    engine: store.db.kind,
    artifacts: N,
    barriers,
    seconds: +seconds.toFixed(2),
    artifactsPerS: Math.round(N / seconds),
    commitsPerS: Math.round(commits / seconds),
    // CPU time is less bent by other processes on a shared machine than the wall time.
    cpuMsPerArtifact: +((cpuSeconds * 1000) / N).toFixed(3),
  }),
);
