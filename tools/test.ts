/**
 * `npm test`: every check and every test of the project, on Deno, Bun and
 * Node, with the toolchain pinned in package.json (never a global binary).
 *
 * Prints each step's own output as it runs, one summary line per runtime, and
 * finally `N passed, N failed` totalled over all of them. Exits non-zero when
 * anything failed.
 *
 * Usage: node tools/test.ts [--only deno|bun|node|checks]
 *
 * @module
 */

import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = (name: string): string => join(root, "node_modules", ".bin", name);

const DENO = bin("deno");
const BUN = bin("bun");
const NODE = bin("node");

interface StepResult {
  passed: number;
  failed: number;
}

interface RuntimeTally extends StepResult {
  name: string;
  version: string;
}

/** Runs a command, echoing its output, and returns the exit code and text. */
function run(
  command: string,
  args: string[],
): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    process.stdout.write(`\n$ ${relative(root, command)} ${args.join(" ")}\n`);
    const child = spawn(command, args, {
      cwd: root,
      env: { ...process.env, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const echo = (chunk: Buffer) => {
      output += chunk.toString();
      process.stdout.write(chunk);
    };
    child.stdout.on("data", echo);
    child.stderr.on("data", echo);
    child.on("close", (code, signal) => {
      resolve({ code: code ?? (signal ? 128 : 1), output });
    });
  });
}

async function version(command: string, args: string[]): Promise<string> {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "ignore"] });
  let text = "";
  child.stdout.on("data", (chunk: Buffer) => (text += chunk.toString()));
  await new Promise((resolve) => child.on("close", resolve));
  return text.trim().split("\n")[0] ?? "";
}

/** Test files: every `*_test.ts` outside node_modules. */
function testFiles(dir = root): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === "node_modules" || entry.name.startsWith(".")) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...testFiles(path));
    else if (entry.name.endsWith("_test.ts")) files.push(relative(root, path));
  }
  return files.sort();
}

function lastMatch(text: string, pattern: RegExp): RegExpMatchArray | null {
  let found: RegExpMatchArray | null = null;
  for (const match of text.matchAll(pattern)) found = match;
  return found;
}

/** A run that exited non-zero counts at least one failure, even if it crashed before printing counts. */
function settle(code: number, passed: number, failed: number): StepResult {
  return { passed, failed: code !== 0 && failed === 0 ? 1 : failed };
}

function denoCounts(code: number, output: string): StepResult {
  // "ok | 12 passed (30 steps) | 0 failed (1 step)"
  const m = lastMatch(
    output,
    /(\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \((\d+) steps?\))?/g,
  );
  const passed = m ? Number(m[1]) + Number(m[2] ?? 0) : 0;
  const failed = m ? Number(m[3]) + Number(m[4] ?? 0) : 0;
  return settle(code, passed, failed);
}

function bunCounts(code: number, output: string): StepResult {
  const pass = lastMatch(output, /^\s*(\d+) pass$/gm);
  const fail = lastMatch(output, /^\s*(\d+) fail$/gm);
  return settle(code, Number(pass?.[1] ?? 0), Number(fail?.[1] ?? 0));
}

function nodeCounts(code: number, output: string): StepResult {
  const pass = lastMatch(output, /^(?:ℹ|#) pass (\d+)$/gm);
  const fail = lastMatch(output, /^(?:ℹ|#) fail (\d+)$/gm);
  return settle(code, Number(pass?.[1] ?? 0), Number(fail?.[1] ?? 0));
}

/** The conformance runner prints "conformance …: N passed, N failed". */
function conformanceCounts(code: number, output: string): StepResult {
  const m = lastMatch(output, /^conformance.*?(\d+) passed, (\d+) failed/gm);
  return settle(code, Number(m?.[1] ?? 0), Number(m?.[2] ?? 0));
}

function add(tally: StepResult, step: StepResult): void {
  tally.passed += step.passed;
  tally.failed += step.failed;
}

async function checks(): Promise<RuntimeTally> {
  const tally: RuntimeTally = {
    name: "deno checks",
    version: (await version(DENO, ["--version"])).replace(/ \(.*/, ""),
    passed: 0,
    failed: 0,
  };
  const steps: [string, string[]][] = [
    [DENO, ["fmt", "--check"]],
    [DENO, ["lint"]],
    [DENO, ["check", "."]],
    [DENO, [
      "doc",
      "--lint",
      "mod.ts",
      "sse.ts",
      "client.ts",
      "channel.ts",
      "redis.ts",
    ]],
    [DENO, ["publish", "--dry-run", "--allow-dirty"]],
    // What npm users get: compiled JS and .d.ts, importable by package name.
    [bin("tsc"), ["-p", "tools/tsconfig.npm.json"]],
    [NODE, ["tools/check_npm_package.ts"]],
  ];
  for (const [command, args] of steps) {
    const { code } = await run(command, args);
    add(
      tally,
      code === 0 ? { passed: 1, failed: 0 } : { passed: 0, failed: 1 },
    );
  }
  return tally;
}

const CONFORMANCE = "conformance/run.ts";

async function deno(files: string[]): Promise<RuntimeTally> {
  const tally: RuntimeTally = {
    name: "deno",
    version: (await version(DENO, ["--version"])).replace(/ \(.*/, ""),
    passed: 0,
    failed: 0,
  };
  // --doc type-checks and runs every `@example` in the module files too.
  const { code, output } = await run(DENO, [
    "test",
    "-A",
    "--doc",
    "--parallel",
    ...files,
    "mod.ts",
    "sse.ts",
    "client.ts",
    "channel.ts",
    "redis.ts",
  ]);
  add(tally, denoCounts(code, output));
  if (existsSync(join(root, CONFORMANCE))) {
    const c = await run(DENO, ["run", "-A", CONFORMANCE]);
    add(tally, conformanceCounts(c.code, c.output));
  }
  return tally;
}

async function bun(files: string[]): Promise<RuntimeTally> {
  const tally: RuntimeTally = {
    name: "bun",
    version: await version(BUN, ["--version"]),
    passed: 0,
    failed: 0,
  };
  const { code, output } = await run(BUN, [
    "test",
    "--timeout",
    "60000",
    ...files.map((f) => `./${f}`),
  ]);
  add(tally, bunCounts(code, output));
  if (existsSync(join(root, CONFORMANCE))) {
    const c = await run(BUN, ["run", CONFORMANCE]);
    add(tally, conformanceCounts(c.code, c.output));
  }
  return tally;
}

async function node(files: string[]): Promise<RuntimeTally> {
  const tally: RuntimeTally = {
    name: "node",
    version: await version(NODE, ["--version"]),
    passed: 0,
    failed: 0,
  };
  // The examples import the package by name; this condition resolves it to
  // the TypeScript sources instead of the compiled dist/.
  const { code, output } = await run(NODE, [
    "--conditions=ssekit-source",
    "--test",
    ...files,
  ]);
  add(tally, nodeCounts(code, output));
  if (existsSync(join(root, CONFORMANCE))) {
    const c = await run(NODE, ["--conditions=ssekit-source", CONFORMANCE]);
    add(tally, conformanceCounts(c.code, c.output));
  }
  return tally;
}

async function main(): Promise<number> {
  if (!process.version.startsWith("v24.")) {
    console.error(
      `tools/test.ts must run on the project's Node 24 (node_modules/.bin/node), not ${process.version}.`,
    );
    return 1;
  }
  const only = process.argv.includes("--only")
    ? process.argv[process.argv.indexOf("--only") + 1]
    : undefined;
  const files = testFiles();
  const tallies: RuntimeTally[] = [];
  if (!only || only === "checks") tallies.push(await checks());
  if (!only || only === "deno") tallies.push(await deno(files));
  if (!only || only === "bun") tallies.push(await bun(files));
  if (!only || only === "node") tallies.push(await node(files));

  console.log("\nSummary");
  for (const t of tallies) {
    console.log(
      `${t.name} (${t.version}): ${t.passed} passed, ${t.failed} failed`,
    );
  }
  const passed = tallies.reduce((n, t) => n + t.passed, 0);
  const failed = tallies.reduce((n, t) => n + t.failed, 0);
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

process.exit(await main());
