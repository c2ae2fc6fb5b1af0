import { decodeValue, encodeValue } from '../protocols/codec.ts';
import { classificationStats } from '../lib/ops/metrics.ts';
import { aggregateLinear } from '../lib/ops/models/aggregate.ts';
import { initialLinear } from '../lib/ops/models/linear.ts';
import { type LinearModel, modelToWire, parseModel, parseUpdate, updateToWire } from '../lib/ops/models/model.ts';
import { median } from './util.ts';

/**
 * What a FedAvg model's `history` costs a round of one long Iterate (issue 9), in process and without
 * the training: per round, each of N workers decodes the aggregate and encodes its update, and the
 * initiator decodes the N updates, aggregates and encodes the next aggregate. "carried" is the
 * aggregation as it was before the plan linked an Iterate's last round to the earlier ones (every
 * aggregate carries the whole history: `iteration` 0 takes that path); "own record" is the present
 * one. Prints the bytes of an aggregate and the CPU of that work, early and late in the Iterate.
 *
 *   node --import tsx bench/model-history.ts          (N=2, R=300; TEST=1: TrainTest updates, with test stats)
 */

const N = Number(process.env.N ?? 2);
const R = Number(process.env.R ?? 300);
const TEST = process.env.TEST === '1';
const K = 20;

const features = Array.from({ length: 10 }, (_, j) => `x${j}`);
const start = initialLinear('logisticRegression', features, 'y', new Float64Array(10), new Float64Array(10).fill(1));
// Test stats of a 500-row split, as a TrainTest update carries them (each round's record then holds their metrics).
const y = Float64Array.from({ length: 500 }, (_, i) => i % 2);
const test = classificationStats(
  [0, 1],
  y,
  Float64Array.from(y, (v, i) => (i % 3 ? v : 1 - v)),
  Float64Array.from({ length: 500 }, (_, i) => (i % 7) / 7),
);

function iterate(ownRecord: boolean) {
  let aggregate = encodeValue(modelToWire(start));
  const micros: number[] = [];
  const bytes: number[] = [];
  for (let r = 0; r < R; r++) {
    const t0 = performance.now();
    const updates: Uint8Array[] = [];
    for (let w = 0; w < N; w++) {
      const model = parseModel(decodeValue(aggregate)) as LinearModel;
      updates.push(encodeValue(updateToWire({ model, samples: 2500, ...(TEST ? { test, testSamples: 500 } : {}) })));
    }
    const merged = aggregateLinear(
      updates.map((u) => parseUpdate(decodeValue(u))),
      { strategy: 'weightedMean' },
      { iteration: ownRecord ? r : 0, earlier: [] },
    );
    aggregate = encodeValue(modelToWire(merged));
    micros.push((performance.now() - t0) * 1000);
    bytes.push(aggregate.byteLength);
  }
  return { micros, bytes };
}

process.stdout.write(`${TEST ? 'TrainTest' : 'Train'} updates, ${N} workers, one Iterate(${R}); per round, codec and aggregation only:\n`);
for (let rep = 0; rep < 3; rep++) {
  for (const ownRecord of [false, true]) {
    const { micros, bytes } = iterate(ownRecord);
    const mean = micros.reduce((s, x) => s + x, 0) / R;
    process.stdout.write(
      `  ${ownRecord ? 'own record' : 'carried   '}: aggregate ${bytes[1]} B at round 2, ${bytes[R - 1]} B at round ${R}; ` +
        `CPU rounds 2-${K + 1} ${median(micros.slice(1, K + 1)).toFixed(0)} us, last ${K} ${median(micros.slice(-K)).toFixed(0)} us, mean ${mean.toFixed(0)} us\n`,
    );
  }
}
