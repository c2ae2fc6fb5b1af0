import { randomBytes } from 'node:crypto';
import { stop } from 'nact';
import { type WireError, wireError } from '../protocols/errors.ts';
import type { Message, MessageOf, WorkbenchRequest } from '../protocols/messages.ts';
import { PROTOCOL_VERSION } from '../protocols/version.ts';
import { type Ref, send, spawnActor } from '../lib/kit/actors.ts';
import type { Logger } from '../lib/log.ts';
import { authenticateWorkbench, authenticateWorker, type WorkbenchScope } from '../lib/security/auth.ts';
import type { Store } from '../lib/store/store.ts';
import type { PeerConnection } from '../lib/transport/peer.ts';
import type { Uploads } from '../lib/store/uploads.ts';
import { ChunkSender, fileSource } from '../lib/transport/stream.ts';
import { type ProjectListing, scopedProjects, scopedStatus } from './listings.ts';
import { ReportRoutes, isWorkerReport } from './report-routes.ts';
import type { PeerHandle, SchedulerMsg, StreamBody } from './scheduler.ts';

/**
 * Connection: one per socket peer on the scheduler. It keeps the peer's handshake state
 * (nothing but a hello is accepted first; then only the messages of the peer's role) and
 * forwards what is valid to the Scheduler. What goes out does not pass through its mailbox: the
 * peer's handle (`PeerHandle`) hands each message straight to the socket or to the group
 * commit's queue, in the order the callers make them (one actor hop less per frame out).
 */

export type ConnectionMsg =
  | { kind: 'received'; message: Message }
  | { kind: 'closed'; code: number; reason: string };

interface ConnectionState {
  role: 'new' | 'worker' | 'workbench';
  nodeId?: string;
}

const WORKER_MESSAGES: ReadonlySet<Message['type']> = new Set(['jobStarted', 'jobCompleted', 'productOffer', 'productDigest', 'jobFailed', 'fetchResource']);
const WORKBENCH_MESSAGES: ReadonlySet<Message['type']> = new Set([
  'listNodes',
  'listProjects',
  'getProject',
  'submitArtifact',
  'getStatus',
  'getResult',
  'subscribe',
  'cancelArtifact',
  'listArtifacts',
  'deleteArtifact',
  'watchNetwork',
]);

/**
 * A job's progress (`jobState` pushes): after a power cut the scheduler may redo the job and
 * report it again, so the event is sent without waiting for durability. Everything else — an
 * artifact's state, a reply, an assignment — acknowledges state and waits for it to be durable.
 */
function isProgress(message: Message): boolean {
  return message.type === 'artifactEvent' && message.events.every((e) => e.kind === 'jobState');
}

export function spawnConnection(
  parent: Ref<unknown>,
  props: {
    peer: PeerConnection;
    scheduler: Ref<SchedulerMsg>;
    log: Logger;
    store: Store;
    schedulerId: string;
    uploads: Uploads;
    chunkBytes: number;
    /** The project listing the Scheduler publishes: a workbench's listProjects is answered from it while it is current. */
    projectListing?: ProjectListing;
  },
): Ref<ConnectionMsg> {
  const { peer, scheduler, log } = props;
  let handle: PeerHandle | undefined;
  /**
   * The scope of the workbench this socket authenticated as: its getStatus (a read of the status
   * the store keeps) and its listProjects (while the Scheduler's published listing is current)
   * are answered as the frame comes, through neither this actor's mailbox nor the Scheduler's: a
   * poller's request costs no actor hop. Set once the hello is accepted (the PeerConnection reads
   * nothing more until it is judged), so no request is answered before it; each frame was
   * rate-limited and checked by the PeerConnection.
   */
  let workbenchScope: WorkbenchScope | undefined;
  /** The worker this socket authenticated as: its chunks are read here, as they come. */
  let workerId: string | undefined;
  /** The attempts assigned over this socket and their JobActors: the worker's reports on them go straight there. */
  const routes = new ReportRoutes();
  /** Streams going out on this socket, by resource: a new request for one replaces its stream. */
  const senders = new Map<string, ChunkSender>();

  const startStream = (body: StreamBody) => {
    senders.get(body.sha256)?.stop();
    const source = fileSource(body.file, body.size);
    const sender = new ChunkSender(peer, body.sha256, source, props.chunkBytes, (r) => {
      source.close();
      if (senders.get(body.sha256) === sender) senders.delete(body.sha256);
      if (!r.ok && peer.isOpen) log.warn({ sha256: body.sha256, error: r.error?.message }, 'a streamed resource could not be sent');
    });
    senders.set(body.sha256, sender);
    sender.start(body.offset);
  };

  /**
   * A chunk of a streamed product, written as it is read (nothing of it waits in a mailbox): a
   * refused one is named with its code and asked again; the last one hands the product to the
   * Scheduler.
   */
  const receiveChunk = (nodeId: string, m: MessageOf<'resourceChunk'>) => {
    const r = props.uploads.receive(nodeId, m);
    if (!r) {
      peer.sendError(wireError('UNEXPECTED_MESSAGE', `no upload of resource ${m.resource} was offered by ${nodeId}`));
      return;
    }
    if (r.kind === 'refused') {
      log.warn({ nodeId, sha256: m.resource, offset: m.offset, error: r.error.message }, 'a chunk was refused');
      peer.sendError(r.error);
      if (!r.gaveUp) peer.send({ type: 'resourceWant', sha256: m.resource, offset: r.offset });
      else send(scheduler, { kind: 'uploadEnded', sha256: m.resource, size: 0, offers: r.offers, error: r.error });
    } else if (r.kind === 'done') {
      log.info({ nodeId, sha256: m.resource, size: m.offset + m.data.byteLength, wallMs: Math.round(r.wallMs), cpuMs: Math.round(r.cpuMs) }, 'streamed product received whole');
      send(scheduler, { kind: 'uploadEnded', sha256: r.sha256, size: m.offset + m.data.byteLength, offers: r.offers, path: r.path });
    } else if (r.kind === 'corrupt') {
      send(scheduler, { kind: 'uploadEnded', sha256: m.resource, size: m.offset + m.data.byteLength, offers: r.offers, error: r.error });
    }
  };
  // A fresh nonce per connection: a hello signed for another connection is refused.
  // The transport closes a peer that has not said hello in time (`connection_limits.hello_timeout_ms`).
  const nonce = randomBytes(32);

  /** Sent from the caller's turn: a frame that cannot be encoded (a bug) is logged, not thrown at the caller. */
  const sendNow = (message: Message) => {
    try {
      peer.send(message);
    } catch (e) {
      log.error({ err: e, type: message.type }, 'a message could not be sent');
    }
  };

  /** Messages to this peer waiting for the group commit (they leave in order). */
  let held = 0;
  const whenDurable = (fn: () => void) => {
    held++;
    props.store.afterDurable(() => {
      held--;
      fn();
    });
  };

  const ref = spawnActor<ConnectionState, ConnectionMsg>(
    parent,
    `conn-${peer.id}`,
    (s, msg, ctx) => {
      switch (msg.kind) {
        case 'closed':
          for (const sender of senders.values()) sender.stop();
          senders.clear();
          if (handle) send(scheduler, s.nodeId ? { kind: 'peerLeft', peer: handle, nodeId: s.nodeId } : { kind: 'peerLeft', peer: handle });
          stop(ctx.self);
          return s;
        case 'received': {
          const m = msg.message;
          const reqId = (m as { reqId?: number }).reqId;
          if (s.role === 'new') {
            if (m.type !== 'workerHello' && m.type !== 'workbenchHello') {
              peer.sendError(wireError('NOT_AUTHENTICATED', 'send workerHello or workbenchHello first'), reqId);
              return s;
            }
            if (m.protocolVersion !== PROTOCOL_VERSION) {
              peer.sendError(
                wireError('PROTOCOL_VERSION_MISMATCH', `this scheduler speaks protocol ${PROTOCOL_VERSION}, not ${m.protocolVersion}`),
              );
              peer.close(1002, 'protocol version mismatch');
              return s;
            }
            if (!handle) throw new Error('connection handle missing');
            if (m.type === 'workerHello') {
              const auth = authenticateWorker(props.store, props.schedulerId, nonce, m);
              if (!auth.ok) return refuse(auth.error, s, m.nodeId);
              peer.authenticated('worker');
              workerId = m.nodeId;
              send(scheduler, { kind: 'workerJoined', peer: handle, hello: m, joinTokenId: auth.joinTokenId });
              return { role: 'worker', nodeId: m.nodeId };
            }
            const auth = authenticateWorkbench(props.store, m);
            if (!auth.ok) return refuse(auth.error, s);
            peer.authenticated('workbench');
            workbenchScope = auth.scope;
            send(scheduler, { kind: 'workbenchJoined', peer: handle, scope: auth.scope });
            return { role: 'workbench' };
          }
          const allowed = s.role === 'worker' ? WORKER_MESSAGES : WORKBENCH_MESSAGES;
          if (!allowed.has(m.type) || !handle) {
            peer.sendError(wireError('UNEXPECTED_MESSAGE', `a ${s.role} may not send ${m.type}`), reqId);
            return s;
          }
          if (s.role === 'worker') send(scheduler, { kind: 'fromWorker', peer: handle, nodeId: s.nodeId as string, message: m });
          else send(scheduler, { kind: 'fromWorkbench', peer: handle, message: m as WorkbenchRequest });
          return s;
        }
      }
    },
    { log, initialState: () => ({ role: 'new' }), onCrash: 'resume' },
  );

  function refuse(error: WireError, s: ConnectionState, nodeId?: string): ConnectionState {
    log.warn({ remote: peer.remoteAddress, nodeId, error: error.message }, 'handshake refused');
    peer.sendError(error);
    peer.close(1008, 'authentication failed');
    return s;
  }

  handle = {
    sessionId: peer.id,
    // A message acknowledges the state behind it: it leaves once that state is durable. A
    // progress event promises nothing, so it need not wait for a barrier, only for what this
    // peer was sent before it.
    send: (message, reportsTo) => {
      routes.sending(message, reportsTo);
      if (held === 0 && isProgress(message)) sendNow(message);
      else whenDurable(() => peer.send(message));
    },
    // After what was sent before it (an error frame saying why), not ahead of it.
    close: (code, reason) => whenDurable(() => peer.close(code, reason)),
    stream: (header, body) =>
      whenDurable(() => {
        peer.send(header);
        startStream(body);
      }),
  };
  peer.attach({
    onMessage: (message) => {
      if (workerId !== undefined && message.type === 'resourceChunk') receiveChunk(workerId, message);
      else if (workbenchScope !== undefined && message.type === 'getStatus' && handle) handle.send(scopedStatus(props.store, workbenchScope, message.reqId, message.artifactId));
      else if (workbenchScope !== undefined && message.type === 'listProjects' && handle && props.projectListing?.current) {
        handle.send({ type: 'projectList', reqId: message.reqId, projects: scopedProjects(props.projectListing.current, workbenchScope) });
      }
      else if (workerId !== undefined && isWorkerReport(message) && routes.route(workerId, message)) {
        // A report on an attempt assigned over this socket went straight to its JobActor (through
        // neither this actor's mailbox nor the Scheduler's); the JobActor checks it.
      } else send(ref, { kind: 'received', message });
    },
    onClose: (code, reason) => send(ref, { kind: 'closed', code, reason }),
  });
  peer.send({ type: 'challenge', protocolVersion: PROTOCOL_VERSION, schedulerId: props.schedulerId, nonce });
  return ref;
}
