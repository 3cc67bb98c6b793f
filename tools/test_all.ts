/**
 * `npm test`: every check and every test of the project, on Deno, Bun and
 * Node, with the toolchain pinned in package.json (never a global binary).
 *
 * Prints each step's own output as it runs, one summary line per runtime, and
 * finally `N passed, N failed` totalled over all of them. Exits non-zero when
 * anything failed.
 *
 * Usage: node tools/test_all.ts [--only deno|bun|node|checks]
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

const ELYSIA = "examples/elysia.ts";

/** Every `.ts` file of the project, outside node_modules, dist/ and dot dirs. */
function typeScriptFiles(dir = root): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (["node_modules", "dist"].includes(entry.name)) continue;
    if (entry.name.startsWith(".")) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...typeScriptFiles(path));
    else if (entry.name.endsWith(".ts")) files.push(relative(root, path));
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
    // Elysia's types bring Bun's globals (bun-types), which clash with the
    // web types the rest is checked against: it is checked on its own.
    [DENO, ["check", ...typeScriptFiles().filter((f) => f !== ELYSIA)]],
    [DENO, ["check", ELYSIA]],
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
    // docs/API.md is generated from the JSDoc and must be up to date.
    [NODE, ["tools/api_docs.ts", "--check"]],
    // What npm users get: compiled JS and .d.ts, importable by package name
    // (import and require), type-checked as four kinds of project use it.
    [NODE, ["tools/build_npm.ts"]],
    [NODE, ["tools/check_npm_package.ts"]],
    [NODE, ["tools/check_types.ts"]],
    // Every install route the README gives, from an empty project, and
    // `npm publish --dry-run`.
    [NODE, ["tools/check_install.ts"]],
    // Every example's "Run:" line, as printed, on the runtime it names.
    [NODE, ["tools/check_examples.ts"]],
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

async function deno(): Promise<RuntimeTally> {
  const tally: RuntimeTally = {
    name: "deno",
    version: (await version(DENO, ["--version"])).replace(/ \(.*/, ""),
    passed: 0,
    failed: 0,
  };
  // What a Deno user types at the root (test files found by Deno itself).
  const { code, output } = await run(DENO, ["test", "-A", "--parallel"]);
  add(tally, denoCounts(code, output));
  // --doc type-checks and runs every `@example` in the module files.
  const doc = await run(DENO, [
    "test",
    "-A",
    "--doc",
    "mod.ts",
    "sse.ts",
    "client.ts",
    "channel.ts",
    "redis.ts",
  ]);
  add(tally, denoCounts(doc.code, doc.output));
  if (existsSync(join(root, CONFORMANCE))) {
    const c = await run(DENO, ["run", "-A", CONFORMANCE]);
    add(tally, conformanceCounts(c.code, c.output));
  }
  return tally;
}

async function bun(): Promise<RuntimeTally> {
  const tally: RuntimeTally = {
    name: "bun",
    version: await version(BUN, ["--version"]),
    passed: 0,
    failed: 0,
  };
  // What a Bun user types at the root (test files found by Bun itself).
  const { code, output } = await run(BUN, ["test", "--timeout", "60000"]);
  add(tally, bunCounts(code, output));
  if (existsSync(join(root, CONFORMANCE))) {
    const c = await run(BUN, ["run", CONFORMANCE]);
    add(tally, conformanceCounts(c.code, c.output));
  }
  return tally;
}

async function node(): Promise<RuntimeTally> {
  const tally: RuntimeTally = {
    name: "node",
    version: await version(NODE, ["--version"]),
    passed: 0,
    failed: 0,
  };
  // What a Node user types at the root: the examples import the package by
  // name, which resolves to dist/ (built by `prepare` on npm ci): build it
  // from the current sources first.
  const build = await run(NODE, ["tools/build_npm.ts"]);
  if (build.code !== 0) add(tally, { passed: 0, failed: 1 });
  const { code, output } = await run(NODE, ["--test"]);
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
      `tools/test_all.ts must run on the project's Node 24 (node_modules/.bin/node), not ${process.version}.`,
    );
    return 1;
  }
  const only = process.argv.includes("--only")
    ? process.argv[process.argv.indexOf("--only") + 1]
    : undefined;
  const tallies: RuntimeTally[] = [];
  if (!only || only === "checks") tallies.push(await checks());
  if (!only || only === "deno") tallies.push(await deno());
  if (!only || only === "bun") tallies.push(await bun());
  if (!only || only === "node") tallies.push(await node());

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
