import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

/**
 * Reads an artifact file for `fdl submit`: YAML (`.yml`/`.yaml`) or JSON. A module of its own so
 * that yaml loads only for `fdl submit` (and with a static import: the build bundles yaml, a
 * CommonJS package, whose dynamic import would give its `default` only).
 */
export function readSpecFile(file: string): unknown {
  const text = readFileSync(file, 'utf8');
  return /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
}
