import type { KeyObject } from 'node:crypto';
import type { WireError } from '../protocols/errors.ts';
import { wireError } from '../protocols/errors.ts';
import type { Message, MessageOf } from '../protocols/messages.ts';
import { type Ref, send, spawnActor } from '../lib/kit/actors.ts';
import type { Logger } from '../lib/log.ts';
import { toWireError } from '../lib/errors.ts';
import { openSegmentedFile, openValue, readSegmentedHead, resourceContext } from '../lib/security/seal.ts';
import type { OpenAs } from '../lib/transport/opening-sink.ts';
import { sha256Hex } from '../lib/store/blobs.ts';
import { asFileBlob } from '../lib/ops/file-blob.ts';
import type { ResourceRef } from '../protocols/entities.ts';
import { decodeValue } from '../protocols/codec.ts';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FdlError } from '../lib/errors.ts';

/**
 * Collector: gathers the inputs of a job on a worker. Small inputs come with the assignment;
 * it fetches each other one from the scheduler's store. Every input's sha256 is checked and
 * it is decoded (opened when sealed); the full list goes to its WorkerActor. Requests carry our
 * own increasing ids.
 */

export type CollectorMsg =
  | { kind: 'collect'; key: string; assignment: MessageOf<'assignJob'> }
  | { kind: 'reply'; message: Message }
  /** A large input, fetched (streamed to a file) and opened off the mailbox. */
  | { kind: 'largeInput'; key: string; slot: number; value: unknown }
  | { kind: 'largeFailed'; key: string; error: WireError };

/** How a node gets the bytes of an input over the stream threshold. */
export interface LargeInputs {
  thresholdBytes: number;
  /** A folder of this node where sealed inputs are opened into files (emptied when the node starts). */
  dir: string;
  /**
   * The input's bytes, checked against its sha256: a file (streamed, resumable; the initiator: the
   * store's own) or, rarely, bytes. With `open`, a segmented envelope streamed here may come opened
   * as it arrived (`opened`: the file is its plaintext; the sealed bytes were hashed, never kept).
   */
  fetch(ref: ResourceRef, open?: OpenAs): Promise<{ path: string; opened?: boolean } | { bytes: Uint8Array }>;
}

export type CollectorReport =
  | { kind: 'inputsReady'; key: string; inputs: unknown[] }
  | { kind: 'inputsFailed'; key: string; error: WireError };

interface Gathering {
  inputs: unknown[];
  remaining: number;
}

interface CollectorState {
  nextReqId: number;
  pending: Map<number, { key: string; slot: number; sha256: string; context: string }>;
  gathering: Map<string, Gathering>;
}

export function spawnCollector(
  parent: Ref<CollectorReport>,
  props: {
    log: Logger;
    sendToScheduler(message: Message): boolean;
    /** This node's id and X25519 private key, to open inputs sealed for it. */
    identity: { nodeId: string; boxPrivate: KeyObject } | undefined;
    large?: LargeInputs | undefined;
  },
): Ref<CollectorMsg> {
  const failKey = (s: CollectorState, key: string, error: WireError) => {
    s.gathering.delete(key);
    for (const [reqId, p] of s.pending) if (p.key === key) s.pending.delete(reqId);
    send(parent, { kind: 'inputsFailed', key, error });
  };

  /** Checks an input's bytes against its sha256 and opens them into its slot; the error, if any. */
  const accept = (g: Gathering, slot: number, data: Uint8Array, sha256: string, context: string, resourceId: string): WireError | undefined => {
    if (sha256Hex(data) !== sha256) return wireError('CHECKSUM_MISMATCH', `input ${resourceId} does not match its sha256`);
    try {
      g.inputs[slot] = openValue(data, props.identity, context);
    } catch (e) {
      return toWireError(e, 'BAD_FRAME');
    }
    g.remaining--;
    return undefined;
  };

  /**
   * A large input's value: a binary one stays a file (FileBlob); any other is read and opened
   * whole. A sealed one (a segmented envelope) is first opened a segment at a time into a file of
   * its own, then read the same way. An Error if it cannot be opened.
   */
  /** Sealed inputs being opened into files, by the opened file's path. */
  const openings = new Map<string, Promise<void>>();
  const openLarge = async (
    body: { path: string; opened?: boolean } | { bytes: Uint8Array },
    ref: ResourceRef,
    context: string,
    dir: string,
  ): Promise<unknown> => {
    try {
      if (!('path' in body)) return openValue(body.bytes, props.identity, context);
      if (body.opened) {
        // Opened as it arrived (every segment authenticated, the whole sha256 of the sealed bytes checked).
        const size = statSync(body.path).size;
        props.log.info({ resourceId: ref.id, sha256: ref.sha256, size, asItArrived: true }, 'sealed input opened');
        return asFileBlob(body.path, size) ?? decodeValue(readFileSync(body.path));
      }
      if (readSegmentedHead(body.path)) {
        const me = props.identity;
        if (!me) throw new FdlError('OPERATION_FAILED', 'a sealed input reached a node without keys', { retryable: false });
        // Opened once per node and resource: a second job fed the same input reads the same file
        // (and one that asks while it is being opened waits for that opening).
        const opened = join(dir, `${ref.sha256}.${me.nodeId}.open`);
        if (!existsSync(opened)) {
          let opening = openings.get(opened);
          if (!opening) {
            const path = body.path;
            opening = (async () => {
              mkdirSync(dir, { recursive: true });
              const part = `${opened}.part`;
              const { size } = await openSegmentedFile(path, me, context, part);
              renameSync(part, opened);
              props.log.info({ resourceId: ref.id, sha256: ref.sha256, size }, 'sealed input opened');
            })();
            openings.set(opened, opening);
            const forget = () => openings.delete(opened);
            opening.then(forget, forget);
          }
          await opening;
        }
        const size = statSync(opened).size;
        return asFileBlob(opened, size) ?? decodeValue(readFileSync(opened));
      }
      const blob = asFileBlob(body.path, ref.size, ref.sha256);
      if (blob) return blob;
      return openValue(readFileSync(body.path), props.identity, context);
    } catch (e) {
      return e instanceof Error ? e : new Error(String(e));
    }
  };

  return spawnActor<CollectorState, CollectorMsg>(
    parent,
    'collector',
    (s, msg, ctx) => {
      const self = ctx.self;
      if (msg.kind === 'collect') {
        const { key, assignment } = msg;
        if (assignment.inputs.length === 0) {
          send(parent, { kind: 'inputsReady', key, inputs: [] });
          return s;
        }
        const g: Gathering = { inputs: new Array(assignment.inputs.length), remaining: assignment.inputs.length };
        s.gathering.set(key, g);
        let nextReqId = s.nextReqId;
        for (const [slot, ref] of assignment.inputs.entries()) {
          const { large } = props;
          if (!ref.data && large && ref.size > large.thresholdBytes) {
            // Streamed to a file off the mailbox; a binary one reaches the operation as that file.
            const context = resourceContext(assignment.artifactId, ref.jobId);
            // A sealed input is opened while it downloads (only its plaintext is written) when it
            // can be; else from its file after.
            const me = props.identity;
            large
              .fetch(ref, me ? { me, context } : undefined)
              .then((body) => openLarge(body, ref, context, large.dir))
              .then(
                (value) => send(self, { kind: 'largeInput', key, slot, value }),
                (e: unknown) => send(self, { kind: 'largeFailed', key, error: toWireError(e, 'INTERNAL') }),
              );
            continue;
          }
          if (ref.data) {
            // Small products ride in the assignment: checked and opened like fetched ones.
            const error = accept(g, slot, ref.data, ref.sha256, resourceContext(assignment.artifactId, ref.jobId), ref.id);
            if (error) {
              failKey(s, key, error);
              break;
            }
            continue;
          }
          const reqId = nextReqId++;
          s.pending.set(reqId, { key, slot, sha256: ref.sha256, context: resourceContext(assignment.artifactId, ref.jobId) });
          if (!props.sendToScheduler({ type: 'fetchResource', reqId, resourceId: ref.id })) {
            failKey(s, key, wireError('INTERNAL', 'lost the scheduler while fetching inputs'));
            break;
          }
        }
        if (g.remaining === 0 && s.gathering.get(key) === g) {
          s.gathering.delete(key);
          send(parent, { kind: 'inputsReady', key, inputs: g.inputs });
        }
        return { ...s, nextReqId };
      }
      if (msg.kind === 'largeInput' || msg.kind === 'largeFailed') {
        const g = s.gathering.get(msg.key);
        if (!g) return s;
        if (msg.kind === 'largeFailed') {
          failKey(s, msg.key, msg.error);
          return s;
        }
        if (msg.value instanceof Error) {
          failKey(s, msg.key, toWireError(msg.value, 'BAD_FRAME'));
          return s;
        }
        g.inputs[msg.slot] = msg.value;
        g.remaining--;
        if (g.remaining === 0) {
          s.gathering.delete(msg.key);
          send(parent, { kind: 'inputsReady', key: msg.key, inputs: g.inputs });
        }
        return s;
      }
      const m = msg.message;
      const reqId = (m as { reqId?: number }).reqId;
      const p = reqId === undefined ? undefined : s.pending.get(reqId);
      if (!p || reqId === undefined) return s;
      s.pending.delete(reqId);
      const g = s.gathering.get(p.key);
      if (!g) return s;
      if (m.type === 'error') {
        failKey(s, p.key, m.error);
        return s;
      }
      if (m.type !== 'resourceData') return s;
      const error =
        m.sha256 !== p.sha256
          ? wireError('CHECKSUM_MISMATCH', `input ${m.resourceId} does not match its sha256`)
          : m.data
            ? accept(g, p.slot, m.data, p.sha256, p.context, m.resourceId)
            : wireError('INTERNAL', `input ${m.resourceId} came streamed to a fetch that expected it whole`);
      if (error) {
        failKey(s, p.key, error);
        return s;
      }
      if (g.remaining === 0) {
        s.gathering.delete(p.key);
        send(parent, { kind: 'inputsReady', key: p.key, inputs: g.inputs });
      }
      return s;
    },
    { log: props.log, initialState: () => ({ nextReqId: 1, pending: new Map(), gathering: new Map() }) },
  );
}
