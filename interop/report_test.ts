import { test } from "node:test";
import assert from "node:assert/strict";
import { failures, render, type Results, sameFindings } from "./report.ts";
import { CHECKS } from "./scenario.ts";

const pass = Object.fromEntries(
  CHECKS.map((check) => [check, { result: "pass" as const }]),
);

const results: Results = {
  host: "Test 1.0",
  rows: [
    { pair: "a → b", server: "a | pipe", client: "b", cells: pass },
    {
      pair: "c → d",
      server: "c",
      client: "d",
      cells: {
        ...pass,
        "retry": { result: "fail", detail: "expected 1, got 2" },
        "multi-line": { result: "n/a", detail: "not supported" },
      },
    },
  ],
};

test("render: a row per pair, a column per check, notes for fail and n/a", () => {
  const markdown = render([["on-test", results]]);
  const lines = markdown.split("\n");
  assert.ok(lines.includes("## Servers on Test 1.0 (`results/on-test.json`)"));
  const header = lines.find((line) => line.startsWith("| server |"));
  assert.equal(header, `| server | → client | ${CHECKS.join(" | ")} |`);
  assert.ok(
    lines.includes(
      `| a \\| pipe | b | ${CHECKS.map(() => "pass").join(" | ")} |`,
    ),
  );
  const row = lines.find((line) => line.startsWith("| c | d |"));
  assert.ok(row?.includes("**FAIL** [2]"), row);
  assert.ok(row?.includes("n/a [1]"), row);
  assert.ok(lines.includes("1. not supported"));
  assert.ok(lines.includes("2. expected 1, got 2"));
});

test("failures: one line per failed cell, n/a is not a failure", () => {
  assert.deepEqual(failures(results), ["c → d: retry: expected 1, got 2"]);
});

test("sameFindings: another browser or runtime version finds the same; another cell does not", () => {
  const recorded: Results = {
    host: "Node 24.21.0 + Chromium 156.0.8078.79",
    rows: [{
      pair: "x → Chromium EventSource",
      server: "x",
      client: "Chromium 156.0.8078.79 EventSource",
      cells: pass,
    }],
  };
  const patched: Results = {
    host: "Node 24.21.0 + Chromium 156.0.8078.114",
    rows: [{
      ...recorded.rows[0]!,
      client: "Chromium 156.0.8078.114 EventSource",
    }],
  };
  assert.equal(sameFindings(recorded, patched), true);
  const failing: Results = {
    ...patched,
    rows: [{
      ...patched.rows[0]!,
      cells: { ...pass, retry: { result: "fail", detail: "x" } },
    }],
  };
  assert.equal(sameFindings(recorded, failing), false);
});
