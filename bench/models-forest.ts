import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { RandomForestClassifier } from 'ml-random-forest';
import { accuracy } from '../lib/ops/metrics.ts';
import { trainForest } from '../lib/ops/models/forest.ts';
import { type Matrix, predictMatrix } from '../lib/ops/models/model.ts';
import { median, ms, now, type Row, ratio, spread, table } from './util.ts';

/**
 * Random forest training: our typed-array trees (lib/ops/models/forest.ts: histogram splits)
 * against ml-random-forest (ml-cart trees), on the same rows of the California shard, with
 * every feature tried at every split on both sides (ml-random-forest draws features per tree,
 * so "all features" is the setting where both do the same work). Also prints the validation
 * accuracy of each, so speed is not bought with quality.
 *
 * Standalone: `npx tsx bench/models-forest.ts` (BENCH_REPEATS, BENCH_FOREST_ROWS).
 */

const DATA = fileURLToPath(new URL('../examples/data/', import.meta.url));

function read(file: string): { x: Matrix; y: number[]; rows: number[][] } {
  const lines = readFileSync(join(DATA, file), 'utf8').trim().split('\n').slice(1);
  const rows = lines.map((l) => l.split(',').map(Number));
  const d = (rows[0]?.length ?? 1) - 1;
  return {
    x: { rows: rows.length, cols: d, data: Float64Array.from(rows.flatMap((r) => r.slice(0, d))) },
    y: rows.map((r) => r[d] as number),
    rows: rows.map((r) => r.slice(0, d)),
  };
}

export async function benchForest(opts: { repeats: number; rows: number }): Promise<Row[]> {
  const shard = read('california_housing.MedInc1.csv');
  const val = read('california_housing.validation.csv');
  const n = Math.min(opts.rows, shard.x.rows);
  const x: Matrix = { rows: n, cols: shard.x.cols, data: shard.x.data.slice(0, n * shard.x.cols) };
  const y = shard.y.slice(0, n);
  const trees = 10;
  const depth = 10;

  const ours: number[] = [];
  const theirs: number[] = [];
  let oursAcc = 0;
  let theirsAcc = 0;
  // Warm-up (JIT) of our code, so the first repeat does not measure compilation.
  await trainForest(x, Uint8Array.from(y), [0, 1], { nEstimators: 2, maxDepth: depth, minSamplesSplit: 2, minSamplesLeaf: 1, maxFeatures: x.cols, bootstrap: true, maxBins: 256, seed: 99 }, { strategy: 'merge', features: [], label: 'y', salt: 0 });
  for (let r = 0; r < opts.repeats; r++) {
    let t0 = now();
    const f = await trainForest(
      x,
      Uint8Array.from(y),
      [0, 1],
      { nEstimators: trees, maxDepth: depth, minSamplesSplit: 2, minSamplesLeaf: 1, maxFeatures: x.cols, bootstrap: true, maxBins: 256, seed: r },
      { strategy: 'merge', features: [], label: 'y', salt: 0 },
    );
    ours.push(now() - t0);
    oursAcc = accuracy(val.y, predictMatrix({ ...f, features: Array.from({ length: x.cols }, (_, i) => `f${i}`) }, val.x).predicted);

    t0 = now();
    const rf = new RandomForestClassifier({
      nEstimators: trees,
      maxFeatures: 1.0,
      replacement: false,
      useSampleBagging: true,
      noOOB: true,
      seed: r + 1,
      treeOptions: { maxDepth: depth },
    });
    rf.train(shard.rows.slice(0, n), y);
    theirs.push(now() - t0);
    theirsAcc = accuracy(val.y, rf.predict(val.rows));
  }

  // Our default forest on a whole shard, for scale.
  const full: number[] = [];
  for (let r = 0; r < opts.repeats; r++) {
    const t0 = now();
    await trainForest(
      shard.x,
      Uint8Array.from(shard.y),
      [0, 1],
      { nEstimators: 100, maxDepth: 32, minSamplesSplit: 2, minSamplesLeaf: 1, maxFeatures: 2, bootstrap: true, maxBins: 256, seed: r },
      { strategy: 'merge', features: [], label: 'y', salt: 0 },
    );
    full.push(now() - t0);
  }

  process.stdout.write(
    `forest: ${n} rows, ${trees} trees, depth ${depth}, all features per split; ` +
      `ours ${ms(median(ours))} (spread ${spread(ours).toFixed(2)}), ml-random-forest ${ms(median(theirs))} (spread ${spread(theirs).toFixed(2)}); ` +
      `validation accuracy ours ${oursAcc.toFixed(4)}, ml-random-forest ${theirsAcc.toFixed(4)}\n`,
  );
  return [
    {
      figure: `forest training, ${n} rows × ${trees} trees`,
      value: ms(median(ours)),
      baseline: ms(median(theirs)),
      ratio: ratio(median(theirs) / median(ours)),
      note: `ml-random-forest 2.1.0 as baseline; accuracy ${oursAcc.toFixed(3)} vs ${theirsAcc.toFixed(3)}`,
    },
    {
      figure: `forest training, ${shard.x.rows} rows × 100 trees (defaults)`,
      value: ms(median(full)),
      note: 'ours only (the baseline would take minutes)',
    },
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const repeats = Number(process.env.BENCH_REPEATS) || 3;
  const rows = Number(process.env.BENCH_FOREST_ROWS) || 2_000;
  process.stdout.write(`${table(await benchForest({ repeats, rows }))}\n`);
}
