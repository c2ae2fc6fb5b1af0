// Why: an example that no longer runs teaches the wrong thing. Every example runs here as a
// researcher runs it (`npx tsx examples/x.ts`, a separate process): against one cluster started
// for this file (through FDL_URL/FDL_TOKEN/PROJECT_TOKEN), and once with nothing set, when the
// script starts and stops a local cluster of its own.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster } from '../helpers/cluster.ts';
import { FDL_RUN_TIMEOUT_MS } from '../helpers/fdl.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const { cluster, token } = await testCluster(t, 'examples', { workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })) });

async function example(name: string, env: NodeJS.ProcessEnv = { FDL_URL: cluster.url, FDL_TOKEN: cluster.workbenchToken, PROJECT_TOKEN: token }): Promise<string> {
  const { FDL_URL: _u, FDL_TOKEN: _t, PROJECT_TOKEN: _p, ...rest } = process.env;
  const { stdout } = await run(process.execPath, ['--import', 'tsx', `examples/${name}`], {
    cwd: ROOT,
    env: { ...rest, ...env },
    // A safety bound, not an assertion (see FDL_RUN_TIMEOUT_MS).
    timeout: FDL_RUN_TIMEOUT_MS,
  });
  return stdout;
}

t.test('examples/statistics.ts prints the federated statistics', async (t) => {
  const out = await example('statistics.ts');
  t.notMatch(out, /started a local cluster/, 'it used the given scheduler');
  t.match(out, /project: 18576 rows on 2 workers/);
  t.match(out, /MedInc\s+3\.8718\s+1\.8979/, 'mean and std of MedInc');
  t.match(out, /MedHouseValDiscrete=1: 5246 rows/);
  t.match(out, /MedInc: p10 [\d.]+, median 3\.5\d+, p90 [\d.]+ \(each within 0\.00725\)/);
  t.match(out, /HouseAge 50-55 +\d+ #+/);
  t.match(out, /correlation \(18576 rows\)/);
  t.match(out, /count with differential privacy \(epsilon 1 per worker\): \d+ \(exact: 18576\)/);
});

t.test('examples/pipeline.ts fits a pipeline federatedly and splits with a seed', async (t) => {
  const out = await example('pipeline.ts');
  t.match(out, /StandardScaler: fitted \[\{"mean":3\.87\d*,"std":1\.88\d*\}/);
  t.match(out, /KBinsDiscretizer: fitted \[\{"edges":\[1,[\d.,]+,52\]\}\]/);
  const split = /split: (\d+) train rows, (\d+) test rows/.exec(out);
  t.ok(split, 'the split is printed');
  t.equal(Number(split?.[1]) + Number(split?.[2]), 18363, 'train + test = the rows with Population >= 100');
  t.match(out, /age quartile 3: \d+ rows/);
  t.match(out, /correlation with MedHouseValDiscrete \(train\): MedInc 0\.5\d+/);
  // The same seed gives the same split: a second run prints the same counts.
  t.match(await example('pipeline.ts'), new RegExp(`split: ${split?.[1]} train rows, ${split?.[2]} test rows`));
});

t.test('examples/logistic-regression.ts trains over rounds and scores the validation file', async (t) => {
  const out = await example('logistic-regression.ts');
  t.notMatch(out, /started a local cluster/, 'it used the given scheduler');
  t.match(out, /round 10: trained on \d+ rows; test accuracy 0\.\d+/);
  const acc = Number(/validation \(2064 rows\): accuracy (0\.\d+)/.exec(out)?.[1]);
  t.ok(acc > 0.8, `validation accuracy ${acc}`);
  t.match(out, /confusion matrix/);
});

t.test('examples/random-forest.ts trains both strategies and cross-validates', async (t) => {
  const out = await example('random-forest.ts');
  for (const strategy of ['merge', 'majority']) {
    const acc = Number(new RegExp(`${strategy}: 60 trees;.*validation accuracy (0\\.\\d+)`).exec(out)?.[1]);
    t.ok(acc > 0.85, `${strategy}: validation accuracy ${acc}`);
  }
  t.match(out, /5-fold cross-validation on 2 workers, 18576 out-of-fold rows/);
});

t.test('with nothing set, an example starts a local cluster of its own and stops it', async (t) => {
  const out = await example('statistics.ts', {});
  t.match(out, /started a local cluster at ws:\/\/127\.0\.0\.1:\d+/);
  t.match(out, /project: 18576 rows on 2 workers/);
});
