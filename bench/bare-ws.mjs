// The bare-ws baseline of bench/stream.ts, as its own process (plain JavaScript: no transpiler at
// start). `sink BYTES [FILE]`: listens on loopback, prints {"port"}, then {"ms"} once BYTES arrived
// (from the first frame to the last; with FILE, each frame is written to it and it is fsynced at
// the end, as a store must), and exits. `source URL BYTES CHUNK`: sends BYTES in CHUNK-byte
// binary frames with the same back-pressure as ours (at most 8 frames the socket has not written),
// then waits for the sink to close. No hashing, no codec, no disk: what ws alone costs. Each prints
// its CPU while the bytes moved (`cpuMs`, user + system, from the first frame or the open) last, for the floor of bench/stream-floor.ts.
import { closeSync, fsyncSync, openSync, rmSync, writeSync } from 'node:fs';
import WebSocket, { WebSocketServer } from 'ws';

const [role, ...args] = process.argv.slice(2);
const WINDOW = 8;

if (role === 'sink') {
  const total = Number(args[0]);
  const file = args[1];
  const fd = file ? openSync(file, 'w') : undefined;
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  wss.on('listening', () => process.stdout.write(`${JSON.stringify({ port: wss.address().port })}\n`));
  wss.on('connection', (ws) => {
    let got = 0;
    let first = 0;
    let cpu0;
    ws.on('message', (data) => {
      if (got === 0) {
        first = performance.now();
        cpu0 = process.cpuUsage();
      }
      if (fd !== undefined) writeSync(fd, data, 0, data.length, got);
      got += data.length;
      if (got >= total) {
        if (fd !== undefined) {
          fsyncSync(fd);
          closeSync(fd);
          rmSync(file, { force: true });
        }
        const cpu = process.cpuUsage(cpu0);
        process.stdout.write(`${JSON.stringify({ ms: performance.now() - first, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
        ws.close();
        wss.close();
      }
    });
  });
} else if (role === 'source') {
  const [url, bytes, chunkBytes] = [args[0], Number(args[1]), Number(args[2])];
  const chunk = Buffer.alloc(chunkBytes, 7);
  const ws = new WebSocket(url, { perMessageDeflate: false });
  let cpu0;
  ws.on('open', () => {
    cpu0 = process.cpuUsage();
    let sent = 0;
    let inFlight = 0;
    const pump = () => {
      while (inFlight < WINDOW && sent < bytes) {
        const n = Math.min(chunkBytes, bytes - sent);
        sent += n;
        inFlight++;
        ws.send(n === chunkBytes ? chunk : chunk.subarray(0, n), { binary: true }, () => {
          inFlight--;
          pump();
        });
      }
    };
    pump();
  });
  ws.on('close', () => {
    const cpu = process.cpuUsage(cpu0);
    process.stdout.write(`${JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
    process.exit(0);
  });
} else {
  process.stderr.write('usage: bare-ws.mjs sink BYTES | source URL BYTES CHUNK\n');
  process.exit(2);
}
