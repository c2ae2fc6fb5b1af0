import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { DASHBOARD_DIR } from '../../lib/dashboard/serve.ts';

/**
 * Debian's Chromium driven by playwright-core (Playwright's own browser download cannot work
 * here): `apt-get install -y chromium`, which `.ci/run` does when it is missing.
 */
export const CHROMIUM = process.env.FDL_CHROMIUM ?? '/usr/bin/chromium';

// Without the networking flags Chromium floods the closed network with refused connections.
const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** Fails, saying what to do, when Chromium or the dashboard bundle is missing: never a silent skip. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is missing at ${CHROMIUM}: install it with \`apt-get install -y chromium\` (.ci/run does), or set FDL_CHROMIUM to a Chromium binary`);
  }
  if (!existsSync(join(DASHBOARD_DIR, 'index.html'))) {
    throw new Error(`the dashboard is not built (${DASHBOARD_DIR}): run \`npm run build:dashboard\` (npm ci does, through prepare)`);
  }
  // Playwright gives each launch a fresh, empty profile folder of its own.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
}

export { dashboardUrl } from '../../lib/dashboard/serve.ts';

/** Opens the dashboard, enters the token and waits until the session is live. */
export async function signIn(page: Page, url: string, token: string): Promise<void> {
  await page.goto(url);
  await page.fill('#token', token);
  await page.click('#connect');
  await page.waitForSelector('#connection:has-text("live")');
}
