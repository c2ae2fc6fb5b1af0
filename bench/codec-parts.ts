import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * The codec's pieces of a request round trip, each timed alone (CPU per call, the best of 7 runs
 * of 20,000), for the trees named on the command line, alternating: `node --import tsx
 * bench/codec-parts.ts /work/main .` (default: this tree). The values are the protocol corpus's
 * `status/completed.json` (a 4-job status, 1.3 KiB on the wire) and `projectList/basic.json`.
 * A kept status is a deep-frozen one, as the store hands it out (lib/store/store.ts); JSON's
 * native stringify and parse of the same reply are the floor for any codec written in JavaScript.
 */

const corpus = (name: string) => JSON.parse(readFileSync(new URL(`../test/protocol-corpus/${name}`, import.meta.url), 'utf8'));
const { status } = corpus('status/completed.json');
const { projects } = corpus('projectList/basic.json');
const freeze = (v: unknown): void => {
  if (v !== null && typeof v === 'object') {
    Object.freeze(v);
    for (const x of Object.values(v)) freeze(x);
  }
};
const kept = structuredClone(status);
freeze(kept);

function time(n: number, f: () => unknown): number {
  for (let i = 0; i < n / 5; i++) f();
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < 7; r++) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) f();
    const c = process.cpuUsage(c0);
    best = Math.min(best, (c.user + c.system) / n);
  }
  return best;
}

type Codec = { encode(m: unknown): Uint8Array; decode(b: Uint8Array): { ok: boolean } };
const trees = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['.'];
const codecs: Array<[string, Codec]> = [];
for (const tree of trees) codecs.push([tree, (await import(resolve(tree, 'protocols/codec.ts'))) as Codec]);

const N = 20_000;
const pieces: Array<[string, (c: Codec) => () => unknown]> = [
  ['encode getStatus request', (c) => () => c.encode({ type: 'getStatus', reqId: 1000, artifactId: status.id })],
  ['decode getStatus request (with its check)', (c) => { const b = Buffer.from(c.encode({ type: 'getStatus', reqId: 1000, artifactId: status.id })); return () => c.decode(b); }],
  ['encode status reply, fresh', (c) => () => c.encode({ type: 'status', reqId: 1000, status })],
  ['encode status reply, a kept (frozen) status', (c) => () => c.encode({ type: 'status', reqId: 1000, status: kept })],
  ['decode status reply (with its check)', (c) => { const b = Buffer.from(c.encode({ type: 'status', reqId: 1000, status })); return () => c.decode(b); }],
  ['encode projectList reply', (c) => () => c.encode({ type: 'projectList', reqId: 1000, projects })],
  ['decode projectList reply (with its check)', (c) => { const b = Buffer.from(c.encode({ type: 'projectList', reqId: 1000, projects })); return () => c.decode(b); }],
];
const bytes = codecs[0]?.[1].encode({ type: 'status', reqId: 1000, status }).byteLength;
process.stdout.write(`status reply: ${bytes} B; CPU per call, µs (best of 7 x ${N})\n`);
for (const [name, make] of pieces) {
  const cells = codecs.map(([tree, c]) => `${tree}: ${time(N, make(c)).toFixed(2)}`);
  process.stdout.write(`${name.padEnd(46)} ${cells.join('   ')}\n`);
}
const json = JSON.stringify({ type: 'status', reqId: 1000, status });
process.stdout.write(`${'JSON.stringify of the status reply'.padEnd(46)} ${time(N, () => JSON.stringify({ type: 'status', reqId: 1000, status })).toFixed(2)}\n`);
process.stdout.write(`${'JSON.parse of the status reply'.padEnd(46)} ${time(N, () => JSON.parse(json)).toFixed(2)}\n`);
