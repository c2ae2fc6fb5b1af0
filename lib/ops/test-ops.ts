import { createCipheriv, createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { HandlerMap } from './context.ts';
import { FdlError } from '../errors.ts';
import { type Ctx, type OpContext, offload } from './context.ts';
import { blobHeader, FileBlob } from './file-blob.ts';

/** Test aids: the product of a pass-through op is how many inputs it got. */
export interface NoopProduct {
  products: number;
}

export function noop(ctx: OpContext): NoopProduct {
  return { products: ctx.inputs.length };
}

/** Fails (retryably) while the attempt number is <= failAttempts. */
export function testFail(ctx: Ctx<'TestFail'>): NoopProduct {
  if (ctx.attempt <= ctx.operation.failAttempts) {
    throw new FdlError(
      'OPERATION_FAILED',
      `TestFail: attempt ${ctx.attempt} fails (fails while attempt <= ${ctx.operation.failAttempts})`,
      { retryable: true },
    );
  }
  return noop(ctx);
}

export async function testSleep(ctx: Ctx<'TestSleep'>): Promise<NoopProduct> {
  const { signal } = ctx;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', stop);
      resolve();
    }, ctx.operation.ms);
    function stop() {
      clearTimeout(timer);
      reject(signal?.reason);
    }
    signal?.addEventListener('abort', stop, { once: true });
  });
  return noop(ctx);
}

/** CPU work a TestSpin does between two checks of its signal (inline it also lets the loop run then). */
const SPIN_SLICE_MS = 20;

/** Keeps the CPU busy for `ms` milliseconds in JavaScript: the stand-in for a long training. */
export async function testSpin(ctx: Ctx<'TestSpin'>): Promise<NoopProduct> {
  await offload(ctx, 'TestSpin', computeSpin, { ms: ctx.operation.ms });
  return noop(ctx);
}

/** The compute half of TestSpin: returns how many spin iterations it made. */
export async function computeSpin(a: { ms: number }, signal?: AbortSignal): Promise<number> {
  const end = performance.now() + a.ms;
  let spins = 0;
  for (let now = performance.now(); now < end; now = performance.now()) {
    const slice = Math.min(end, now + SPIN_SLICE_MS);
    while (performance.now() < slice) spins++;
    await new Promise((r) => setImmediate(r));
    signal?.throwIfAborted();
  }
  return spins;
}

const BLOB_PIECE_BYTES = 1024 * 1024;

/**
 * TestBlob: `bytes` pseudo-random bytes written to a file as they are made (never whole in
 * memory), hashed on the way; or its binary input passed on when it has one of that length.
 */
export async function testBlob(ctx: Ctx<'TestBlob'>): Promise<FileBlob> {
  const { bytes, seed } = ctx.operation;
  const input = ctx.inputs.find((i): i is FileBlob => i instanceof FileBlob && i.length === bytes);
  if (input) return input;
  if (!ctx.scratch) throw new FdlError('OPERATION_FAILED', 'TestBlob: this node has no scratch folder for a file product', { retryable: false });
  mkdirSync(ctx.scratch, { recursive: true });
  const path = join(ctx.scratch, `blob-${ctx.artifactId}-${ctx.stepIndex}-${ctx.attempt}-${seed}.bin`);
  const key = createHash('sha256').update(`fdl-test-blob\0${seed}`).digest();
  const stream = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(Math.min(BLOB_PIECE_BYTES, bytes));
  const hash = createHash('sha256');
  const file = await open(path, 'w');
  try {
    const header = blobHeader(bytes);
    hash.update(header);
    await file.write(header);
    for (let done = 0; done < bytes; ) {
      ctx.signal?.throwIfAborted();
      const n = Math.min(BLOB_PIECE_BYTES, bytes - done);
      const piece = stream.update(zeros.subarray(0, n));
      hash.update(piece);
      await file.write(piece);
      done += n;
    }
  } finally {
    await file.close();
  }
  return new FileBlob(path, bytes, hash.digest('hex'));
}

export const basicHandlers = {
  Noop: noop,
  TestFail: testFail,
  TestSleep: testSleep,
  TestSpin: testSpin,
  TestBlob: testBlob,
} satisfies Partial<HandlerMap>;
