import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_MAX_PAYLOAD_BYTES } from './defaults.ts';
import { PeerConnection } from './peer.ts';

export interface ServerOptions {
  host: string;
  port: number;
  maxPayloadBytes?: number;
  heartbeatMs?: number;
  onConnection(peer: PeerConnection): void;
}

export interface RunningServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** The scheduler's listening socket. Peers dial in; upgrades happen in our hands (noServer). */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const http: Server = createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' });
    res.end('fdl scheduler: connect with a WebSocket client\n');
  });
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES,
  });
  http.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      const peer = new PeerConnection(ws, req.socket.remoteAddress ?? '', opts.heartbeatMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS);
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
    url: `ws://${host}:${port}`,
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
