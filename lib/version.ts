import { readFileSync } from 'node:fs';
import { PROTOCOL_VERSION } from '../protocols/version.ts';

/** This software as a result's provenance names it: package.json's name and version, and the wire protocol's version. */
export const SOFTWARE: Readonly<{ name: string; version: string; protocolVersion: number }> = (() => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { name: string; version: string };
  return Object.freeze({ name: pkg.name, version: pkg.version, protocolVersion: PROTOCOL_VERSION });
})();
