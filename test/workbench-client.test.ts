// The workbench library is what researchers script against: an event the scheduler pushes must
// reach the artifact's handle even when it arrives in the same socket read as the acceptance of
// the artifact (the scheduler's group commit sends them back to back). A scripted scheduler here
// writes both frames in one write, so the case happens every time, not by chance.
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { type WebSocket, WebSocketServer } from 'ws';
import { decode, encode, encodeValue } from '../protocols/codec.ts';
import { sha256Hex } from '../lib/store/blobs.ts';
import type { ArtifactStatus } from '../protocols/entities.ts';
import type { Message } from '../protocols/messages.ts';
import { PROTOCOL_VERSION } from '../protocols/version.ts';
import { steps, Workbench } from '../lib/workbench.ts';
import { HANDLE_EARLY_EVENTS } from '../lib/workbench/client.ts';
import { waitFor } from './helpers/cluster.ts';

/** One unmasked binary WebSocket frame (RFC 6455 5.2) as a server writes it; payloads here are < 64 KiB. */
const frame = (m: Message): Buffer => {
  const payload = Buffer.from(encode(m));
  const head = payload.length < 126 ? Buffer.from([0x82, payload.length]) : Buffer.from([0x82, 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([head, payload]);
};

/** A close frame (RFC 6455 5.5.1), code 1008 and a reason, as a server writes it. */
const closeFrame = (reason: string): Buffer => Buffer.from([0x88, 2 + reason.length, 0x03, 0xf0, ...Buffer.from(reason)]);

/** One connection to the scripted scheduler, as the script sees it. */
interface ScriptedSession {
  /** 1 for the first connection, then 2, ... */
  readonly number: number;
  send(m: Message): void;
  /** Bytes straight to the socket: frames written together reach the client in one read. */
  write(...chunks: Buffer[]): void;
}

/**
 * A scheduler played by the test: it greets each workbench (challenge, then welcome on its hello)
 * and hands every other message to the handler `onSession` makes for that connection. Its URL.
 */
async function scriptedScheduler(t: { teardown(fn: () => unknown): void }, onSession: (session: ScriptedSession) => (m: Message) => void): Promise<string> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  let sessions = 0;
  server.on('connection', (ws: WebSocket) => {
    const socket = (ws as unknown as { _socket: { write(b: Buffer): void } })._socket;
    const session: ScriptedSession = {
      number: ++sessions,
      send: (m) => ws.send(encode(m)),
      write: (...chunks) => socket.write(Buffer.concat(chunks)),
    };
    const handle = onSession(session);
    ws.send(encode({ type: 'challenge', protocolVersion: PROTOCOL_VERSION, schedulerId: 's', nonce: new Uint8Array(32) }));
    ws.on('message', (data: Buffer) => {
      const decoded = decode(data);
      if (!decoded.ok) throw new Error(decoded.error.message);
      const m = decoded.message;
      if (m.type === 'workbenchHello') session.send({ type: 'welcome', protocolVersion: PROTOCOL_VERSION, schedulerId: 's', sessionId: `x${session.number}` });
      else handle(m);
    });
  });
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A one-job artifact's status as a scheduler would send it; `job` gives its one job's state and attempt, none: no job listed. */
function oneJobStatus(id: string, state: ArtifactStatus['state'], job?: { state: ArtifactStatus['jobs'][number]['state']; attempt: number }): ArtifactStatus {
  return {
    id,
    projectId: 'p-1',
    state,
    progress: { completed: 0, total: 1 },
    jobs: job ? [{ id: `${id}.0`, index: 0, worker: 'w1', stepIndex: 0, iteration: 0, operation: 'Noop', ...job }] : [],
    createdAt: 1,
    updatedAt: 1,
  };
}

t.test('events written in the same read as artifactAccepted or a status reply reach the handle, newest last', async (t) => {
  const status = oneJobStatus('a-1', 'SCHEDULED', { state: 'WAITING', attempt: 0 });
  const runningEvent: Message = {
    type: 'artifactEvent',
    artifactId: 'a-1',
    progress: { completed: 0, total: 1 },
    events: [{ kind: 'jobState', jobId: 'a-1.0', worker: 'w1', state: 'RUNNING', attempt: 1 }],
  };
  const url = await scriptedScheduler(t, (session) => {
    return (m) => {
      if (m.type === 'getStatus') session.send({ type: 'status', reqId: m.reqId, status });
      if (m.type === 'subscribe') {
        // The snapshot, then a newer event in the same read: the event must win.
        session.write(frame({ type: 'status', reqId: m.reqId, status }), frame(runningEvent));
      }
      if (m.type === 'submitArtifact') {
        const accepted = frame({ type: 'artifactAccepted', reqId: m.reqId, status });
        const running = frame(runningEvent);
        // One write: the client reads both frames before any promise continuation runs.
        session.write(accepted, running);
      }
    };
  });
  const wb = await Workbench.connect(url, { token: 'fdl_w_test', reconnect: false });
  t.teardown(() => wb.close());
  const handle = await wb.submit('project-token', { steps: [steps.parallel({ kind: 'Noop' })] });
  t.equal(handle.status.jobs[0]?.state, 'RUNNING', 'the event sent right behind the acceptance was applied');
  t.equal(handle.status.jobs[0]?.attempt, 1);

  // Another workbench follows the same artifact: its subscribe reply (an older snapshot) and the
  // newer event arrive in one read; the snapshot must not undo the event.
  const other = await Workbench.connect(url, { token: 'fdl_w_test', reconnect: false });
  t.teardown(() => other.close());
  const watched = await other.watch('a-1');
  t.equal(watched.status.jobs[0]?.state, 'RUNNING', 'the event read after the subscribe reply was kept');
});

t.test("result() asks for the result with the final status, not after its reply: one round trip once COMPLETED is pushed", async (t) => {
  const status = oneJobStatus('a-2', 'RUNNING', { state: 'SCHEDULED', attempt: 1 });
  const final: ArtifactStatus = { ...status, state: 'COMPLETED', progress: { completed: 1, total: 1 }, jobs: [{ ...(status.jobs[0] as ArtifactStatus['jobs'][number]), state: 'COMPLETED' }] };
  const bytes = encodeValue({ mean: 4.5 });
  const asked: string[] = [];
  const url = await scriptedScheduler(t, (session) => {
    let statusReq: number | undefined;
    return (m) => {
      if (m.type === 'submitArtifact') {
        session.send({ type: 'artifactAccepted', reqId: m.reqId, status });
        session.send({ type: 'artifactEvent', artifactId: 'a-2', progress: final.progress, events: [{ kind: 'artifactState', state: 'COMPLETED' }] });
      }
      if (m.type === 'getStatus' || m.type === 'getResult') asked.push(m.type);
      // The status reply is held until the result is asked for: a client that waits for it first never finishes.
      if (m.type === 'getStatus') statusReq = m.reqId;
      if (m.type === 'getResult') {
        session.send({ type: 'result', reqId: m.reqId, artifactId: 'a-2', resourceId: 'r-1', sha256: sha256Hex(bytes), size: bytes.byteLength, data: bytes });
        if (statusReq !== undefined) session.send({ type: 'status', reqId: statusReq, status: final });
      }
    };
  });
  const wb = await Workbench.connect(url, { token: 'fdl_w_test', reconnect: false });
  t.teardown(() => wb.close());
  const handle = await wb.submit('project-token', { steps: [steps.parallel({ kind: 'Noop' })] });
  const result = await Promise.race([
    handle.result(),
    new Promise((_, reject) => setTimeout(() => reject(new Error('result() waited for the status reply before asking for the result')), 10_000).unref()),
  ]);
  t.same(result, { mean: 4.5 });
  t.same(asked, ['getStatus', 'getResult'], 'both asked before either reply');
  t.equal(handle.status.state, 'COMPLETED');
});

// Protocol 7: the final push carries the status's own fields, so a handle holds the final status
// without asking for it (at 1,000 workers the reply was a 1,001-job status per artifact).
t.test('the final push settles the handle with the final status: no getStatus, result() asks only for the result', async (t) => {
  const status = oneJobStatus('a-3', 'RUNNING', { state: 'SCHEDULED', attempt: 1 });
  const provenance = {
    complete: true,
    workers: [{ nodeId: 'w1', rows: 10, completedJobs: 1, leftOutJobs: 0 }],
    included: ['w1'],
    leftOut: [],
    rows: 10,
    leftOutJobs: [],
    seeds: { model: [], split: [] },
    artifactSha256: 'a'.repeat(64),
    software: { name: 'fdl', version: '0.1.0', protocolVersion: PROTOCOL_VERSION },
  };
  const bytes = encodeValue({ mean: 4.5 });
  const asked: string[] = [];
  const url = await scriptedScheduler(t, (session) => (m) => {
    if (m.type === 'submitArtifact') {
      session.send({ type: 'artifactAccepted', reqId: m.reqId, status });
      session.send({
        type: 'artifactEvent',
        artifactId: 'a-3',
        progress: { completed: 1, total: 1 },
        events: [
          { kind: 'jobState', jobId: 'a-3.0', worker: 'w1', state: 'COMPLETED', attempt: 1, startedAt: 5, finishedAt: 6 },
          { kind: 'artifactState', state: 'COMPLETED', updatedAt: 7, resultResourceId: 'r-3', provenance },
        ],
      });
    }
    if (m.type !== 'submitArtifact') asked.push(m.type);
    if (m.type === 'getResult') {
      session.send({ type: 'result', reqId: m.reqId, artifactId: 'a-3', resourceId: 'r-3', sha256: sha256Hex(bytes), size: bytes.byteLength, data: bytes });
    }
  });
  const wb = await Workbench.connect(url, { token: 'fdl_w_test', reconnect: false });
  t.teardown(() => wb.close());
  const handle = await wb.submit('project-token', { steps: [steps.parallel({ kind: 'Noop' })] });
  const done = await handle.done();
  t.match(done, { state: 'COMPLETED', updatedAt: 7, resultResourceId: 'r-3', progress: { completed: 1, total: 1 }, provenance: { rows: 10 } }, 'the final status, from the push');
  t.match(done.jobs[0], { state: 'COMPLETED', startedAt: 5, finishedAt: 6 }, 'its jobs as the pushes left them');
  t.equal(handle.provenance?.rows, 10);
  t.same(await handle.result(), { mean: 4.5 });
  t.same(asked, ['getResult'], 'no getStatus: only the result was asked for');
});

// The scheduler closed the session (its rate limit, its idle timeout, a restart) and its close
// frame came in the same read as a reply: the script's next request starts while the socket is
// closing, before its close event. It must wait for the next session and be answered there. It
// used to be asked again at once, in a loop of promise continuations that never let the close
// event in: the process froze until the request's deadline, then failed "not connected".
t.test('a request made while the scheduler is closing the session waits for the next session', async (t) => {
  const status = oneJobStatus('a-3', 'RUNNING');
  let sessions = 0;
  const url = await scriptedScheduler(t, (session) => {
    sessions = session.number;
    return (m) => {
      if (m.type !== 'getStatus' && m.type !== 'submitArtifact') return;
      if (session.number > 1) {
        session.send(m.type === 'getStatus' ? { type: 'status', reqId: m.reqId, status } : { type: 'artifactAccepted', reqId: m.reqId, status });
        return;
      }
      // The reply, the session's end (as a rate-limited peer gets it) and a close frame, in one write.
      const close = closeFrame('rate limited');
      const ended = frame({ type: 'error', error: { code: 'RATE_LIMITED', message: 'more than 5000 frames/s for too long; disconnecting', retryable: true } });
      session.write(frame({ type: 'status', reqId: m.reqId, status }), ended, close);
    };
  });
  const wb = await Workbench.connect(url, { token: 'fdl_w_test' });
  t.teardown(() => wb.close());
  const answered = (async () => {
    await wb.status('a-3');
    // Runs before the next read of the socket: the close frame above is in, its close event is not.
    return await wb.status('a-3');
  })();
  const bound = new Promise<never>((_, reject) => {
    setTimeout(() => reject(new Error('the request made while the session was closing was not answered on the next session within 30 s')), 30_000).unref();
  });
  t.equal((await Promise.race([answered, bound])).state, 'RUNNING', 'answered on the next session');
  t.equal(sessions, 2, 'after one reconnection');
});

t.test('a submit made while the session is closing fails at once, saying it was not sent', async (t) => {
  const status = oneJobStatus('a-4', 'RUNNING');
  const url = await scriptedScheduler(t, (session) => {
    return (m) => {
      if (m.type === 'getStatus') {
        session.write(frame({ type: 'status', reqId: m.reqId, status }), closeFrame('idle timeout'));
      }
    };
  });
  const wb = await Workbench.connect(url, { token: 'fdl_w_test' });
  t.teardown(() => wb.close());
  const submitted = (async () => {
    await wb.status('a-4');
    return await wb.submit('project-token', { steps: [steps.parallel({ kind: 'Noop' })] });
  })();
  await t.rejects(submitted, { message: 'not connected to the scheduler (the connection is closing); the request was not sent' });
});

// The scheduler pushes an artifact's first events right behind its acceptance: a script that adds
// its listener once `submit` resolves must still see them, in order, then the ones after; a second
// listener added later sees only what comes after it. A handle nobody listens to keeps a bounded
// number (the newest). The per-job view is kept current by job id, whatever the job's position.
t.test('a listener added after submit resolves gets the events that came before it, in order, bounded', async (t) => {
  const job = (index: number) => ({ id: `a-5.${index}`, index, worker: 'w1', stepIndex: 0, iteration: 0, operation: 'Noop', state: 'WAITING' as const, attempt: 0 });
  const status: ArtifactStatus = { id: 'a-5', projectId: 'p-1', state: 'SCHEDULED', progress: { completed: 0, total: 3 }, jobs: [job(0), job(1), job(2)], createdAt: 1, updatedAt: 1 };
  const jobEvent = (index: number, state: 'RUNNING' | 'COMPLETED', completed: number): Message => ({
    type: 'artifactEvent',
    artifactId: 'a-5',
    progress: { completed, total: 3 },
    events: [{ kind: 'jobState', jobId: `a-5.${index}`, worker: 'w1', state, attempt: 1 }],
  });
  let socket: ScriptedSession | undefined;
  const url = await scriptedScheduler(t, (session) => {
    socket = session;
    return (m) => {
      if (m.type === 'submitArtifact') {
        const early = [jobEvent(1, 'RUNNING', 0), jobEvent(1, 'COMPLETED', 1), jobEvent(2, 'RUNNING', 1)];
        session.write(frame({ type: 'artifactAccepted', reqId: m.reqId, status }), ...early.map(frame));
      }
    };
  });
  const wb = await Workbench.connect(url, { token: 'fdl_w_test', reconnect: false });
  t.teardown(() => wb.close());
  const handle = await wb.submit('project-token', { steps: [steps.parallel({ kind: 'Noop' })] });
  t.same(
    handle.status.jobs.map((j) => j.state),
    ['WAITING', 'COMPLETED', 'RUNNING'],
    'the per-job view has the events read with the acceptance',
  );
  const seen: string[] = [];
  handle.on('event', (e) => {
    if (e.event.kind === 'jobState') seen.push(`${e.event.jobId} ${e.event.state}`);
    else seen.push(`artifact ${e.event.state}`);
  });
  const once: string[] = [];
  handle.once('event', (e) => once.push(e.event.kind));
  const later = (n: number) => waitFor(() => seen.length >= n, { what: `${n} events on the first listener` });
  await later(3);
  t.same(seen, ['a-5.1 RUNNING', 'a-5.1 COMPLETED', 'a-5.2 RUNNING'], 'the early events, in order');
  t.same(once, ['jobState'], 'a once listener attached in the same turn gets the first of them');
  const second: string[] = [];
  handle.on('event', (e) => second.push(e.event.kind));
  socket?.write(frame(jobEvent(0, 'RUNNING', 1)));
  await later(4);
  t.same(seen.slice(3), ['a-5.0 RUNNING'], 'then the events after it');
  t.same(second, ['jobState'], 'a later listener gets only the events after it');
  t.same(handle.status.jobs.map((j) => j.state), ['RUNNING', 'COMPLETED', 'RUNNING']);

  // Nobody listening: the handle keeps the newest HANDLE_EARLY_EVENTS for its first listener.
  const other = await Workbench.connect(url, { token: 'fdl_w_test', reconnect: false });
  t.teardown(() => other.close());
  const quiet = await other.submit('project-token', { steps: [steps.parallel({ kind: 'Noop' })] });
  const flood = Array.from({ length: 2 * HANDLE_EARLY_EVENTS + 10 }, (_, i) => ({ ...jobEvent(0, 'RUNNING', 1), progress: { completed: i, total: 3 } }) as Message);
  socket?.write(...flood.map(frame));
  await waitFor(() => quiet.status.progress.completed === flood.length - 1, { what: 'the flood of events applied' });
  const kept: number[] = [];
  quiet.on('event', (e) => kept.push(e.progress.completed));
  await waitFor(() => kept.length >= HANDLE_EARLY_EVENTS, { what: 'the kept events replayed' });
  t.equal(kept.length, HANDLE_EARLY_EVENTS, 'at most HANDLE_EARLY_EVENTS kept');
  t.equal(kept[0], flood.length - HANDLE_EARLY_EVENTS, 'the newest ones');
  t.equal(kept.at(-1), flood.length - 1);
});
