/**
 * The interop matrix on the runtime running this file (see `matrix.ts`):
 * one test per pair. The first test runs every pair at once (about
 * 8 s: each conversation waits `retry: 6000` for a reconnection), writes
 * `results/on-<runtime>.json` and re-renders `RESULTS.md`.
 *
 * @module
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { runMatrix } from "./matrix.ts";
import { failures, type Results, writeResults } from "./report.ts";
import { runtime } from "./serve.ts";

let matrix: Promise<Results> | undefined;
function results(): Promise<Results> {
  matrix ??= runMatrix().then(async (results) => {
    await writeResults(`on-${runtime}`, results);
    return results;
  });
  return matrix;
}

/** The pairs `runMatrix` runs (a missing one fails its test). */
const PAIRS = [
  "ssekit EventEndpoint → Deno EventSource",
  "ssekit EventEndpoint → npm eventsource",
  "ssekit EventEndpoint → Node undici EventSource",
  ...[
    "ssekit EventEndpoint",
    "Hono streamSSE",
    "better-sse",
    "@ayonli/jsext EventEndpoint",
    "plain node:http",
  ]
    .flatMap((server) => [
      `${server} → ssekit EventSource`,
      `${server} → ssekit EventConsumer`,
    ]),
];

describe(`interop matrix (servers on ${runtime})`, () => {
  for (const pair of PAIRS) {
    test(pair, { timeout: 60_000 }, async () => {
      const { host, rows } = await results();
      const row = rows.find((row) => row.pair === pair);
      assert.ok(row, `no row ${JSON.stringify(pair)} in the results`);
      assert.deepEqual(failures({ host, rows: [row] }), []);
    });
  }
});
