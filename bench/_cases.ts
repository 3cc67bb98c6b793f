/**
 * Shared fixtures for the benchmarks: the event streams the parsers read, the
 * messages the encoders write, and what each case should yield, so the bench
 * files and `run.ts` agree on bytes and event counts per iteration.
 *
 * Everything here is deterministic (no randomness) and runtime-neutral.
 *
 * @module
 */

const encoder = new TextEncoder();

/** KiB and MiB in bytes. */
export const KiB = 1024;
/** One mebibyte. */
export const MiB = 1024 * KiB;

/** A parse corpus: the bytes of an event stream, split into chunks. */
export interface ParseCase {
  /** Group name used by the bench files, e.g. `parse small 4KiB`. */
  group: string;
  /** The full stream. */
  bytes: Uint8Array<ArrayBuffer>;
  /** The stream split at `chunkSize` boundaries (not aligned to events or UTF-8). */
  chunks: Uint8Array<ArrayBuffer>[];
  /** Events a correct parser dispatches. */
  events: number;
  /** Sum of `data.length` (UTF-16 units) over all dispatched events. */
  dataLength: number;
  /** Whether every event has an `event:` field (listeners need that type). */
  eventType: string;
}

/** An encode corpus: messages and the same messages pre-formatted. */
export interface EncodeCase {
  /** Group name prefix, e.g. `encode small`. */
  group: string;
  /** The messages to encode. */
  messages: { data: string; event?: string; id?: string }[];
  /** The same messages as wire text, one string per message. */
  formatted: string[];
  /** UTF-8 bytes of all formatted messages. */
  bytes: number;
}

/** ~60 B: `id`, `event` and one short `data` line. */
export function smallEvent(i: number): string {
  return `id: ${i}\nevent: update\ndata: {"seq":${i},"v":"ok-${i % 97}"}\n\n`;
}

const WORDS = [
  " the",
  " stream",
  "ing",
  " token",
  " café",
  " of",
  " a",
  " model",
  "—",
  " reply",
  " and",
  " data",
];

/** ~100 B: one JSON `data:` line as LLM APIs stream them. */
export function tokenEvent(i: number): string {
  const word = WORDS[i % WORDS.length] ?? "";
  return `data: {"id":"chatcmpl-7","object":"chunk","choices":[{"index":0,"delta":{"content":"${word}"}}]}\n\n`;
}

/** A 64 KiB event made of 64 `data:` lines of ~1 KiB. */
export function bigEvent(i: number): string {
  const line = `${i % 10}`.repeat(1016);
  return `data: ${line}\n`.repeat(64) + "\n";
}

/** One `data:` line of `size` bytes, then the blank line. */
export function hugeLine(size: number): string {
  return `data: ${"x".repeat(size)}\n\n`;
}

/** Splits `bytes` into views of `size` bytes. */
export function chunk(
  bytes: Uint8Array<ArrayBuffer>,
  size: number,
): Uint8Array<ArrayBuffer>[] {
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  for (let i = 0; i < bytes.length; i += size) {
    chunks.push(bytes.subarray(i, i + size));
  }
  return chunks;
}

function dataOf(event: string): string {
  return event
    .split("\n")
    .filter((line) => line.startsWith("data: "))
    .map((line) => line.slice(6))
    .join("\n");
}

function corpus(
  make: (i: number) => string,
  totalBytes: number,
): { text: string; events: number; dataLength: number } {
  const parts: string[] = [];
  let bytes = 0;
  let dataLength = 0;
  for (let i = 0; bytes < totalBytes; i++) {
    const event = make(i);
    parts.push(event);
    bytes += encoder.encode(event).length;
    dataLength += dataOf(event).length;
  }
  return { text: parts.join(""), events: parts.length, dataLength };
}

/** Options that shrink the corpora for a smoke run. */
export interface FixtureOptions {
  /** Shrink every corpus about 8×. @default false */
  quick?: boolean;
}

/** The parse cases, in the order they are benchmarked. */
export function parseCases(options: FixtureOptions = {}): ParseCase[] {
  const total = options.quick ? 128 * KiB : MiB;
  const lineSize = options.quick ? MiB : 8 * MiB;
  const cases: ParseCase[] = [];
  const kinds: [string, (i: number) => string, string][] = [
    ["small", smallEvent, "update"],
    ["llm", tokenEvent, "message"],
    ["64KiB", bigEvent, "message"],
  ];
  for (const [name, make, eventType] of kinds) {
    const { text, events, dataLength } = corpus(
      make,
      name === "64KiB" ? 2 * total : total,
    );
    const bytes = encoder.encode(text);
    for (const size of [4 * KiB, 64 * KiB]) {
      cases.push({
        group: `parse ${name} ${size / KiB}KiB`,
        bytes,
        chunks: chunk(bytes, size),
        events,
        dataLength,
        eventType,
      });
    }
  }
  const line = hugeLine(lineSize);
  const bytes = encoder.encode(line);
  cases.push({
    group: `parse ${lineSize / MiB}MiB-line 1KiB`,
    bytes,
    chunks: chunk(bytes, KiB),
    events: 1,
    dataLength: lineSize,
    eventType: "message",
  });
  return cases;
}

/** The encode cases: small events and LLM tokens. */
export function encodeCases(options: FixtureOptions = {}): EncodeCase[] {
  const count = options.quick ? 1000 : 10_000;
  const small: EncodeCase["messages"] = [];
  const llm: EncodeCase["messages"] = [];
  for (let i = 0; i < count; i++) {
    small.push({
      id: String(i),
      event: "update",
      data: `{"seq":${i},"v":"ok-${i % 97}"}`,
    });
    llm.push({ data: dataOf(tokenEvent(i)) });
  }
  const cases: EncodeCase[] = [];
  for (const [group, messages] of [["small", small], ["llm", llm]] as const) {
    const formatted = messages.map(format);
    cases.push({
      group: `encode ${group}`,
      messages,
      formatted,
      bytes: formatted.reduce((n, s) => n + encoder.encode(s).length, 0),
    });
  }
  return cases;
}

/**
 * The parse floor, the runtime's own cost: one streaming `TextDecoder` pass
 * over the case's chunks and an `indexOf` per LF. `parse_bench.ts` and
 * `parse_bounds.ts` time it.
 *
 * @returns The LFs found and the characters decoded.
 */
export function parseFloor(c: ParseCase): { lines: number; chars: number } {
  const decoder = new TextDecoder();
  let lines = 0;
  let chars = 0;
  for (const chunk of c.chunks) {
    const text = decoder.decode(chunk, { stream: true });
    chars += text.length;
    for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) {
      lines++;
    }
  }
  decoder.decode();
  return { lines, chars };
}

/**
 * The canonical wire form of a message (what the floor writes), in one
 * template literal and without checks: the encode bench's "built" floor also
 * times it, as what every encoder that returns a new string pays.
 */
export function format(
  m: { data: string; event?: string; id?: string },
): string {
  return m.event !== undefined
    ? m.id !== undefined
      ? `event: ${m.event}\nid: ${m.id}\ndata: ${m.data}\n\n`
      : `event: ${m.event}\ndata: ${m.data}\n\n`
    : m.id !== undefined
    ? `id: ${m.id}\ndata: ${m.data}\n\n`
    : `data: ${m.data}\n\n`;
}

/** Bench names, their role and form; `run.ts` computes ratios from these. */
export const ROLES: Record<
  string,
  { role: "floor" | "peer" | "ssekit"; form: "function" | "stream" }
> = {
  "floor": { role: "floor", form: "function" },
  "floor (stream)": { role: "floor", form: "stream" },
  "floor (events)": { role: "floor", form: "function" },
  "floor (events, CR)": { role: "floor", form: "function" },
  "floor (spec)": { role: "floor", form: "function" },
  "floor (events, stream)": { role: "floor", form: "stream" },
  "floor (MessageEvent stream)": { role: "floor", form: "stream" },
  "eventsource-parser": { role: "peer", form: "function" },
  "eventsource-parser (stream)": { role: "peer", form: "stream" },
  "jsext EventConsumer": { role: "peer", form: "stream" },
  "ssekit ServerSentEventParser": { role: "ssekit", form: "function" },
  "ssekit ServerSentEventParserStream": { role: "ssekit", form: "stream" },
  "ssekit EventConsumer": { role: "ssekit", form: "stream" },
  "floor (built)": { role: "floor", form: "function" },
  "floor (built, stream)": { role: "floor", form: "stream" },
  "eventsource-encoder": { role: "peer", form: "function" },
  "better-sse EventBuffer": { role: "peer", form: "function" },
  "hono writeSSE": { role: "peer", form: "stream" },
  "jsext EventEndpoint": { role: "peer", form: "stream" },
  "ssekit encodeServerSentEvent": { role: "ssekit", form: "function" },
  "ssekit ServerSentEventStream": { role: "ssekit", form: "stream" },
};

/**
 * The end-to-end implementations `e2e/server.ts` can run, each library
 * through its own idiom. The targets read `ssekit-channel`, the broadcast the
 * README tells users to write; the others are shown beside it.
 */
export const E2E_IMPLS = [
  "floor",
  "ssekit-channel",
  "ssekit",
  "ssekit-loops",
  "hono",
  "better-sse",
  "better-sse-loops",
  "better-sse-channel",
  "jsext",
] as const;
