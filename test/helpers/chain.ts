import { pack, unpack } from 'msgpackr';
import type { DataEngine } from '../../lib/data/engine.ts';
import type { Locals, OpContext } from '../../lib/ops/context.ts';
import { runOperation } from '../../lib/ops/index.ts';
import type { Operation } from '../../protocols/entities.ts';

/**
 * In-process Sequential chains (initiator -> worker 1 -> ... -> initiator), every hop packed and
 * unpacked as on the wire: the unit tests of estimators run the real handlers this way.
 */

export class MapLocals implements Locals {
  readonly map = new Map<string, unknown>();
  get(key: string): unknown {
    return this.map.get(key);
  }
  set(key: string, value: unknown): void {
    this.map.set(key, value);
  }
}

export interface ChainNode {
  data: DataEngine | undefined;
  locals: Locals;
  privacy?: OpContext['privacy'];
}

export const TOKEN = 'project-token';

/** mulberry32: a seeded [0,1) generator. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export function ctxOf(node: ChainNode, operation: Operation, inputs: unknown[], extra: Partial<OpContext> = {}): OpContext {
  const c: OpContext = {
    operation,
    attempt: 1,
    artifactId: 'artifact-1',
    stepIndex: 0,
    iteration: 0,
    projectToken: TOKEN,
    inputs,
    data: node.data,
    locals: node.locals,
    random: seeded(42),
    ...extra,
  };
  if (node.privacy !== undefined && extra.privacy === undefined) c.privacy = node.privacy;
  return c;
}

export const wire = (x: unknown): unknown => unpack(pack(x));

export interface Chain {
  result: unknown;
  /** The products of init and of each worker, as they crossed the wire. */
  hops: unknown[];
}

export async function sequential(
  initiator: ChainNode,
  workers: ChainNode[],
  init: Operation,
  op: Operation,
  final: Operation,
  extra: Partial<OpContext> = {},
): Promise<Chain> {
  const hops: unknown[] = [wire(await runOperation(ctxOf(initiator, init, [], extra)))];
  for (const w of workers) hops.push(wire(await runOperation(ctxOf(w, op, [hops.at(-1)], extra))));
  const result = wire(await runOperation(ctxOf(initiator, final, [hops.at(-1)], extra)));
  return { result, hops };
}

/** The FdlError a promise rejects with (anything else fails the test). */
export async function caught(p: Promise<unknown>): Promise<{ code: string; message: string; retryable: boolean; path?: string }> {
  try {
    await p;
  } catch (e) {
    if (typeof e === 'object' && e !== null && (e as { isFdlError?: unknown }).isFdlError === true) {
      return e as { code: string; message: string; retryable: boolean; path?: string };
    }
    throw e;
  }
  throw new Error('expected a rejection');
}
