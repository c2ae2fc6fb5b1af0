import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package's root folder: this module is `<root>/lib/paths.ts` in the sources and part of a
 * `<root>/dist/*.js` file in the build (scripts/build.mjs), one folder down either way. Files
 * that are not built (bin/fdl.js, examples/data/) are found from here.
 */
export const PACKAGE_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** A path under the package's root (`packagePath('bin', 'fdl.js')`). */
export function packagePath(...parts: string[]): string {
  return join(PACKAGE_ROOT, ...parts);
}
