// A thread of bench/rounds.ts's "trainings at once": one worker's FedAvg training, round after
// round, on its shard, when the main thread says go. Plain JavaScript because on Node 20 a worker
// thread does not inherit the tsx loader of the thread that started it (lib/ops/pool-thread-tsx.mjs).
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { initialLinear, trainLinear } = await import('../lib/ops/models/linear.ts');
const { x, y, features, training } = workerData;
const d = features.length;
let model = initialLinear('logisticRegression', features, 'y', new Float64Array(d), new Float64Array(d).fill(1));
const train = async (rounds) => {
  for (let i = 0; i < rounds; i++) model = { ...(await trainLinear(model, x, y, training)), round: model.round + 1 };
};
await train(200); // warm-up: V8's optimizing tier, as in bench/rounds.ts's compute baseline
parentPort.on('message', async (rounds) => {
  await train(rounds);
  parentPort.postMessage('done');
});
parentPort.postMessage('ready');
