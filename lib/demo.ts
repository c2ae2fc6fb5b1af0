import { join } from 'node:path';
import type { Query } from '../protocols/entities.ts';
import { dashboardUrl } from './dashboard/serve.ts';
import type { CountProduct, GroupCountProduct, MeanProduct } from './ops/index.ts';
import { centralMeans, type ComparisonRow, compare, printComparison, quoteIdent, withUnion } from './sim/central.ts';
import { EXAMPLE_DATA } from './sim/cluster.ts';
import { follow, onLoopback } from './sim/loopback.ts';
import { where } from './workbench.ts';

/**
 * `fdl demo`: a scheduler and two workers as separate processes on loopback, holding the
 * two California shards; federated statistics submitted through the workbench library,
 * each printed beside the same figure computed centrally over the union of the shards.
 */

const SHARDS = ['california_housing.MedInc1.csv', 'california_housing.MedInc2.csv'].map((f) => join(EXAMPLE_DATA, f));
const LABEL = 'MedHouseValDiscrete';
const FILTER: Query = { where: where('HouseAge', '>', 30) };

export type DemoRow = ComparisonRow;

/** The central figures, computed over the union of the shards in one place (what federation must equal). */
async function centralFigures(features: string[]) {
  const { count, means } = await centralMeans(SHARDS, features);
  return withUnion(SHARDS, async (one, union) => {
    const filtered = Number((await one(`SELECT count(*) FROM ${union} WHERE HouseAge > 30`))[0]?.[0]);
    const groups = new Map<string, number>();
    for (const [k, n] of await one(`SELECT ${quoteIdent(LABEL)}, count(*) FROM ${union} GROUP BY 1`)) {
      groups.set(JSON.stringify([Number(k)]), Number(n));
    }
    return { count, filtered, means, groups };
  });
}

const row = compare;

export interface DemoOptions {
  json: boolean;
  keep: boolean;
  /** Keep the cluster up after the figures, print the dashboard's address and token, until SIGINT/SIGTERM. */
  dashboard?: boolean;
}

export function runDemo(opts: DemoOptions): Promise<number> {
  return onLoopback('demo', opts, async ({ dir, token, say, start, workbench, untilStopped }) => {
    say(`starting a scheduler and 2 workers in ${dir} ...`);
    const cluster = await start({ projectName: 'california', workers: SHARDS.map((f, i) => ({ name: `worker-${i + 1}`, files: [f] })) });
    say(`scheduler at ${cluster.url}; workers connected`);
    const wb = await workbench('demo');
    const project = await wb.project(token);
    const features = project.numericFeatures();
    say(`project ${project.info.name}: ${project.info.workers} workers, ${project.info.rows} rows, ${features.length} numeric features`);

    const count = await follow<CountProduct>('count', await project.count(), opts.json);
    const filtered = await follow<CountProduct>('count HouseAge>30', await project.count(FILTER), opts.json);
    const mean = await follow<MeanProduct>('mean', await project.mean(features), opts.json);
    const groups = await follow<GroupCountProduct>(`groupCount ${LABEL}`, await project.groupCount([LABEL]), opts.json);

    const central = await centralFigures(features);
    const rows: DemoRow[] = [
      row('count', count.count, central.count, true),
      row('count where HouseAge > 30', filtered.count, central.filtered, true),
      ...features.map((f) => row(`mean ${f}`, mean.mean[f] ?? Number.NaN, central.means[f] ?? Number.NaN, false)),
      ...groups.groups.map((g) =>
        row(`count ${LABEL}=${g.key.join(',')}`, g.count, central.groups.get(JSON.stringify(g.key)) ?? Number.NaN, true),
      ),
    ];
    const ok = rows.every((r) => r.match) && groups.groups.length === central.groups.size;
    const dashboard = opts.dashboard ? { url: dashboardUrl(cluster.url), scheduler: cluster.url, token: cluster.workbenchToken, projectToken: token, dir } : undefined;
    if (opts.json) {
      const doc = { ok, project: project.info.name, workers: project.info.workers, results: rows, ...(dashboard ? { dashboard } : {}) };
      process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    } else {
      printComparison(rows, ok);
    }
    if (!dashboard) return ok ? 0 : 1;
    if (!opts.json) process.stdout.write(dashboardNotice(dashboard, opts.keep));
    const signal = await untilStopped();
    say(`${signal}: stopping the demo cluster ...`);
    return ok ? 0 : 1;
  });
}

function dashboardNotice(d: { url: string; scheduler: string; token: string; projectToken: string; dir: string }, keep: boolean): string {
  return [
    '',
    'The demo cluster keeps running:',
    `  dashboard       ${d.url}`,
    `  workbench token ${d.token}   (paste it into the page)`,
    `  project token   ${d.projectToken}   (the project's schema, fdl submit --project)`,
    `  from another terminal: export FDL_URL=${d.scheduler} FDL_TOKEN=${d.token}; npx fdl artifacts`,
    `Ctrl-C stops the scheduler and both workers${keep ? ` (the folder ${d.dir} is kept)` : ` and removes ${d.dir}`}.`,
    '',
  ].join('\n');
}
