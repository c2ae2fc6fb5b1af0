import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join } from 'node:path';
import { packagePath } from '../paths.ts';

/**
 * The dashboard's files, served by the scheduler on its own port (lib/transport/server.ts).
 * The page is static: everything it shows it reads over the WebSocket protocol with the token
 * its user enters, so these files hold no data and need no authentication.
 *
 * Only the files found in the bundle folder at start are served, by exact name: a path is a key
 * looked up in that list, never joined to a folder, so no path can reach outside it.
 */

/**
 * Where `npm run build:dashboard` writes the bundle. Found from the package root (`lib/paths.ts`):
 * this module runs from the sources or inside a chunk of the CLI's bundle in dist/, at different depths.
 */
export const DASHBOARD_DIR = packagePath('dist', 'dashboard');

/** The dashboard's address: the scheduler's own port, over HTTP(S) (`ws://h:p` → `http://h:p/`). */
export const dashboardUrl = (wsUrl: string) => `${wsUrl.replace(/^ws/, 'http')}/`;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
};

interface Asset {
  body: Buffer;
  type: string;
}

// The page talks to its own origin only; no inline script, no framing by other sites.
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/**
 * An HTTP handler serving the bundle in `dir` (read once, at start). `/` is `index.html`. Answers
 * only GET and HEAD; a missing bundle is a 503 that says how to build it.
 */
export function dashboardHandler(dir: string = DASHBOARD_DIR): (req: IncomingMessage, res: ServerResponse) => void {
  const assets = new Map<string, Asset>();
  if (existsSync(dir)) {
    for (const name of readdirSync(dir)) {
      const file = join(dir, name);
      const type = TYPES[extname(name)];
      if (!type || !statSync(file).isFile()) continue;
      assets.set(`/${name}`, { body: readFileSync(file), type });
    }
  }
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return;
    }
    // The raw path without its query: compared as it is, never decoded nor resolved.
    let path = (req.url ?? '/').split('?')[0] as string;
    if (path === '/') path = '/index.html';
    const asset = assets.get(path);
    if (!asset) {
      if (assets.size === 0) {
        res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('fdl scheduler: the dashboard is not built (npm run build:dashboard)\n');
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, {
      'content-type': asset.type,
      'content-length': asset.body.byteLength,
      // index.html names the bundle; both are rebuilt together, so nothing is cached for long.
      'cache-control': 'no-cache',
      ...SECURITY_HEADERS,
    });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  };
}
