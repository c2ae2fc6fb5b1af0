// Why: docs/TUTORIAL.md is a newcomer's first contact, and a tutorial whose commands no longer
// work is worse than none. This test runs it: every fenced block marked `sh tutorial`, in the
// file's order, in a temporary folder, as a newcomer pasting them would. A foreground block runs
// to its end in the folder where the previous one left off (`cd` carries over, as in one
// terminal) and must exit 0; a block marked `background` is a node in a terminal of its own,
// started in its own process group and awaited until its output shows `ready="..."`; at the end
// they get SIGINT (Ctrl-C), workers first. `expect="..."` on a block is a pattern its output must
// show. The only changes made to the text: the port 1456 becomes a free one (other tests run on
// this machine), and FDL_HOME (step 0: the fdl checkout) is this repository.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../lib/paths.ts';
import { freePort } from '../../lib/sim/cluster.ts';
import { PROCESS_FILE_TIMEOUT_MS, WAIT_MS, within } from '../helpers/cluster.ts';

// Starts node processes: a longer tap timeout for npm run test:slow (see PROCESS_FILE_TIMEOUT_MS).
t.setTimeout(PROCESS_FILE_TIMEOUT_MS);

const TUTORIAL = join(PACKAGE_ROOT, 'docs', 'TUTORIAL.md');
/** A safety bound on one foreground block (npm install, a FedAvg run), not an assertion. */
const BLOCK_TIMEOUT_MS = 300_000;

interface Block {
  /** The line of its opening fence in TUTORIAL.md (1-based). */
  line: number;
  code: string;
  background: boolean;
  ready?: RegExp;
  expect?: RegExp;
}

/** The runnable blocks: fences whose info string is `sh tutorial [background] [ready="..."] [expect="..."]`. */
function tutorialBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  const fence = /^```([^\n]*)\n([\s\S]*?)^```[ \t]*$/gm;
  for (let m = fence.exec(markdown); m; m = fence.exec(markdown)) {
    const info = m[1] ?? '';
    const words = info.trim().split(/\s+/);
    if (words[0] !== 'sh' || words[1] !== 'tutorial') continue;
    const attr = (name: string) => {
      const a = info.match(new RegExp(`${name}="([^"]*)"`));
      return a?.[1] === undefined ? undefined : new RegExp(a[1]);
    };
    const ready = attr('ready');
    const expect = attr('expect');
    blocks.push({
      line: markdown.slice(0, m.index).split('\n').length,
      code: m[2] ?? '',
      background: words.includes('background'),
      ...(ready ? { ready } : {}),
      ...(expect ? { expect } : {}),
    });
  }
  return blocks;
}

/** The environment of a newcomer's shell: none of this test run's fdl or npm settings, and FDL_HOME. */
function newcomerEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('FDL_') || k.startsWith('npm_') || k.startsWith('TAP')) continue;
    env[k] = v;
  }
  return { ...env, FDL_HOME: PACKAGE_ROOT };
}

interface Running {
  block: Block;
  child: ChildProcess;
  output: () => string;
  ended: Promise<number | null>;
}

/** Runs a block with bash (errexit, pipefail) in `cwd`; the child leads its own process group. */
function run(block: Block, code: string, cwd: string, env: NodeJS.ProcessEnv): Running {
  const child = spawn('bash', ['-e', '-o', 'pipefail', '-c', code], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout?.on('data', (b: Buffer) => {
    out += b.toString();
    child.emit('output');
  });
  child.stderr?.on('data', (b: Buffer) => {
    out += b.toString();
    child.emit('output');
  });
  const ended = new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  return { block, child, output: () => out, ended };
}

const describe = (b: Block, out: string) => `the block at docs/TUTORIAL.md:${b.line}\n${b.code}--- its output:\n${out.slice(-4000)}`;

const markdown = readFileSync(TUTORIAL, 'utf8');
const blocks = tutorialBlocks(markdown);

t.test('TUTORIAL.md has runnable blocks: the nodes in the background, the commands after them', async (t) => {
  t.ok(blocks.length >= 10, `${blocks.length} runnable blocks`);
  t.equal(blocks.filter((b) => b.background).length, 3, 'a scheduler and two workers');
  t.ok(
    blocks.filter((b) => b.background).every((b) => b.ready),
    'each background block says what shows it is ready',
  );
});

t.test('every runnable block of TUTORIAL.md runs, in order, as a newcomer pastes it', async (t) => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'fdl-tutorial-test-'));
  const state = mkdtempSync(join(tmpdir(), 'fdl-tutorial-state-'));
  const cwdFile = join(state, 'cwd');
  const env = newcomerEnv();
  const background: Running[] = [];
  t.teardown(async () => {
    for (const b of background.reverse()) {
      if (b.child.exitCode !== null || b.child.signalCode !== null) continue;
      try {
        process.kill(-(b.child.pid as number), 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    if (!process.env.FDL_KEEP_TEST_DIRS) rmSync(dir, { recursive: true, force: true });
    rmSync(state, { recursive: true, force: true });
  });
  t.comment(`tutorial folder: ${dir} (port ${port})`);
  let cwd = dir;
  for (const block of blocks) {
    const code = block.code.replaceAll('1456', String(port));
    if (block.background) {
      const r = run(block, code, cwd, env);
      background.push(r);
      const ready = block.ready as RegExp;
      await within(
        new Promise<void>((resolve, reject) => {
          const check = () => {
            if (ready.test(r.output())) {
              r.child.off('output', check);
              resolve();
            }
          };
          r.child.on('output', check);
          check();
          void r.ended.then((c) => reject(new Error(`it ended (exit ${c}) before printing ${ready}: ${describe(block, r.output())}`)));
        }),
        { what: `${ready} from ${describe(block, r.output())}` },
      );
      t.pass(`docs/TUTORIAL.md:${block.line} runs in the background: ${ready}`);
      continue;
    }
    const r = run(block, `${code}\npwd > '${cwdFile}'\n`, cwd, env);
    const exit = await within(r.ended, { what: `the end of ${describe(block, r.output())}`, timeoutMs: BLOCK_TIMEOUT_MS }).catch((e: Error) => {
      process.kill(-(r.child.pid as number), 'SIGKILL');
      throw e;
    });
    if (exit !== 0) {
      t.fail(`docs/TUTORIAL.md:${block.line} exited ${exit}: ${describe(block, r.output())}`);
      return;
    }
    if (block.expect) t.match(r.output(), block.expect, `docs/TUTORIAL.md:${block.line} prints ${block.expect}`);
    else t.pass(`docs/TUTORIAL.md:${block.line} exits 0`);
    cwd = readFileSync(cwdFile, 'utf8').trim();
  }
  // Step 9: Ctrl-C in each node's terminal, workers first.
  for (const b of [...background].reverse()) {
    process.kill(-(b.child.pid as number), 'SIGINT');
    const code = await within(b.ended, { what: `the node of docs/TUTORIAL.md:${b.block.line} to stop on Ctrl-C`, timeoutMs: WAIT_MS });
    t.pass(`docs/TUTORIAL.md:${b.block.line} stopped on Ctrl-C (exit ${code})`);
  }
});
