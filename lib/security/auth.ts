import type { WireError } from '../../protocols/errors.ts';
import { wireError } from '../../protocols/errors.ts';
import type { MessageOf } from '../../protocols/messages.ts';
import type { Store } from '../store/store.ts';
import { handshakeMessage, isBoxKey, verifySignature } from './identity.ts';

/**
 * The scheduler's checks on a peer's hello. A worker proves possession of its key by signing
 * this connection's fresh nonce (a replayed hello fails); its key is pinned to its node id at
 * the first join, which needs a join token; later joins need the same key and a join token that
 * has not been revoked since. A workbench shows a workbench token, whose scope says which
 * projects it may see.
 */

export type Authenticated<T> = ({ ok: true } & T) | { ok: false; error: WireError };

export function authenticateWorker(
  store: Store,
  schedulerId: string,
  nonce: Uint8Array,
  hello: MessageOf<'workerHello'>,
): Authenticated<{ joinTokenId: string | undefined; firstJoin: boolean }> {
  const refuse = (message: string) => ({ ok: false as const, error: wireError('AUTH_FAILED', message) });
  if (!isBoxKey(hello.boxKey)) return refuse('boxKey is not an X25519 public key');
  if (!verifySignature(hello.signKey, handshakeMessage(schedulerId, hello.nodeId, nonce, hello.boxKey), hello.signature)) {
    return refuse('the signature does not match this connection and key');
  }
  const pinned = store.nodeKeys(hello.nodeId);
  if (pinned) {
    if (pinned.signKey !== hello.signKey || pinned.boxKey !== hello.boxKey) {
      return refuse(`node id ${hello.nodeId} is bound to another key`);
    }
    if (pinned.joinTokenId && store.isTokenRevoked(pinned.joinTokenId)) return refuse('the join token of this node was revoked');
    return { ok: true, joinTokenId: pinned.joinTokenId, firstJoin: false };
  }
  const token = hello.joinToken === undefined ? undefined : store.findToken('join', hello.joinToken);
  if (!token) return refuse('a first join needs a valid join token');
  return { ok: true, joinTokenId: token.id, firstJoin: true };
}

export interface WorkbenchScope {
  tokenId: string;
  /** Project ids this session may see; undefined: every project. */
  projects: ReadonlySet<string> | undefined;
}

export function authenticateWorkbench(store: Store, hello: MessageOf<'workbenchHello'>): Authenticated<{ scope: WorkbenchScope }> {
  const token = store.findToken('workbench', hello.token);
  if (!token) return { ok: false, error: wireError('AUTH_FAILED', 'unknown or revoked workbench token') };
  return { ok: true, scope: { tokenId: token.id, projects: token.projects ? new Set(token.projects) : undefined } };
}

export function inScope(scope: WorkbenchScope, projectId: string): boolean {
  return scope.projects === undefined || scope.projects.has(projectId);
}
