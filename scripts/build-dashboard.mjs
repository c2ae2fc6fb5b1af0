#!/usr/bin/env node
// Builds the dashboard page into dist/dashboard/ (served by the scheduler, lib/dashboard/serve.ts):
// dashboard/main.tsx bundled by esbuild for the browser (Preact, uPlot, the protocol's schemas and
// codec) into app.js and app.css, with index.html beside them. Run by `npm run build:dashboard`, and by `prepare` on `npm ci`.
// Nothing it writes is committed (dist/ is ignored).
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const src = `${root}dashboard/`;
const out = `${root}dist/dashboard/`;

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const started = Date.now();
const result = await build({
  entryPoints: [`${src}main.tsx`],
  outfile: `${out}app.js`,
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: ['es2022'],
  minify: true,
  sourcemap: true,
  jsx: 'automatic',
  jsxImportSource: 'preact',
  // A node-only module in the bundle is a mistake (it would not run in a browser): fail the build.
  external: [],
  logLevel: 'warning',
  metafile: true,
  legalComments: 'none',
});
// The styles are imported by main.tsx (ours and uPlot's): esbuild writes them to app.css.
copyFileSync(`${src}index.html`, `${out}index.html`);
const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
console.log(`dashboard built in ${Date.now() - started} ms: ${out} (${Math.round(bytes / 1024)} KiB with the source map)`);
