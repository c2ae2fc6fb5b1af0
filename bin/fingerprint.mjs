// Whether dist/ was built from the sources beside it. `npm run build` (scripts/build.mjs) writes
// dist/.fingerprint: a sha256 over the paths and bytes of the sources it compiled (protocols/,
// actors/, lib/ and the files that shape the build: BUILD_FILES), and a quick signature over their paths, sizes and
// modification times. bin/fdl.js runs dist/ only when they agree with the sources now, so a
// dist/ older than the sources is never run in their place (it runs the sources through tsx).
// The quick signature (stats only, ~1 ms) settles the common case; when it differs (a file
// touched, or checked out again) the contents decide.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

export const SOURCE_DIRS = ['protocols', 'actors', 'lib'];
// package-lock.json: the build bundles npm packages, so a changed dependency is a changed build.
export const BUILD_FILES = ['tsconfig.json', 'tsconfig.build.json', 'scripts/build.mjs', 'package-lock.json'];

/** The source files under `root` (a checkout), relative, sorted. */
function sourceFiles(root) {
  const files = [...BUILD_FILES];
  for (const dir of SOURCE_DIRS) {
    for (const entry of readdirSync(join(root, dir), { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) files.push(relative(root, join(entry.parentPath ?? entry.path, entry.name)));
    }
  }
  return files.sort();
}

/** `{ content, quick }`: the sha256 of the sources' paths and bytes, and of their paths, sizes and times. */
export function sourceFingerprint(root, files = sourceFiles(root)) {
  const content = createHash('sha256');
  for (const f of files) content.update(f).update('\0').update(readFileSync(join(root, f))).update('\0');
  return { content: content.digest('hex'), quick: quickSignature(root, files) };
}

function quickSignature(root, files) {
  const quick = createHash('sha256');
  for (const f of files) {
    const s = statSync(join(root, f), { bigint: true });
    quick.update(`${f}\0${s.size}\0${s.mtimeNs}\0`);
  }
  return quick.digest('hex');
}

/** Whether `stamp` (the text of dist/.fingerprint) matches the sources under `root` now. */
export function matchesSources(root, stamp) {
  const [content, quick] = stamp.trim().split(/\s+/);
  if (!content) return false;
  const files = sourceFiles(root);
  if (quick && quickSignature(root, files) === quick) return true;
  return sourceFingerprint(root, files).content === content;
}

/** The text of dist/.fingerprint for a fingerprint. */
export function stampText(fp) {
  return `${fp.content} ${fp.quick}\n`;
}
