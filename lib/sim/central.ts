import { DuckDBInstance } from '@duckdb/node-api';

/**
 * The central side of a federated run: figures computed in one place over the union of the
 * shards (what federation must equal), and the table that prints them side by side. Used by
 * `fdl demo` and `fdl simulate`.
 */

export interface ComparisonRow {
  statistic: string;
  federated: number;
  central: number;
  relativeError: number;
  match: boolean;
}

/**
 * Exact figures (counts) must be equal; floating ones within `tolerance` relative error. The
 * error is relative to `scale` when that is larger than the central value: a mean near zero is
 * judged against the spread of its feature (its standard deviation), not against itself.
 */
export function compare(statistic: string, federated: number, central: number, exact: boolean, tolerance = 1e-9, scale = 0): ComparisonRow {
  const against = Math.max(Math.abs(central), scale);
  const relativeError = against === 0 ? Math.abs(federated) : Math.abs(federated - central) / against;
  return { statistic, federated, central, relativeError, match: exact ? federated === central : relativeError <= tolerance };
}

/** The rows as an aligned table on stdout, then one line saying whether all match. */
export function printComparison(rows: ComparisonRow[], ok: boolean): void {
  const w = Math.max(...rows.map((r) => r.statistic.length));
  process.stdout.write(`\n${'statistic'.padEnd(w)}  ${'federated'.padStart(20)}  ${'central'.padStart(20)}  match\n`);
  for (const r of rows) {
    process.stdout.write(
      `${r.statistic.padEnd(w)}  ${String(Number(r.federated.toPrecision(12))).padStart(20)}  ${String(Number(r.central.toPrecision(12))).padStart(20)}  ${r.match ? 'yes' : `NO (rel. error ${r.relativeError.toExponential(2)})`}\n`,
    );
  }
  process.stdout.write(ok ? '\nevery federated figure equals the central one\n' : '\nSOME FIGURES DIFFER\n');
}

export const quoteIdent = (f: string) => `"${f.replace(/"/g, '""')}"`;

/** The union of CSV files in a throwaway DuckDB: `union` is the SQL source to select from. */
export async function withUnion<T>(files: string[], fn: (one: (sql: string) => Promise<unknown[][]>, union: string) => Promise<T>): Promise<T> {
  const db = await DuckDBInstance.create(':memory:');
  const c = await db.connect();
  try {
    const union = `read_csv_auto([${files.map((f) => `'${f.replace(/'/g, "''")}'`).join(', ')}])`;
    return await fn(async (sql) => (await c.runAndReadAll(sql)).getRows(), union);
  } finally {
    c.closeSync();
    db.closeSync();
  }
}

/** Row count, and the mean and (population) standard deviation of each feature over the union. */
export function centralMeans(
  files: string[],
  features: string[],
): Promise<{ count: number; means: Record<string, number>; stds: Record<string, number> }> {
  return withUnion(files, async (one, union) => {
    const aggregates = features.flatMap((f) => [`avg(${quoteIdent(f)})`, `stddev_pop(${quoteIdent(f)})`]);
    const row = (await one(`SELECT count(*), ${aggregates.join(', ')} FROM ${union}`))[0] ?? [];
    return {
      count: Number(row[0]),
      means: Object.fromEntries(features.map((f, i) => [f, Number(row[1 + 2 * i])])),
      stds: Object.fromEntries(features.map((f, i) => [f, Number(row[2 + 2 * i])])),
    };
  });
}
