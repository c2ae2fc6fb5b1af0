import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { Admission, type ConnectionLimits, DEFAULT_CONNECTION_LIMITS } from './admission.ts';
import { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_MAX_PAYLOAD_BYTES } from './defaults.ts';
import { PeerConnection, type RateLimit, refuseSocket } from './peer.ts';

export interface ServerOptions {
  host: string;
  port: number;
  /** PEM certificate and key: serve wss:// (Node's TLS). */
  tls?: { cert: Buffer; key: Buffer };
  maxPayloadBytes?: number;
  heartbeatMs?: number;
  rateLimit?: Partial<RateLimit>;
  limits?: Partial<ConnectionLimits>;
  /** Plain HTTP requests (not upgrades): e.g. the dashboard's files. Without it they get 426. */
  http?: (req: IncomingMessage, res: ServerResponse) => void;
  onConnection(peer: PeerConnection): void;
}

export interface RunningServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** The scheduler's listening socket. Peers dial in; upgrades happen in our hands (noServer). */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const answer =
    opts.http ??
    ((_req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(426, { 'content-type': 'text/plain' });
      res.end('fdl scheduler: connect with a WebSocket client\n');
    });
  const http: Server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, answer) : createServer(answer);
  const maxPayloadBytes = opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: maxPayloadBytes });
  const admission = new Admission({ ...DEFAULT_CONNECTION_LIMITS, ...opts.limits });
  http.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      const address = req.socket.remoteAddress ?? '';
      // Refused after the upgrade, not with an HTTP status, so the peer reads why in a frame.
      const refusal = admission.refusal(address);
      if (refusal) {
        refuseSocket(ws, refusal, 1013, 'too many connections');
        return;
      }
      const heartbeatMs = opts.heartbeatMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
      const peer = new PeerConnection(ws, address, heartbeatMs, opts.rateLimit, maxPayloadBytes, { socket, admission });
      opts.onConnection(peer);
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(opts.port, opts.host, () => resolve());
  });
  const port = (http.address() as AddressInfo).port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `${opts.tls ? 'wss' : 'ws'}://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        http.close(() => resolve());
        http.closeAllConnections();
      }),
  };
}
