import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { stringify } from 'yaml';
import WebSocket, { WebSocketServer } from 'ws';
import { decode, encode } from '../protocols/codec.ts';
import type { Message } from '../protocols/messages.ts';
import { parseConfig } from '../lib/config.ts';
import type { Logger } from '../lib/log.ts';
import { startNode } from '../lib/node.ts';
import { projectSummary } from '../lib/projects.ts';
import { EXAMPLE_DATA } from '../lib/sim/cluster.ts';
import { Store } from '../lib/store/store.ts';
import { Workbench } from '../lib/workbench/client.ts';
import { type Cleanup, median, now, type Row, rate, ratio, spread } from './util.ts';

/**
 * 2. Small request/reply round trips through our stack (Workbench -> ws -> PeerConnection
 * decode + check -> the socket's Connection, which answers getStatus from the status the store
 * keeps and listProjects from the listing the Scheduler published (the Connection and Scheduler
 * actors only when the listing is stale) -> ws -> Workbench decode + check -> Requester) against
 * a bare `ws` echo of the same bytes
 * (request frame as our client sends it, reply frame as our scheduler sends it), and, in
 * between, a `ws` server that only runs our codec (decode + zod on both ends) and no actors, and
 * one that runs V8's native JSON instead (the reply's bytes kept, nothing checked): the floor of
 * any codec written in JavaScript, so the most the "codec alone" ratio can reach here.
 * Scheduler, baselines and clients all run in this process, so the figures compare CPU cost
 * per round trip on one event loop, without the noise of a second process.
 */

interface Kind {
  name: string;
  ours: () => Promise<unknown>;
  /** What the Scheduler actor computes for this request (store reads, status building), without sending. */
  work: () => unknown;
  request: (reqId: number) => Message;
  reply: (reqId: number) => Message;
}

/** What `drive` measured: calls per second, and this process's CPU time per call (µs). */
interface Driven {
  rate: number;
  cpuUs: number;
}

/**
 * Runs `count` calls of `one`, `inflight` at a time. Both ends run in this process, so its CPU
 * time per call is the round trip's whole cost; other sessions' load slows the wall clock far
 * more than it moves this counted figure.
 */
async function drive(count: number, inflight: number, one: () => Promise<unknown>): Promise<Driven> {
  let issued = 0;
  const t0 = now();
  const c0 = process.cpuUsage();
  const lane = async () => {
    while (issued < count) {
      issued++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  const cpu = process.cpuUsage(c0);
  return { rate: (count / (now() - t0)) * 1000, cpuUs: (cpu.user + cpu.system) / count };
}

/** A client that sends a frame and waits for the next reply (ws keeps the order of frames). */
class BareClient {
  private readonly waiting: Array<(data: Buffer) => void> = [];

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data) => this.waiting.shift()?.(data as Buffer));
  }

  static open(url: string): Promise<BareClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      ws.once('open', () => resolve(new BareClient(ws)));
      ws.once('error', reject);
    });
  }

  request(bytes: Uint8Array): Promise<Buffer> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.ws.send(bytes, { binary: true });
    });
  }

  close(): void {
    this.ws.terminate();
  }
}

export async function benchRoundTrips(opts: {
  log: Logger;
  cleanup: Cleanup;
  count: number;
  inflight: number[];
  repeats: number;
}): Promise<Row[]> {
  const { log, cleanup, count, repeats } = opts;
  const dir = cleanup.tempDir('fdl-bench-rt-');
  const token = randomBytes(16).toString('hex');

  // A real scheduler node, in this process. Standalone (a scheduler that also holds one shard)
  // so that an artifact can complete and `getStatus` has something real to report.
  const config = parseConfig(
    stringify({
      mode: 'standalone',
      name: 'bench-scheduler',
      workdir: join(dir, 'scheduler'),
      listen: { host: '127.0.0.1', port: 0 },
      projects: [{ name: 'bench', token }],
      workbench_tokens: [{ token: `wb-${token}` }],
      // The bench measures throughput: the per-connection rate limit would measure itself.
      rate_limit: { frames_per_second: 10_000_000, burst: 10_000_000 },
      datasources: [{ name: 'shard-1', path: join(EXAMPLE_DATA, 'california_housing.MedInc1.csv'), projects: [token] }],
    }),
    join(dir, 'scheduler.yaml'),
    dir,
  );
  const node = await startNode(config, log);
  cleanup.add('in-process scheduler', () => node.stop());
  if (!node.url) throw new Error('the scheduler node has no url');
  const wb = await Workbench.connect(node.url, { token: `wb-${token}`, name: 'bench' });
  cleanup.add('workbench (round trips)', () => wb.close());

  const project = await wb.project(token);
  const artifact = await (await project.count()).done();
  const status = await wb.status(artifact.id);
  const projects = await wb.projects();

  // A second handle on the scheduler's sqlite file (WAL: reads do not disturb the node), to time
  // the store work a request costs on its own.
  const store = new Store(config.workdir);
  cleanup.add('second store handle', () => store.close());
  const kinds: Kind[] = [
    {
      name: 'getStatus',
      ours: () => wb.status(artifact.id),
      // What a poll of an unchanged artifact costs the store: its kept status (the first call after
      // a change reads the artifact's row and its jobs: the second handle here reads them once).
      work: () => store.status(artifact.id),
      request: (reqId) => ({ type: 'getStatus', reqId, artifactId: artifact.id }),
      reply: (reqId) => ({ type: 'status', reqId, status }),
    },
    {
      name: 'listProjects',
      ours: () => wb.projects(),
      work: () => store.listProjects().map((p) => projectSummary(p, [])),
      request: (reqId) => ({ type: 'listProjects', reqId }),
      reply: (reqId) => ({ type: 'projectList', reqId, projects }),
    },
  ];
  const byRequest = new Map(kinds.map((k) => [k.request(0).type, k]));

  // Baseline server: /raw/<kind> answers every frame with the fixed reply bytes of that kind;
  // /codec decodes and validates the request and encodes a fresh reply, like our peers do.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', () => resolve());
    wss.once('error', reject);
  });
  cleanup.add('bare ws server', () => {
    for (const c of wss.clients) c.terminate();
    return new Promise<void>((resolve) => wss.close(() => resolve()));
  });
  const REQ_ID = 1000; // a reqId of the size our Requester uses during the run
  const rawReply = new Map(kinds.map((k) => [k.name, encode(k.reply(REQ_ID))]));
  // The native JSON floor: the reply's body serialized once (as our scheduler keeps a status's
  // bytes), each reply that body with the request's reqId spliced in, and nothing checked.
  const jsonBody = new Map<string, string>(kinds.map((k) => [k.request(0).type, JSON.stringify(k.reply(REQ_ID))]));
  wss.on('connection', (ws, req) => {
    const path = req.url ?? '';
    if (path.startsWith('/raw/')) {
      const bytes = rawReply.get(path.slice(5));
      if (!bytes) throw new Error(`no kind ${path}`);
      ws.on('message', () => ws.send(bytes, { binary: true }));
      return;
    }
    if (path === '/json') {
      ws.on('message', (data) => {
        const request = JSON.parse((data as Buffer).toString()) as { type: string; reqId: number };
        const body = jsonBody.get(request.type);
        if (body === undefined) throw new Error(`no kind for ${request.type}`);
        ws.send(Buffer.from(body.replace(`"reqId":${REQ_ID}`, `"reqId":${request.reqId}`)), { binary: true });
      });
      return;
    }
    ws.on('message', (data) => {
      const d = decode(data as Buffer);
      if (!d.ok) throw new Error(`bad frame in the baseline: ${d.error.message}`);
      const reqId = (d.message as { reqId: number }).reqId;
      const kind = byRequest.get(d.message.type);
      if (!kind) throw new Error(`no kind for ${d.message.type}`);
      ws.send(encode(kind.reply(reqId)), { binary: true });
    });
  });
  const base = `ws://127.0.0.1:${(wss.address() as { port: number }).port}`;

  const rows: Row[] = [];
  for (const kind of kinds) {
    const reqBytes = encode(kind.request(REQ_ID));
    const replyBytes = rawReply.get(kind.name) as Uint8Array;
    const raw = await BareClient.open(`${base}/raw/${kind.name}`);
    const codec = await BareClient.open(`${base}/codec`);
    const json = await BareClient.open(`${base}/json`);
    cleanup.add(`bare clients ${kind.name}`, () => {
      raw.close();
      codec.close();
      json.close();
    });
    let next = 1;
    const rawOne = () => raw.request(reqBytes);
    const codecOne = async () => {
      const reply = decode(await codec.request(encode(kind.request(next++))));
      if (!reply.ok) throw new Error(reply.error.message);
      return reply.message;
    };
    // What any codec written in JavaScript costs at least: V8's native JSON on both ends, the
    // reply's bytes kept, no check (ours checks every frame): its ratio to bare ws is the most a
    // "codec alone" figure can reach on this machine.
    const jsonOne = async () => {
      const reply = JSON.parse((await json.request(Buffer.from(JSON.stringify(kind.request(next++))))).toString()) as { reqId?: unknown };
      if (typeof reply.reqId !== 'number') throw new Error('the JSON floor answered without a reqId');
      return reply;
    };
    process.stdout.write(
      `[round trips] ${kind.name}: request frame ${reqBytes.byteLength} B, reply frame ${replyBytes.byteLength} B, ` +
        `${count} round trips x ${repeats} per figure\n`,
    );

    // Store work per request, timed alone (median of the repeats, per call).
    const workUs: number[] = [];
    for (let r = 0; r <= repeats; r++) {
      const t0 = now();
      for (let i = 0; i < count; i++) kind.work();
      if (r > 0) workUs.push(((now() - t0) / count) * 1000);
    }
    const work = median(workUs);

    for (const inflight of opts.inflight) {
      const warm = Math.min(300, count);
      await drive(warm, inflight, kind.ours);
      await drive(warm, inflight, codecOne);
      await drive(warm, inflight, jsonOne);
      await drive(warm, inflight, rawOne);
      const ours: Driven[] = [];
      const viaCodec: Driven[] = [];
      const viaJson: Driven[] = [];
      const bare: Driven[] = [];
      for (let r = 0; r < repeats; r++) {
        ours.push(await drive(count, inflight, kind.ours));
        viaCodec.push(await drive(count, inflight, codecOne));
        viaJson.push(await drive(count, inflight, jsonOne));
        bare.push(await drive(count, inflight, rawOne));
      }
      const o = median(ours.map((d) => d.rate));
      const c = median(viaCodec.map((d) => d.rate));
      const j = median(viaJson.map((d) => d.rate));
      const b = median(bare.map((d) => d.rate));
      const cpu = (ds: Driven[]) => median(ds.map((d) => d.cpuUs));
      const [oCpu, cCpu, jCpu, bCpu] = [cpu(ours), cpu(viaCodec), cpu(viaJson), cpu(bare)];
      const label = inflight === 1 ? 'sequential' : `${inflight} in flight`;
      process.stdout.write(
        `[round trips] ${kind.name} ${label}: ours ${rate(o)}/s (spread ${(spread(ours.map((d) => d.rate)) * 100).toFixed(0)}%), ` +
          `ws+codec ${rate(c)}/s, bare ws ${rate(b)}/s (spread ${(spread(bare.map((d) => d.rate)) * 100).toFixed(0)}%); ` +
          `CPU per round trip (both ends): ours ${oCpu.toFixed(1)} µs, ws+codec ${cCpu.toFixed(1)} µs, bare ws ${bCpu.toFixed(1)} µs ` +
          `(as ratios: ours ${ratio(bCpu / oCpu)}, codec alone ${ratio(bCpu / cCpu)}); ` +
          `the native JSON floor ${rate(j)}/s, ${jCpu.toFixed(1)} µs (${ratio(j / b)}, by CPU ${ratio(bCpu / jCpu)})\n`,
      );
      if (inflight === 1) {
        // Per round trip, in µs: what the bare socket costs, what our codec adds on both ends,
        // what the store work adds, and the rest (actor hops, Requester, promises).
        const us = (x: number) => 1e6 / x;
        const actors = us(o) - us(c) - work;
        process.stdout.write(
          `[round trips] ${kind.name} sequential, per round trip: bare ws ${us(b).toFixed(0)} µs` +
            ` + codec (encode/decode/zod, both ends) ${(us(c) - us(b)).toFixed(0)} µs` +
            ` + store work ${work.toFixed(0)} µs + actor hops/Requester/rest ${actors.toFixed(0)} µs = ours ${us(o).toFixed(0)} µs\n`,
        );
      }
      rows.push({
        figure: `round trips/s ${kind.name}, ${label}`,
        value: rate(o),
        baseline: rate(b),
        ratio: ratio(o / b),
        note:
          `bare ws echo; ws+our codec alone ${rate(c)}/s (${ratio(c / b)}); by CPU per round trip ${ratio(bCpu / oCpu)}, codec alone ${ratio(bCpu / cCpu)}; ` +
          `native JSON floor ${ratio(j / b)} (by CPU ${ratio(bCpu / jCpu)})`,
      });
    }
  }
  return rows;
}
