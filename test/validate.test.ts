// Why: a malformed artifact must be refused at submit time with a message that says which step
// and field is wrong, before any job runs; names behind query stages are left to the worker.
import t from 'tap';
import type { Step } from '../protocols/entities.ts';
import { checkFeatures } from '../lib/plan/index.ts';

const features = new Set(['age', 'income', 'label']);
const refused = (steps: Step[]) => {
  try {
    checkFeatures(steps, features);
  } catch (e) {
    return e as { code: string; path: string; message: string };
  }
  return undefined;
};

t.test('names in features, by, label and filters are checked, with the step and field', async (t) => {
  t.equal(refused([{ kind: 'Parallel', operation: { kind: 'Count', query: { where: { feature: 'age', op: '>', value: 1 } } } }]), undefined);
  t.match(refused([{ kind: 'Parallel', operation: { kind: 'Count', query: { where: { and: [{ feature: 'age', op: '>', value: 1 }, { feature: 'zip', op: 'is null' }] } } } }]), {
    code: 'INVALID_ARTIFACT',
    path: 'steps[0].operation.query.where.and[1].feature',
    message: /step steps\[0\] \(Parallel\): .*no feature "zip"/,
  });
  t.match(
    refused([{ kind: 'Sequential', init: { kind: 'MeanInit', features: ['age'] }, operation: { kind: 'Mean', features: ['age', 'wage'] }, final: { kind: 'MeanFinal', features: ['age'] } }]),
    { path: 'steps[0].operation.features[1]' },
  );
  t.match(
    refused([{ kind: 'Iterate', iterations: 2, steps: [{ kind: 'Parallel', operation: { kind: 'GroupCount', by: ['sex'] } }] }]),
    { path: 'steps[0].steps[0].operation.by[0]', message: /steps\[0\]\.steps\[0\] \(Parallel\)/ },
  );
});

t.test('an operation whose query has stages is left to the worker (stages may derive or rename columns)', async (t) => {
  t.equal(
    refused([
      {
        kind: 'Parallel',
        operation: { kind: 'Mean', features: ['ratio'], query: { stages: [{ kind: 'Rename', from: ['income'], to: ['ratio'] }] } } as never,
      },
    ]),
    undefined,
  );
});

t.test('a Sequential whose worker query derives a column may name it in its init and final', async (t) => {
  const q = { stages: [{ kind: 'Derive', name: 'ratio', expr: { feature: 'income' } }] };
  t.equal(
    refused([
      {
        kind: 'Sequential',
        init: { kind: 'MeanInit', features: ['ratio'] },
        operation: { kind: 'Mean', features: ['ratio'], query: q } as never,
        final: { kind: 'MeanFinal', features: ['ratio'] },
      },
    ]),
    undefined,
  );
});
