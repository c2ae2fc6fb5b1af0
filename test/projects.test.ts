// Why: a listing shows each project's workers, data sources and rows without computing its
// features' statistics (listProjects is a request a dashboard repeats); the figures must be the
// ones the full view (`getProject`, aggregateProject) gives for the same data.
import t from 'tap';
import type { ProjectData } from '../protocols/entities.ts';
import { aggregateProject, projectSummary } from '../lib/projects.ts';

t.test("a project's summary is its full view without the features, the same figures", async (t) => {
  const feature = (name: string, mean: number) => ({ name, dtype: 'numeric' as const, sqlType: 'DOUBLE', missing: 1, min: 0, max: 10, mean });
  const data = (rows: number[]): ProjectData => ({ token: 'tok', datasources: rows.map((r, i) => ({ name: `d${i}`, rows: r, features: [feature('x', i), feature('y', 2)] })) });
  const holdings = [
    { nodeId: 'w1', data: data([100, 50]) },
    { nodeId: 'w2', data: data([7]) },
    { nodeId: 'w3', data: data([]) },
  ];
  const project = { id: 'p-1', name: 'one' };
  const { features, ...rest } = aggregateProject(project, holdings);
  t.ok(features.length > 0, 'the full view has features');
  t.strictSame(projectSummary(project, holdings), rest, 'the summary: the same fields and figures, in the same order');
  t.strictSame(Object.keys(projectSummary(project, holdings)), Object.keys(rest));
  t.strictSame(projectSummary(project, holdings), { id: 'p-1', name: 'one', workers: 2, datasources: 3, rows: 157 }, 'a worker without data sources does not count');
  t.strictSame(projectSummary(project, []), { id: 'p-1', name: 'one', workers: 0, datasources: 0, rows: 0 }, 'no holder');
});
