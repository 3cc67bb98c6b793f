/**
 * What the CR search costs a parser, against the floor of `parse_bench.ts`
 * (a streaming `TextDecoder` pass plus a newline scan): CR ends lines too, so
 * a spec-exact parser searches every text for it. Per parse case, best of
 * many rounds in one process:
 *
 * - `floor`: `parseFloor`, decode and find every LF, as `parse_bench.ts` times it;
 * - `CR in the text`: one `indexOf("\r")` over each decoded text;
 * - `CR in the bytes`: one `indexOf(13)` over each chunk.
 *
 * It prints µs per MiB of stream and each search as a share of the floor.
 * Not a target: it shows what the LLM parse target can ask for (see
 * DEVELOPERS.md, "Benchmarks").
 *
 * Run: `deno run -A bench/parse_bounds.ts`, `bun bench/parse_bounds.ts`,
 * `node bench/parse_bounds.ts` (`ROUNDS=n` to change the 100 rounds).
 *
 * @module
 */

import process from "node:process";
import { parseCases, parseFloor } from "./_cases.ts";

const rounds = Number(process.env.ROUNDS ?? 100);

/** Runs `fn` once and returns the milliseconds it took. */
function time(fn: () => number): number {
  const start = performance.now();
  if (fn() < 0) throw new Error("unreachable");
  return performance.now() - start;
}

for (const c of parseCases()) {
  const decoder = new TextDecoder();
  const texts = c.chunks.map((chunk) =>
    decoder.decode(chunk, { stream: true })
  );
  const searches: [string, () => number][] = [
    ["floor", () => parseFloor(c).lines],
    ["CR in the text", () => {
      let found = 0;
      for (const text of texts) if (text.indexOf("\r") !== -1) found++;
      return found;
    }],
    ["CR in the bytes", () => {
      let found = 0;
      for (const chunk of c.chunks) if (chunk.indexOf(13) !== -1) found++;
      return found;
    }],
  ];
  const best = new Map<string, number>();
  for (let round = 0; round < rounds; round++) {
    for (const [name, fn] of round % 2 ? [...searches].reverse() : searches) {
      best.set(name, Math.min(best.get(name) ?? Infinity, time(fn)));
    }
  }
  const mib = c.bytes.length / 1024 / 1024;
  const floor = best.get("floor")!;
  const perMiB = (ms: number) => `${(ms * 1000 / mib).toFixed(0)} µs/MiB`;
  console.log(`${c.group}: floor ${perMiB(floor)}`);
  for (const [name] of searches.slice(1)) {
    const ms = best.get(name)!;
    console.log(
      `  ${name.padEnd(16)} ${perMiB(ms).padStart(12)}  ${
        (ms / floor).toFixed(2)
      } of the floor`,
    );
  }
}
