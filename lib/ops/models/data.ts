import type { Query } from '../../../protocols/entities.ts';
import { type OpContext, requireData } from '../context.ts';
import type { Matrix } from './model.ts';

/** A worker's labelled rows for a model: complete rows only. */
export interface Dataset {
  x: Matrix;
  y: Float64Array;
  /** For each kept row, its position among the rows the query returned (what splits hash). */
  rowIndex: Uint32Array;
  /** Rows the query returned, complete or not. */
  queried: number;
}

/**
 * Reads the features and the label through the data engine (typed arrays, no row objects) and
 * keeps the rows where none of them is missing (a model cannot train on a NaN).
 */
export async function readDataset(ctx: OpContext, features: string[], label: string | undefined, query?: Query): Promise<Dataset> {
  const engine = requireData(ctx);
  const names = label === undefined ? features : [...features, label];
  const { rows, columns } = await engine.numericColumns(ctx.projectToken, names, query);
  const cols = features.map((f) => columns[f] as Float64Array);
  const lab = label === undefined ? undefined : (columns[label] as Float64Array);
  const keep: number[] = [];
  for (let r = 0; r < rows; r++) {
    let ok = lab === undefined || !Number.isNaN(lab[r]);
    for (let j = 0; ok && j < cols.length; j++) ok = !Number.isNaN((cols[j] as Float64Array)[r]);
    if (ok) keep.push(r);
  }
  return subset({ x: { rows, cols: features.length, data: rowMajor(cols, rows) }, y: lab ?? new Float64Array(rows), rowIndex: Uint32Array.from({ length: rows }, (_, i) => i), queried: rows }, keep);
}

function rowMajor(cols: Float64Array[], rows: number): Float64Array {
  const d = cols.length;
  const out = new Float64Array(rows * d);
  for (let j = 0; j < d; j++) {
    const c = cols[j] as Float64Array;
    for (let r = 0; r < rows; r++) out[r * d + j] = c[r] as number;
  }
  return out;
}

/** The rows at the given positions (ascending). */
export function subset(ds: Dataset, keep: ArrayLike<number>): Dataset {
  const d = ds.x.cols;
  const n = keep.length;
  const data = new Float64Array(n * d);
  const y = new Float64Array(n);
  const rowIndex = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const r = keep[i] as number;
    data.set(ds.x.data.subarray(r * d, r * d + d), i * d);
    y[i] = ds.y[r] as number;
    rowIndex[i] = ds.rowIndex[r] as number;
  }
  return { x: { rows: n, cols: d, data }, y, rowIndex, queried: ds.queried };
}
