import type { AggregatedFeature, ProjectData, ProjectInfo, Scalar } from '../protocols/entities.ts';

/** A project's line in a listing: how many workers and data sources hold its data, and their rows (no features). */
export function projectSummary(
  project: { id: string; name: string },
  holdings: ReadonlyArray<{ nodeId: string; data: ProjectData }>,
): Omit<ProjectInfo, 'features'> {
  let rows = 0;
  let datasources = 0;
  const workers = new Set<string>();
  for (const { nodeId, data } of holdings) {
    if (data.datasources.length > 0) workers.add(nodeId);
    for (const ds of data.datasources) {
      datasources++;
      rows += ds.rows;
    }
  }
  return { id: project.id, name: project.name, workers: workers.size, datasources, rows };
}

/**
 * A project's data as a researcher sees it: per feature, aggregates over every data source
 * of every worker (row-weighted means, global min/max, summed missing counts). Never rows.
 */
export function aggregateProject(
  project: { id: string; name: string },
  holdings: Array<{ nodeId: string; data: ProjectData }>,
): ProjectInfo {
  const features = new Map<string, AggregatedFeature & { weighted: number; meanRows: number; cats: Map<string, Scalar> }>();
  for (const { data } of holdings) {
    for (const ds of data.datasources) {
      for (const f of ds.features) {
        const key = `${f.name}\u0000${f.dtype}`;
        let agg = features.get(key);
        if (!agg) {
          agg = {
            name: f.name,
            dtype: f.dtype,
            datasources: 0,
            rows: 0,
            missing: 0,
            min: null,
            max: null,
            mean: null,
            weighted: 0,
            meanRows: 0,
            cats: new Map(),
          };
          features.set(key, agg);
        }
        agg.datasources++;
        agg.rows += ds.rows;
        agg.missing += f.missing;
        if (typeof f.min === 'number') agg.min = agg.min === null ? f.min : Math.min(agg.min, f.min);
        if (typeof f.max === 'number') agg.max = agg.max === null ? f.max : Math.max(agg.max, f.max);
        if (typeof f.mean === 'number') {
          const present = ds.rows - f.missing;
          agg.weighted += f.mean * present;
          agg.meanRows += present;
        }
        for (const c of f.categories ?? []) agg.cats.set(JSON.stringify(c), c);
      }
    }
  }
  const out: AggregatedFeature[] = [];
  for (const agg of features.values()) {
    const { weighted, meanRows, cats, ...feature } = agg;
    feature.mean = meanRows > 0 ? weighted / meanRows : null;
    if (cats.size > 0) feature.categories = [...cats.values()].sort(compareScalars);
    out.push(feature);
  }
  return { ...projectSummary(project, holdings), features: out };
}

export function compareScalars(a: Scalar, b: Scalar): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a) < String(b) ? -1 : 1;
}
