/**
 * Runs the `Deno.bench` files on Bun and Node: when `Deno` is absent this
 * module installs a `Deno.bench`-compatible shim that collects the benches
 * and, once the importing file has finished loading, measures them with
 * mitata and prints them the way `deno bench` does (a table, or with `--json`
 * the same JSON document as `deno bench --json`).
 *
 * Bench files import it first: `import { benchOptions } from "./_adapter.ts";`
 *
 * @module
 */

import process from "node:process";
import { measure } from "mitata";

/** Whether this run is a short smoke run (`SSEKIT_BENCH_QUICK=1`). */
export const quick: boolean = process.env.SSEKIT_BENCH_QUICK === "1";

/**
 * Whether bench files should register each group's benches in reverse order
 * (`SSEKIT_BENCH_REVERSE=1`; `run.ts` alternates passes).
 */
export const reverse: boolean = process.env.SSEKIT_BENCH_REVERSE === "1";

/**
 * Whether this process runs the benches of `group`: all of them, unless
 * `SSEKIT_BENCH_GROUP` names one (`run.ts` gives each case a process of its
 * own).
 */
export function selected(group: string): boolean {
  const only = process.env.SSEKIT_BENCH_GROUP;
  return !only || group === only;
}

/**
 * Whether this process runs the bench called `name`: all of them, unless
 * `SSEKIT_BENCH_NAME` names one, to time a bench alone in a fresh process, on
 * no type feedback or heap that another left (`run.ts` does not set it).
 */
export function selectedName(name: string): boolean {
  const only = process.env.SSEKIT_BENCH_NAME;
  return !only || name === only;
}

/**
 * Per-bench options: a fixed small iteration count in quick runs, the
 * runtime's adaptive default otherwise.
 */
export function benchOptions(): { n?: number; warmup?: number } {
  return quick ? { n: 30, warmup: 10 } : {};
}

/** What the bench files pass to {@linkcode benchGroup}. */
export interface GroupBench {
  name: string;
  group: string;
  baseline?: boolean;
  fn: () => void | Promise<void>;
}

/**
 * How many rounds each bench gets when `run.ts` times it
 * (`SSEKIT_BENCH_ROUNDS`; 1, a single adaptive run, otherwise and in quick
 * runs).
 */
export const rounds: number = quick
  ? 1
  : Math.max(1, Math.floor(Number(process.env.SSEKIT_BENCH_ROUNDS ?? 1)) || 1);

/**
 * The least time one round of a bench lasts: its count of calls is this over
 * its fastest call.
 */
const ROUND_MS = 60;

/**
 * The time one call of `fn` takes at best, in ms: after 20 ms of calls that
 * warm it up, the fastest call in the next 20 ms (at least three calls). Not
 * a mean: one garbage collection in those 20 ms would then read as the call's
 * time and shrink every round of the bench to a few calls, whose mean swings
 * with each collection (see DEVELOPERS.md).
 */
async function callTime(fn: () => void | Promise<void>): Promise<number> {
  const warm = performance.now();
  do await fn(); while (performance.now() - warm < 20);
  let fastest = Infinity;
  let calls = 0;
  const start = performance.now();
  while (calls < 3 || performance.now() - start < 20) {
    const before = performance.now();
    await fn();
    fastest = Math.min(fastest, performance.now() - before);
    calls++;
  }
  return fastest;
}

/**
 * Registers one group's benches with `Deno.bench`: those
 * {@linkcode selectedName} chooses, in reverse order when
 * {@linkcode reverse}. With {@linkcode rounds} above 1 each bench is
 * registered that many times, the benches taking turns (each round in the
 * order opposite to the one before), every round a fixed count of calls
 * lasting at least {@linkcode ROUND_MS}: so all of them sample the same moments
 * of a machine whose speed changes from second to second.
 */
export async function benchGroup(benches: GroupBench[]): Promise<void> {
  const chosen = benches.filter((bench) => selectedName(bench.name));
  const ordered = reverse ? chosen.reverse() : chosen;
  if (rounds === 1) {
    for (const bench of ordered) Deno.bench({ ...benchOptions(), ...bench });
    return;
  }
  const calls = new Map<GroupBench, number>();
  for (const bench of ordered) {
    const ms = await callTime(bench.fn);
    calls.set(bench, Math.max(3, Math.ceil(ROUND_MS / ms)));
  }
  for (let round = 0; round < rounds; round++) {
    const turn = round % 2 === 0 ? ordered : [...ordered].reverse();
    for (const bench of turn) {
      // `deno bench --json` keeps one result per name: each round names
      // itself (run.ts reads the name before " [round").
      Deno.bench({
        ...bench,
        name: `${bench.name} [round ${round + 1}]`,
        n: calls.get(bench)!,
        warmup: 1,
      });
    }
  }
}

/** The name of the runtime running the benches. */
export const runtime: "deno" | "bun" | "node" = "Deno" in globalThis
  ? "deno"
  : "Bun" in globalThis
  ? "bun"
  : "node";

interface Definition {
  name: string;
  fn: () => unknown;
  group?: string;
  baseline?: boolean;
  ignore?: boolean;
  n?: number;
  warmup?: number;
}

/** One result in the shape of `deno bench --json`. */
interface BenchResult {
  origin: string;
  group: string | null;
  name: string;
  baseline: boolean;
  results: (
    | {
      ok: {
        n: number;
        min: number;
        max: number;
        avg: number;
        p75: number;
        p99: number;
      };
    }
    | { failed: string }
  )[];
}

const pending: Definition[] = [];
let scheduled = false;

function register(
  nameOrDef: string | Definition,
  maybeFn?: () => unknown,
): void {
  const def = typeof nameOrDef === "string"
    ? { name: nameOrDef, fn: maybeFn ?? (() => {}) }
    : nameOrDef;
  if (def.ignore) return;
  pending.push(def);
  if (!scheduled) {
    scheduled = true;
    // Runs after the importing module (and its top-level await) finished.
    setTimeout(() => void runAll(), 0);
  }
}

async function runOne(def: Definition): Promise<BenchResult> {
  const result: BenchResult = {
    origin: process.argv[1] ?? "",
    group: def.group ?? null,
    name: def.name,
    baseline: def.baseline ?? false,
    results: [],
  };
  try {
    const stats = await measure(
      def.fn,
      def.n === undefined ? { min_cpu_time: 500 * 1e6, min_samples: 10 } : {
        min_samples: def.n,
        max_samples: def.n,
        min_cpu_time: 0,
        warmup_samples: def.warmup ?? 1,
      },
    );
    result.results.push({
      ok: {
        n: stats.samples.length,
        min: stats.min,
        max: stats.max,
        avg: stats.avg,
        p75: stats.p75,
        p99: stats.p99,
      },
    });
  } catch (error) {
    result.results.push({
      failed: error instanceof Error
        ? error.stack ?? error.message
        : String(error),
    });
  }
  return result;
}

function formatTime(ns: number): string {
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(2)} s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${ns.toFixed(0)} ns`;
}

async function runAll(): Promise<void> {
  const json = process.argv.includes("--json");
  const benches: BenchResult[] = [];
  let group: string | null | undefined;
  let failed = 0;
  for (const def of pending) {
    const result = await runOne(def);
    benches.push(result);
    if (json) continue;
    if (result.group !== group) {
      group = result.group;
      console.log(`\ngroup ${group ?? ""}`);
    }
    const r = result.results[0];
    if (r && "ok" in r) {
      console.log(
        `  ${def.name.padEnd(36)} ${formatTime(r.ok.avg).padStart(12)}/iter${
          def.baseline ? "  (baseline)" : ""
        }`,
      );
    } else {
      failed++;
      console.log(
        `  ${def.name.padEnd(36)} FAILED\n${
          r && "failed" in r ? r.failed : ""
        }`,
      );
    }
  }
  if (json) {
    const version = "Bun" in globalThis
      ? `Bun/${process.versions.bun}`
      : `Node/${process.version}`;
    console.log(
      JSON.stringify({ version: 1, runtime: version, benches }, null, 2),
    );
  }
  if (failed) process.exitCode = 1;
}

if (!("Deno" in globalThis)) {
  (globalThis as { Deno?: unknown }).Deno = { bench: register };
}
