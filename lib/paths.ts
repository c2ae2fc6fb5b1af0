import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package's root folder, whether this module runs from the sources (`<root>/lib/paths.ts`,
 * through tsx) or from the build (`<root>/dist/lib/paths.js`): files that are not compiled
 * (bin/fdl.js, examples/data/) are found from here, never relative to a module's own URL.
 */
export const PACKAGE_ROOT = fileURLToPath(new URL(/\/dist\/lib\/[^/]+$/.test(import.meta.url) ? '../../' : '../', import.meta.url));

/** A path under the package's root (`packagePath('bin', 'fdl.js')`). */
export function packagePath(...parts: string[]): string {
  return join(PACKAGE_ROOT, ...parts);
}
