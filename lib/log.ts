import pino from 'pino';

export type Logger = pino.Logger;

/**
 * Logs go to stderr as JSON lines, so stdout stays for what a command prints
 * (results, `--json` documents). Level from FDL_LOG_LEVEL (default info).
 */
export function createLogger(name: string, level = process.env.FDL_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { node: name } }, pino.destination({ fd: 2, sync: true }));
}

/** Crashes in promise chains are logged, never silently dropped (nact turns some into rejections). */
export function installProcessHandlers(log: Logger): void {
  process.on('unhandledRejection', (reason) => {
    log.error({ err: reason }, 'unhandled rejection');
  });
}
