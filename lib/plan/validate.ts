import type { Step } from '../../protocols/entities.ts';
import { FdlError } from '../errors.ts';

/**
 * Submit-time check that every feature an artifact names exists in the project's data, so a
 * typo is refused before anything runs, with the step and field at fault. Names are checked
 * where they refer to the raw data: an artifact with query stages (which may derive, rename or
 * drop columns) is left to the workers, which check their own schema when they run.
 */
export function checkFeatures(steps: Step[], features: ReadonlySet<string>): void {
  // Stages anywhere may define names that other steps use (a model's init reads the columns its
  // training query derives): such an artifact is left to the workers' own checks.
  if (hasStages(steps)) return;
  for (const [i, step] of steps.entries()) {
    const path = `steps[${i}]`;
    if (step.kind === 'Iterate') {
      for (const [j, inner] of step.steps.entries()) checkStep(inner, `${path}.steps[${j}]`, features);
    } else checkStep(step, path, features);
  }
}

function checkStep(step: Exclude<Step, { kind: 'Iterate' }>, path: string, features: ReadonlySet<string>): void {
  if (step.kind === 'Sequential') {
    for (const part of ['init', 'operation', 'final'] as const) checkOperation(step[part], `${path}.${part}`, step.kind, path, features);
  } else checkOperation(step.operation, `${path}.operation`, step.kind, path, features);
}

const NAME_LISTS = new Set(['features', 'by']);
const NAMES = new Set(['feature', 'label']);

function hasStages(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(value)) return value.some(hasStages);
  const v = value as Record<string, unknown>;
  if (Array.isArray(v.stages) && v.stages.length > 0) return true;
  return Object.values(v).some(hasStages);
}

function checkOperation(op: unknown, opPath: string, kind: string, stepPath: string, features: ReadonlySet<string>): void {
  const visit = (value: unknown, path: string): void => {
    if (value === null || typeof value !== 'object') return;
    if (Array.isArray(value)) {
      for (const [i, v] of value.entries()) visit(v, `${path}[${i}]`);
      return;
    }
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
      const at = `${path}.${key}`;
      if (NAME_LISTS.has(key) && Array.isArray(v) && v.every((x) => typeof x === 'string')) {
        for (const [i, name] of v.entries()) missing(name as string, `${at}[${i}]`);
      } else if (NAMES.has(key) && typeof v === 'string') {
        missing(v, at);
      } else visit(v, at);
    }
  };
  const missing = (name: string, at: string) => {
    if (features.has(name)) return;
    throw new FdlError('INVALID_ARTIFACT', `step ${stepPath} (${kind}): ${at}: the project has no feature ${JSON.stringify(name)}`, {
      path: at,
    });
  };
  visit(op, opPath);
}
