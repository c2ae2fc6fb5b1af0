// Why: an example that no longer runs teaches the wrong thing. Both model examples run here as
// a researcher runs them (`npx tsx examples/x.ts`, a separate process), against one cluster
// started for this file (through FDL_URL/PROJECT_TOKEN, so they start none of their own).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { SHARDS, testCluster } from '../helpers/cluster.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const { cluster, token } = await testCluster(t, 'examples-models', { workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })) });

async function example(name: string): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', `examples/${name}`], {
    cwd: ROOT,
    env: { ...process.env, FDL_URL: cluster.url, FDL_TOKEN: cluster.workbenchToken, PROJECT_TOKEN: token },
    timeout: 120_000,
  });
  return stdout;
}

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
