// Why: beyond loopback, tokens and results must not travel in clear. A scheduler with a
// certificate serves wss://; workers and workbenches that trust it run the whole path over TLS,
// and a client that does not trust the certificate cannot connect.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { CountProduct } from '../../lib/workbench.ts';
import { Workbench } from '../../lib/workbench.ts';
import { PROCESS_FILE_TIMEOUT_MS, SHARDS, testCluster } from '../helpers/cluster.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const certs = mkdtempSync(join(tmpdir(), 'fdl-certs-'));
const cert = join(certs, 'cert.pem');
const key = join(certs, 'key.pem');
// A self-signed certificate for 127.0.0.1, made here (openssl ships with the system).
execFileSync('openssl', [
  'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
  '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
], { stdio: 'ignore' });

const { cluster, wb, token } = await testCluster(t, 'tls', {
  workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })),
  tls: { cert, key, ca: cert },
});

t.test('the whole path runs over wss:// with a self-signed certificate', async (t) => {
  t.match(cluster.url, /^wss:\/\/127\.0\.0\.1:\d+$/);
  t.equal((await wb.nodes()).filter((n) => n.connected).length, 3, 'both workers joined over TLS');
  const project = await wb.project(token);
  t.equal((await (await project.count()).result<CountProduct>()).count, 9288 * 2);
});

t.test('a client that does not trust the certificate cannot connect', async (t) => {
  await t.rejects(Workbench.connect(cluster.url, { token: cluster.workbenchToken, reconnect: false }), /cannot reach the scheduler/);
  await t.rejects(
    Workbench.connect(cluster.url.replace('wss://', 'ws://'), { token: cluster.workbenchToken, reconnect: false }),
    'plain ws:// to the TLS port fails',
  );
});
