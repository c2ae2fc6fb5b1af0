import { cpus } from 'node:os';
import { createLogger } from '../lib/log.ts';
import { benchBigData } from './bigdata.ts';
import { benchArtifacts } from './artifact.ts';
import { benchDispatch } from './dispatch.ts';
import { benchForest } from './models-forest.ts';
import { benchRoundTrips } from './roundtrip.ts';
import { benchRounds } from './rounds.ts';
import { benchScale } from './scale.ts';
import { benchStream } from './stream.ts';
import { Cleanup, type Row, table } from './util.ts';

/**
 * `npm run bench`: every figure measured in one run, each next to a baseline measured in the
 * same run (machines here are shared and noisy: read the ratios, not the absolute numbers).
 * Each figure is the median of a few repeats. Processes and temp dirs are cleaned up on exit,
 * on error and on SIGINT/SIGTERM.
 *
 * Env: BENCH_REPEATS (default 5), BENCH_MESSAGES (default 200000), BENCH_ROUND_TRIPS (2000),
 * BENCH_ARTIFACTS (10), BENCH_ONLY=dispatch,roundtrip,artifact,models,rounds,scale,stream,bigdata (a subset), BENCH_SCALE=10,100,1000,
 * BENCH_STREAM_MIB (1024: the streamed resource's size), BENCH_STREAM_REPEATS (3), BENCH_STREAM_SEALED (both; 1: sealed only, 0: plain only),
 * BENCH_BIGDATA_ROWS (10000000: rows of `bigdata`, split over 4 workers).
 */

const int = (name: string, dflt: number) => {
  const v = Number(process.env[name]);
  return Number.isInteger(v) && v > 0 ? v : dflt;
};
const REPEATS = int('BENCH_REPEATS', 5);
const MESSAGES = int('BENCH_MESSAGES', 200_000);
const ROUND_TRIPS = int('BENCH_ROUND_TRIPS', 2000);
const ARTIFACTS = int('BENCH_ARTIFACTS', 10);
const ONLY = new Set((process.env.BENCH_ONLY ?? 'dispatch,roundtrip,artifact,models,rounds,scale,stream,bigdata').split(',').map((s) => s.trim()));
/** Past this, the run is abandoned (cleanup still runs). */
const HARD_LIMIT_MS = 1_200_000;

const log = createLogger('bench', process.env.FDL_LOG_LEVEL ?? 'warn');
const cleanup = new Cleanup();

const abort = (why: string, code: number) => {
  process.stderr.write(`bench: ${why}; cleaning up\n`);
  void cleanup.run().finally(() => process.exit(code));
};
process.once('SIGINT', () => abort('interrupted', 130));
process.once('SIGTERM', () => abort('terminated', 143));
process.on('uncaughtException', (e) => abort(`uncaught exception: ${e.stack ?? e.message}`, 1));
process.on('unhandledRejection', (reason) => log.error({ err: reason }, 'unhandled rejection'));
setTimeout(() => abort(`still running after ${HARD_LIMIT_MS / 1000} s`, 1), HARD_LIMIT_MS).unref();

async function main(): Promise<Row[]> {
  const started = performance.now();
  process.stdout.write(
    `fdl bench: node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ` +
      `median of ${REPEATS} repeats (artifacts: ${ARTIFACTS})\n`,
  );
  const rows: Row[] = [];
  // Each part tears down what it started before the next begins, so nothing idles on the 2 cores.
  const part = async (name: string, run: (c: Cleanup) => Promise<Row[]>) => {
    if (!ONLY.has(name)) return;
    const own = new Cleanup();
    cleanup.add(name, () => own.run());
    try {
      rows.push(...(await run(own)));
    } finally {
      await own.run();
    }
  };
  await part('dispatch', (c) => benchDispatch({ log, cleanup: c, messages: MESSAGES, repeats: REPEATS }));
  await part('roundtrip', (c) => benchRoundTrips({ log, cleanup: c, count: ROUND_TRIPS, inflight: [1, 32], repeats: REPEATS }));
  await part('artifact', (c) => benchArtifacts({ cleanup: c, repeats: ARTIFACTS, warmRuns: int('BENCH_WARM_RUNS', 200) }));
  await part('models', () => benchForest({ repeats: REPEATS, rows: 2000 }));
  await part('rounds', (c) => benchRounds({ cleanup: c, repeats: REPEATS, workers: [2, 4] }));
  await part('scale', (c) =>
    benchScale({ cleanup: c, repeats: REPEATS, sizes: (process.env.BENCH_SCALE ?? '10,100,1000').split(',').map(Number) }),
  );
  // Sealed is the goal's case (AES-GCM on); plain shows what sealing costs. BENCH_STREAM_SEALED=1|0: one of them.
  const sealedModes = process.env.BENCH_STREAM_SEALED === '1' ? [true] : process.env.BENCH_STREAM_SEALED === '0' ? [false] : [true, false];
  for (const sealed of sealedModes) {
    await part('stream', (c) =>
      benchStream({ cleanup: c, repeats: int('BENCH_STREAM_REPEATS', Math.min(REPEATS, 3)), bytes: int('BENCH_STREAM_MIB', 1024) * 1024 * 1024, sealed, chunkBytes: int('BENCH_STREAM_CHUNK_KIB', 1024) * 1024 }),
    );
  }
  await part('bigdata', (c) => benchBigData({ cleanup: c, repeats: REPEATS, rows: int('BENCH_BIGDATA_ROWS', 10_000_000) }));
  process.stdout.write(`\n${table(rows)}\n\ntotal ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  return rows;
}

let code = 0;
try {
  await main();
} catch (e) {
  process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
  code = 1;
} finally {
  await cleanup.run();
}
// Lingering handles (nact timers, DuckDB threads) must not keep a finished bench alive.
process.exit(code);
