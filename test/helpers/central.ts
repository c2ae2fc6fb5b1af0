import { readFileSync } from 'node:fs';
import { meanOf } from './stats.ts';

/**
 * The central computation the federated figures must equal: the union of the shards,
 * parsed here with plain code (no DuckDB), so a bug in the data engine cannot hide itself.
 */
export interface Table {
  columns: string[];
  rows: number[][];
}

export function readCsv(file: string): Table {
  const [header, ...lines] = readFileSync(file, 'utf8').trim().split('\n');
  const columns = (header ?? '').split(',');
  return { columns, rows: lines.map((l) => l.split(',').map(Number)) };
}

export function union(...tables: Table[]): Table {
  return { columns: tables[0]?.columns ?? [], rows: tables.flatMap((t) => t.rows) };
}

export function column(t: Table, name: string): number[] {
  const i = t.columns.indexOf(name);
  if (i < 0) throw new Error(`no column ${name}`);
  return t.rows.map((r) => r[i] as number);
}

/** The central mean, with the same compensated sum as every other central figure. */
export function mean(values: number[]): number {
  return meanOf(values);
}

export function relErr(a: number, b: number): number {
  return b === 0 ? Math.abs(a) : Math.abs(a - b) / Math.abs(b);
}
