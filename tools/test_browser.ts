/**
 * `npm run test:browser`: the checks that drive Debian's Chromium through
 * playwright-core — the interop rows for Chromium's own `EventSource`, the
 * live demo in two tabs across a server restart, and ssekit's client bundled
 * into a page (`tools/browser_client_check.ts`). Then checks that no tracked
 * file was rewritten. Ends with one line `N passed, N failed` over all, and
 * exits non-zero when anything failed.
 *
 * Usage: node tools/test_browser.ts
 *
 * @module
 */

import { spawn, spawnSync } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

interface Tally {
  passed: number;
  failed: number;
}

/** Runs a script on this Node, echoing its output, and counts its checks. */
function check(
  script: string,
  count: (output: string) => Tally,
): Promise<Tally> {
  return new Promise((resolve) => {
    console.log(`\n$ node ${script}`);
    const child = spawn(process.execPath, [script], {
      cwd: root,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk;
      process.stdout.write(chunk);
    });
    child.on("close", (code) => {
      const tally = count(output);
      // A crash before any check ran still counts as a failure.
      resolve(
        code !== 0 && tally.failed === 0 ? { ...tally, failed: 1 } : tally,
      );
    });
  });
}

/** interop/browser.ts prints one `pass`/`FAIL` line per check. */
function interopChecks(output: string): Tally {
  return {
    passed: output.match(/^\s+pass\s/gm)?.length ?? 0,
    failed: output.match(/^\s+fail\s/gim)?.length ?? 0,
  };
}

/** demo/browser_check.ts ends with its own `N passed, N failed`. */
function demoChecks(output: string): Tally {
  const match = output.match(/(\d+) passed, (\d+) failed\s*$/);
  return { passed: Number(match?.[1] ?? 0), failed: Number(match?.[2] ?? 0) };
}

/** The working tree's changes to tracked files, as a diff against HEAD. */
function trackedChanges(): string {
  const diff = spawnSync("git", ["diff", "HEAD", "--no-ext-diff", "--binary"], {
    cwd: root,
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  return diff.status === 0 ? diff.stdout : `git diff failed: ${diff.stderr}`;
}

const before = trackedChanges();
const results = [
  await check("interop/browser.ts", interopChecks),
  await check("demo/browser_check.ts", demoChecks),
  await check("tools/browser_client_check.ts", demoChecks),
];
// A browser run must not rewrite tracked files (e.g. because Chromium is
// another version than the one recorded): the tree stays as it was.
const after = trackedChanges();
const untouched = before === after;
console.log(
  untouched
    ? "\nok   the browser checks left every tracked file as it was"
    : "\nFAIL the browser checks rewrote tracked files:\n" +
      spawnSync("git", ["diff", "HEAD", "--stat"], {
        cwd: root,
        encoding: "utf8",
      })
        .stdout,
);
results.push({ passed: untouched ? 1 : 0, failed: untouched ? 0 : 1 });
const passed = results.reduce((n, r) => n + r.passed, 0);
const failed = results.reduce((n, r) => n + r.failed, 0);
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
