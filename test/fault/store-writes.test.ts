// Why: a scheduler that cannot store a reported product (disk full, permissions, a broken mount)
// must say so at once, as a failed attempt with the real cause, retried like any other; not drop
// the report and let the job run into its attempt timeout (10 min by default) with a cause that
// hides the real one. The fault is real: the scheduler's resources folder is replaced by a
// regular file, so every write into it fails with ENOTDIR (root ignores permission bits).
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { steps } from '../../lib/workbench.ts';
import { PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster, until } from '../helpers/cluster.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const { wb, token, dir } = await testCluster(t, 'fault-store-writes', {
  workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
  // The default attempt timeout (10 min) stands: the failure must not wait for it.
  // Every resource a file (small ones are database rows by default): the folder is what breaks here.
  scheduler: { retry: { initial_interval_ms: 100, max_interval_ms: 200 }, store: { inline_resource_max_bytes: 0 } },
});

t.test('a product the scheduler cannot store fails its attempt at once with STORE_WRITE_FAILED and the cause, retried per policy', async (t) => {
  const resources = join(dir, 'scheduler', 'resources');
  renameSync(resources, `${resources}.aside`);
  writeFileSync(resources, 'not a folder');
  try {
    const project = await wb.project(token);
    const handle = await project.submit({
      steps: [steps.parallel({ kind: 'Noop' }), steps.finalize({ kind: 'Noop' })],
      policy: { maxAttempts: 2 },
    });
    const failures: Array<{ worker: string; attempt: number; code: string | undefined; message: string | undefined }> = [];
    handle.on('event', (e) => {
      if (e.event.kind === 'jobState' && e.event.state === 'FAILED') {
        failures.push({ worker: e.event.worker, attempt: e.event.attempt, code: e.event.error?.code, message: e.event.error?.message });
      }
    });
    // Bounded far below the attempt timeout: before the fix the report was dropped and nothing came.
    await until(() => failures.length > 0, 30_000, 'a FAILED jobState event for the product that could not be stored');
    t.match(failures[0], { attempt: 1, code: 'STORE_WRITE_FAILED', message: /ENOTDIR/ }, 'the attempt failed with the real cause');

    await t.rejects(handle.done(), { code: 'STORE_WRITE_FAILED' }, 'out of attempts: the artifact fails with the cause');
    const status = await wb.status(handle.id);
    t.equal(status.state, 'ERROR');
    t.equal(status.error?.error.code, 'STORE_WRITE_FAILED');
    t.match(status.error?.error.message, /ENOTDIR/, 'the artifact error names the system cause');
    const failed = status.jobs.find((j) => j.id === status.error?.jobId);
    t.equal(failed?.attempt, 2, 'retried per policy (maxAttempts 2) before giving up');
  } finally {
    rmSync(resources);
    renameSync(`${resources}.aside`, resources);
  }
  const again = await (await wb.project(token)).submit([steps.parallel({ kind: 'Noop' }), steps.finalize({ kind: 'Noop' })]);
  t.same(await again.result(), { products: 2 }, 'with the folder back, products are stored again');
});
