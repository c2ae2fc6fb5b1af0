/**
 * Liveness of one socket, without sockets: ping on an interval; a peer that has not
 * answered the previous ping by the next tick is terminated (so a dead peer is found
 * within two intervals).
 */
export interface HeartbeatSeam {
  ping(): void;
  terminate(): void;
  /** True while we are not reading the peer on purpose (its pongs wait unread in the socket). */
  notReading?(): boolean;
}

export class Heartbeat {
  private alive = true;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly seam: HeartbeatSeam,
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  /** Call on every pong (or any frame: traffic proves life). */
  heard(): void {
    this.alive = true;
  }

  tick(): void {
    // Judged after this turn's I/O: timers run before the poll phase reads the sockets, so when
    // this process itself was stalled (a busy machine), the peer's pong may be waiting unread;
    // judging at once would cut a live peer.
    setImmediate(() => this.judge());
  }

  private judge(): void {
    if (!this.timer) return; // stopped meanwhile
    if (!this.alive && !this.seam.notReading?.()) {
      this.stop();
      this.seam.terminate();
      return;
    }
    this.alive = false;
    this.seam.ping();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
