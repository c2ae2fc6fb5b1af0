import type { NodePeer } from '../../actors/scheduler.ts';
import type { Message } from '../../protocols/messages.ts';

/** Scripted nodes for a supervisor or a JobActor under test: what it sends to a node goes to `deliver`. */
export const scriptedPeers = (nodes: readonly string[], deliver: (nodeId: string, m: Message) => unknown): Map<string, NodePeer> =>
  new Map(nodes.map((nodeId) => [nodeId, { send: (m: Message) => void deliver(nodeId, m) }]));
