import type { KeyObject } from 'node:crypto';
import type { WireError } from '../protocols/errors.ts';
import { wireError } from '../protocols/errors.ts';
import type { Message, MessageOf } from '../protocols/messages.ts';
import { type Ref, send, spawnActor } from '../lib/kit/actors.ts';
import type { Logger } from '../lib/log.ts';
import { toWireError } from '../lib/errors.ts';
import { openValue, resourceContext } from '../lib/security/seal.ts';
import { sha256Hex } from '../lib/store/blobs.ts';

/**
 * Collector: gathers the inputs of a job on a worker. It fetches each input resource
 * from the scheduler's store, checks its sha256, decodes it, and hands the full list
 * to its WorkerActor. Requests carry our own increasing ids.
 */

export type CollectorMsg =
  | { kind: 'collect'; key: string; assignment: MessageOf<'assignJob'> }
  | { kind: 'reply'; message: Message };

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
  },
): Ref<CollectorMsg> {
  const failKey = (s: CollectorState, key: string, error: WireError) => {
    s.gathering.delete(key);
    for (const [reqId, p] of s.pending) if (p.key === key) s.pending.delete(reqId);
    send(parent, { kind: 'inputsFailed', key, error });
  };

  return spawnActor<CollectorState, CollectorMsg>(
    parent,
    'collector',
    (s, msg) => {
      if (msg.kind === 'collect') {
        const { key, assignment } = msg;
        if (assignment.inputs.length === 0) {
          send(parent, { kind: 'inputsReady', key, inputs: [] });
          return s;
        }
        s.gathering.set(key, { inputs: new Array(assignment.inputs.length), remaining: assignment.inputs.length });
        let nextReqId = s.nextReqId;
        for (const [slot, ref] of assignment.inputs.entries()) {
          const reqId = nextReqId++;
          s.pending.set(reqId, { key, slot, sha256: ref.sha256, context: resourceContext(assignment.artifactId, ref.jobId) });
          if (!props.sendToScheduler({ type: 'fetchResource', reqId, resourceId: ref.id })) {
            failKey(s, key, wireError('INTERNAL', 'lost the scheduler while fetching inputs'));
            break;
          }
        }
        return { ...s, nextReqId };
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
      if (m.sha256 !== p.sha256 || sha256Hex(m.data) !== p.sha256) {
        failKey(s, p.key, wireError('CHECKSUM_MISMATCH', `input ${m.resourceId} does not match its sha256`));
        return s;
      }
      try {
        g.inputs[p.slot] = openValue(m.data, props.identity, p.context);
      } catch (e) {
        failKey(s, p.key, toWireError(e, 'BAD_FRAME'));
        return s;
      }
      g.remaining--;
      if (g.remaining === 0) {
        s.gathering.delete(p.key);
        send(parent, { kind: 'inputsReady', key: p.key, inputs: g.inputs });
      }
      return s;
    },
    { log: props.log, initialState: () => ({ nextReqId: 1, pending: new Map(), gathering: new Map() }) },
  );
}
