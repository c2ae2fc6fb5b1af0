// Why: `fdl status --watch` is read by a person at a terminal and by scripts through a pipe. The
// view is a pure function of a status: each step's jobs counted by state, with attempts; on a
import { shouldMark } from '../lib/cli/output.ts';
// terminal each view replaces the last, in a pipe a view is written only when it changed.
import t from 'tap';
import { ProgressView, renderProgress, stepProgress } from '../lib/cli/watch.ts';
import type { ArtifactStatus, JobStatus } from '../protocols/entities.ts';

const job = (i: number, stepIndex: number, state: JobStatus['state'], attempt: number, extra: Partial<JobStatus> = {}): JobStatus => ({
  id: `j${i}`,
  index: i,
  worker: `w${i % 2}`,
  stepIndex,
  iteration: 0,
  operation: stepIndex === 0 ? 'Count' : 'Noop',
  state,
  attempt,
  ...extra,
});

const status = (jobs: JobStatus[], extra: Partial<ArtifactStatus> = {}): ArtifactStatus => ({
  id: 'a-1',
  name: 'demo',
  projectId: 'p-1',
  state: 'RUNNING',
  progress: { completed: jobs.filter((j) => j.state === 'COMPLETED').length, total: jobs.length },
  jobs,
  createdAt: 0,
  updatedAt: 0,
  ...extra,
});

t.test('each step counts its jobs by state, and their attempts', async (t) => {
  const s = status([job(0, 0, 'COMPLETED', 1), job(1, 0, 'FAILED', 2, { nextAttemptAt: 5 }), job(2, 0, 'RUNNING', 1), job(3, 1, 'WAITING', 0)]);
  t.same(stepProgress(s.jobs), [
    { step: 0, iteration: 0, operation: 'Count', jobs: 3, done: 1, running: 1, failed: 1, waiting: 0, attempts: 4, leftOut: 0 },
    { step: 1, iteration: 0, operation: 'Noop', jobs: 1, done: 0, running: 0, failed: 0, waiting: 1, attempts: 0, leftOut: 0 },
  ]);
  t.same(renderProgress(s), [
    'artifact a-1 (demo): RUNNING, 1/4 jobs',
    '  step 1  Count  [#>x]  done 1/3, running 1, failed 1, waiting 0; attempts 4',
    '  step 2  Noop   [.]  done 0/1, running 0, failed 0, waiting 1; attempts 0',
  ]);
});

t.test('rounds of an Iterate step are lines of their own; the error closes the view', async (t) => {
  const jobs = [job(0, 0, 'COMPLETED', 1), job(1, 0, 'COMPLETED', 1, { iteration: 1 }), job(2, 0, 'ERROR', 3, { iteration: 1, leftOut: true })];
  const lines = renderProgress(
    status(jobs, { state: 'ERROR', error: { jobId: 'j2', worker: 'w0', error: { code: 'INTERNAL', message: 'boom', retryable: true } } }),
  );
  t.match(lines[1], /^ {2}step 1 round 1 {2}Count {2}\[#\] {2}done 1\/1/);
  t.match(lines[2], /^ {2}step 1 round 2 {2}Count {2}\[#x\] {2}done 1\/2, running 0, failed 1 \(1 left out\), waiting 0; attempts 4$/);
  t.equal(lines[3], 'error (job j2 on w0): INTERNAL: boom');
});

/** A stream that records what is written to it. */
const sink = (isTTY: boolean) => {
  const chunks: string[] = [];
  return { chunks, stream: { isTTY, write: (c: string) => chunks.push(c) > 0 } as unknown as NodeJS.WritableStream & { isTTY?: boolean } };
};

t.test('a terminal redraws in place; a pipe gets a view only when it changed', async (t) => {
  const running = status([job(0, 0, 'RUNNING', 1)]);
  const done = status([job(0, 0, 'COMPLETED', 1)], { state: 'COMPLETED' });

  const tty = sink(true);
  const onTty = new ProgressView(tty.stream);
  onTty.draw(running);
  onTty.draw(done);
  t.equal(tty.chunks.length, 2);
  t.ok(tty.chunks[1]?.startsWith('\x1b[2F\x1b[J'), 'cursor up over the 2 lines drawn, clear, draw again');

  const pipe = sink(false);
  const onPipe = new ProgressView(pipe.stream);
  onPipe.draw(running);
  onPipe.draw(running);
  onPipe.draw(done);
  t.equal(pipe.chunks.length, 2, 'the same view twice is written once');
  t.notOk(pipe.chunks.join('').includes('\x1b'), 'no terminal codes in a pipe');

  const json = sink(false);
  const asJson = new ProgressView(json.stream, true);
  asJson.draw(running);
  asJson.draw(done);
  const lines = json.chunks.join('').trim().split('\n').map((l) => JSON.parse(l) as { state: string; steps: unknown[] });
  t.same(
    lines.map((l) => l.state),
    ['RUNNING', 'COMPLETED'],
    '--json: one line per view',
  );
});

t.test('a plain-text progress line marks every job up to 20, then every 5 % and the end', async (t) => {
  const marks = (total: number) => {
    const out: number[] = [];
    let last = -1;
    for (let done = 0; done <= total; done++) {
      if (shouldMark(last, done, total)) {
        out.push(done);
        last = done;
      }
    }
    return out;
  };
  t.same(marks(4), [0, 1, 2, 3, 4], 'a small artifact: every step');
  const big = marks(11_012);
  t.ok(big.length <= 22, `11,012 jobs: ${big.length} marks`);
  t.equal(big[0], 0, 'the start');
  t.equal(big.at(-1), 11_012, 'the end');
  t.notOk(shouldMark(5, 5, 100), 'no repeat');
});
