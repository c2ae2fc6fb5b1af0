// Why: a progress push carries the transitions of one barrier (protocol 6). What may be left out
// of a batch is decided here, and the watchers' guarantees rest on it: every job's final state,
// every failure's cause and every artifact state reach them, in order.
import t from 'tap';
import { coalesce, framesOf } from '../lib/artifact-events.ts';
import { type ArtifactEventItem, MAX_EVENTS_PER_FRAME } from '../protocols/messages.ts';

type JobEvent = Extract<ArtifactEventItem, { kind: 'jobState' }>;
const job = (jobId: string, state: JobEvent['state'], attempt = 1): JobEvent => ({
  kind: 'jobState',
  jobId,
  worker: 'w',
  state,
  attempt,
});

t.test('a job scheduled or running then done in one batch: only its later transitions', async (t) => {
  const error = { code: 'ATTEMPT_TIMEOUT' as const, message: 'slow', retryable: true };
  const batch: ArtifactEventItem[] = [
    job('a.0', 'SCHEDULED'),
    job('a.1', 'SCHEDULED'),
    job('a.0', 'RUNNING'),
    { ...job('a.0', 'FAILED'), error },
    job('a.0', 'SCHEDULED', 2),
    job('a.0', 'COMPLETED', 2),
    job('a.2', 'SCHEDULED'),
    { kind: 'artifactState', state: 'RUNNING' },
  ];
  t.same(coalesce(batch), [
    job('a.1', 'SCHEDULED'),
    { ...job('a.0', 'FAILED'), error },
    job('a.0', 'COMPLETED', 2),
    job('a.2', 'SCHEDULED'),
    { kind: 'artifactState', state: 'RUNNING' },
  ]);
  t.same(coalesce([job('a.0', 'RUNNING')]), [job('a.0', 'RUNNING')], 'the last word on a job is always kept');
});

t.test('a long batch goes as frames of at most MAX_EVENTS_PER_FRAME, in order', async (t) => {
  const batch = Array.from({ length: MAX_EVENTS_PER_FRAME + 5 }, (_, i) => job(`a.${i}`, 'COMPLETED'));
  const frames = framesOf(batch);
  t.same(frames.map((f) => f.length), [MAX_EVENTS_PER_FRAME, 5]);
  t.same(frames.flat(), batch);
});
