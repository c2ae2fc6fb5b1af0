// Why: `fdl simulate` is how many workers run on one machine (tests, benchmarks, a first look at
// scale). Each packed worker must still be a real worker (its own join, keys, socket and shard),
// so the federated figures over N packed workers must equal the central ones over the union of
// their shards. Run here as a user runs it, with a small N; the big runs are by hand (README).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { defaultProcesses, splitData, syntheticShard } from '../../lib/sim/simulate.ts';
import { PROCESS_FILE_TIMEOUT_MS } from '../helpers/cluster.ts';
import { runFdl } from '../helpers/fdl.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

interface SimulateDoc {
  ok: boolean;
  workers: number;
  processes: number;
  workersPerProcess: number;
  rows: number;
  results: Array<{ statistic: string; federated: number; central: number; match: boolean }>;
  memory: Array<{ process: string; rssMiB?: number }>;
}

const figure = (doc: SimulateDoc, statistic: string) => doc.results.find((r) => r.statistic === statistic);

t.test('fdl simulate --workers 12 --processes 3 prints every federated figure beside the equal central one', async (t) => {
  const r = await runFdl(['simulate', '--workers', '12', '--processes', '3', '--synthetic', '200']);
  t.equal(r.code, 0, r.stderr);
  for (const f of ['x1', 'x2', 'x3', 'y']) t.match(r.stdout, new RegExp(`mean ${f} .* yes\\n`), `the mean of ${f} matches`);
  t.match(r.stdout, /every federated figure equals the central one/);
  t.match(r.stderr, /12 workers in 3 processes \(4 per process\)/);
});

t.test('fdl simulate --json: 12 workers of 200 rows count 2,400 rows, in 3 worker processes', async (t) => {
  const r = await runFdl(['simulate', '--workers', '12', '--processes', '3', '--synthetic', '200', '--json']);
  t.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as SimulateDoc;
  t.equal(doc.ok, true);
  t.equal(doc.rows, 12 * 200, 'the union of the shards');
  t.equal(figure(doc, 'count')?.federated, 12 * 200, 'the federated count');
  t.equal(figure(doc, 'workers')?.federated, 12, 'twelve workers joined, each with its own identity');
  t.same(
    doc.memory.map((m) => m.process).sort(),
    ['host-1', 'host-2', 'host-3', 'scheduler'],
    'a scheduler and three worker processes',
  );
  t.ok(doc.results.every((x) => x.match));
});

t.test('fdl simulate --rounds 2 trains FedAvg over every row and scores as the central trainer does', async (t) => {
  const r = await runFdl(['simulate', '--workers', '12', '--processes', '3', '--synthetic', '200', '--rounds', '2', '--json']);
  t.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as SimulateDoc;
  t.equal(figure(doc, 'FedAvg samples in round 2')?.federated, 12 * 200);
  t.equal(figure(doc, 'FedAvg accuracy on the union (2 rounds)')?.match, true);
  t.ok((figure(doc, 'FedAvg accuracy on the union (2 rounds)')?.federated ?? 0) > 0.7, 'and it learned something');
});

t.test('shards: synthetic ones are seeded; CSV files split by file, or by rows when fewer than workers', async (t) => {
  t.equal(syntheticShard(3, 50), syntheticShard(3, 50), 'the same worker gets the same rows');
  t.not(syntheticShard(3, 50), syntheticShard(4, 50), 'another worker, other rows');
  const dir = mkdtempSync(join(tmpdir(), 'fdl-split-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'a.csv'), 'x,y\n1,0\n2,1\n3,0\n');
  writeFileSync(join(dir, 'b.csv'), 'x,y\n4,1\n5,0\n');
  t.same(splitData(dir, 2, join(dir, 'out')).map((s) => s.map((f) => f.slice(dir.length + 1))), [['a.csv'], ['b.csv']], 'one file each');
  const byRows = splitData(dir, 3, join(dir, 'out'));
  t.same(
    byRows.map(([f]) => readFileSync(f as string, 'utf8')),
    ['x,y\n1,0\n4,1\n', 'x,y\n2,1\n5,0\n', 'x,y\n3,0\n'],
    'rows dealt round robin, the header on each',
  );
  t.throws(() => splitData(dir, 6, join(dir, 'out')), /5 rows: fewer than the 6 workers/);
  t.equal(defaultProcesses(12, 2), 4, 'two per core');
  t.equal(defaultProcesses(1000, 2), 20, 'at most 50 workers per process');
  t.equal(defaultProcesses(3, 2), 3, 'never more processes than workers');
});
