import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { Cluster, type ClusterOptions, EXAMPLE_DATA } from '../../lib/sim/cluster.ts';
import type { Workbench } from '../../lib/workbench.ts';

export const SHARDS = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f) => join(EXAMPLE_DATA, f));
export const VALIDATION = join(EXAMPLE_DATA, 'california_housing.validation.csv');

/** A cluster in a temporary folder, torn down (processes stopped, folder removed) with the test. */
export async function testCluster(
  t: Test,
  name: string,
  opts: Partial<ClusterOptions> & Pick<ClusterOptions, 'workers'>,
): Promise<{ cluster: Cluster; wb: Workbench; token: string; dir: string }> {
  const token = randomBytes(16).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), `fdl-${name}-`));
  const cluster = await Cluster.start({ dir, projectName: 'california', projectToken: token, ...opts });
  const wb = await cluster.connect();
  t.teardown(async () => {
    wb.close();
    await cluster.stop();
    if (!process.env.FDL_KEEP_TEST_DIRS) rmSync(dir, { recursive: true, force: true });
  });
  return { cluster, wb, token, dir };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` holds (for waiting on a state pushed elsewhere); fails after `timeoutMs`. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
