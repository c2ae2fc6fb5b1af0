import type { RetryPolicy } from '../protocols/entities.ts';

/**
 * The wait before attempt `nextAttempt` (2 = the first retry): exponential from
 * initialIntervalMs by backoffCoefficient, capped at maxIntervalMs, with a random part of
 * `jitter` of it so that retries of many jobs do not move in lockstep.
 */
export function nextDelay(policy: RetryPolicy, nextAttempt: number, random: () => number = Math.random): number {
  const exponent = Math.max(0, nextAttempt - 2);
  const base = Math.min(policy.maxIntervalMs, policy.initialIntervalMs * policy.backoffCoefficient ** exponent);
  return Math.round(base * (1 - policy.jitter) + base * policy.jitter * random());
}
