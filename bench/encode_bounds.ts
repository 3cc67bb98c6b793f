/**
 * Where the encode function's time goes, against the floor of
 * `encode_bench.ts` (`TextEncoder` over the pre-formatted strings): the same
 * cases through three encoders, each run alternated with the floor in one
 * process, best of many rounds.
 *
 * - `bare`: one template literal per message, no checks at all;
 * - `minimal`: bare plus the one check no injection-proof encoder can skip,
 *   the line-break scan of `data`;
 * - `encodeServerSentEvent`.
 *
 * It prints each as a multiple of the floor, with and without the
 * `TextEncoder.encode` call (the latter in ns per message). Not a target: it
 * shows what a target can ask for (see DEVELOPERS.md, "Benchmarks").
 *
 * Run: `deno run -A bench/encode_bounds.ts`, `bun bench/encode_bounds.ts`,
 * `node bench/encode_bounds.ts` (`ROUNDS=n` to change the 100 rounds).
 *
 * @module
 */

import process from "node:process";
import { type EncodeCase, encodeCases } from "./_cases.ts";
import { encodeServerSentEvent } from "../sse.ts";

type Message = EncodeCase["messages"][number];

function bare(m: Message): string {
  return m.event !== undefined
    ? `event:${m.event}\nid:${m.id}\ndata:${m.data}\n\n`
    : `data:${m.data}\n\n`;
}

function minimal(m: Message): string {
  if (m.data.indexOf("\n") !== -1 || m.data.indexOf("\r") !== -1) {
    throw new TypeError("line break in data");
  }
  return bare(m);
}

const encoders: [string, (m: Message) => string][] = [
  ["bare", bare],
  ["minimal", minimal],
  ["encodeServerSentEvent", encodeServerSentEvent],
];
const encoder = new TextEncoder();
const rounds = Number(process.env.ROUNDS ?? 100);

function time(run: () => number): number {
  const start = performance.now();
  if (run() < 0) throw new Error("unreachable");
  return performance.now() - start;
}

for (const c of encodeCases()) {
  const best = new Map<string, number>();
  const keep = (name: string, ms: number) =>
    best.set(name, Math.min(best.get(name) ?? Infinity, ms));
  for (let round = 0; round < rounds; round++) {
    keep(
      "floor",
      time(() => {
        let bytes = 0;
        for (const text of c.formatted) bytes += encoder.encode(text).length;
        return bytes;
      }),
    );
    const order = round % 2 ? [...encoders].reverse() : encoders;
    for (const [name, encode] of order) {
      keep(
        name,
        time(() => {
          let bytes = 0;
          for (const m of c.messages) bytes += encoder.encode(encode(m)).length;
          return bytes;
        }),
      );
      keep(
        `${name} (string only)`,
        time(() => {
          let length = 0;
          for (const m of c.messages) length += encode(m).length;
          return length;
        }),
      );
    }
  }
  const floor = best.get("floor")!;
  const ns = (ms: number) => (ms * 1e6 / c.messages.length).toFixed(0);
  console.log(`${c.group}: floor ${ns(floor)} ns per message`);
  for (const [name] of encoders) {
    const total = best.get(name)!;
    const alone = best.get(`${name} (string only)`)!;
    console.log(
      `  ${name.padEnd(22)} ${(total / floor).toFixed(2)}× the floor` +
        `  (building the string alone: ${ns(alone)} ns)`,
    );
  }
}
