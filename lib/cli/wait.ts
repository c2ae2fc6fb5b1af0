/**
 * Waiting on a scheduler that may go away: `fdl submit --wait` follows its artifact across a
 * scheduler restart (the workbench reconnects, follows it again and catches up), and gives up
 * with a clear error, never a silent success, when the scheduler stays away too long.
 */

/** How long a waiting command gives a lost scheduler to come back (`--timeout`). */
export const DEFAULT_RECONNECT_TIMEOUT_S = 120;

/** An outcome the command cannot state: exit non-zero with the message. */
export class OutcomeUnknownError extends Error {}

/** Parses `--timeout SECONDS` (a positive number). */
export function parseTimeoutSeconds(text: string): number {
  const s = Number(text);
  if (!Number.isFinite(s) || s <= 0) throw new OutcomeUnknownError(`--timeout wants a number of seconds above 0, not ${JSON.stringify(text)}`);
  return s;
}

/**
 * Arms a timer while the scheduler is away (`change(false)`), disarms it when it is back
 * (`change(true)`). `lost` rejects when the timer fires; race the waits against it. The armed
 * timer also keeps the process alive, so a lost connection cannot end the command quietly.
 */
export class AbsenceWatch {
  readonly lost: Promise<never>;
  private fire!: (e: Error) => void;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly timeoutMs: number,
    private readonly message: () => string,
  ) {
    this.lost = new Promise<never>((_, reject) => {
      this.fire = reject;
    });
    this.lost.catch(() => {});
  }

  readonly change = (connected: boolean): void => {
    if (this.stopped) return;
    if (connected) {
      clearTimeout(this.timer);
      this.timer = undefined;
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.fire(new OutcomeUnknownError(this.message())), this.timeoutMs);
    }
  };

  /** `p`, unless the scheduler stays away longer than the bound first. */
  race<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.lost]);
  }

  /** The command is done: no later change arms the timer again. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
