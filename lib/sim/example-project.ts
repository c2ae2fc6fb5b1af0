import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Project, Workbench } from '../workbench/client.ts';
import { Cluster, EXAMPLE_DATA } from './cluster.ts';

/**
 * What every example script starts with: the project at FDL_URL / FDL_TOKEN (a workbench token)
 * / PROJECT_TOKEN when they are set, otherwise a local cluster (a scheduler and two workers, one
 * California shard each) started for the script. `close()` stops what was started.
 */
export async function openExampleProject(): Promise<{ wb: Workbench; project: Project; close(): Promise<void> }> {
  let url = process.env.FDL_URL;
  let token = process.env.PROJECT_TOKEN;
  let wbToken = process.env.FDL_TOKEN;
  let cluster: Cluster | undefined;
  let dir: string | undefined;
  if (!url || !token || !wbToken) {
    token = randomBytes(16).toString('hex');
    dir = mkdtempSync(join(tmpdir(), 'fdl-example-'));
    const shards = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'];
    cluster = await Cluster.start({
      dir,
      projectName: 'california',
      projectToken: token,
      workers: shards.map((f, i) => ({ name: `worker-${i + 1}`, files: [join(EXAMPLE_DATA, f)] })),
    });
    url = cluster.url;
    wbToken = cluster.workbenchToken;
    console.log(`started a local cluster at ${url}`);
  }
  const wb = await Workbench.connect(url, { token: wbToken });
  const close = async () => {
    wb.close();
    if (cluster) await cluster.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    return { wb, project: await wb.project(token), close };
  } catch (e) {
    await close();
    throw e;
  }
}
