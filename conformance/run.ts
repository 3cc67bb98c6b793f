/**
 * The conformance runner: every fixture in `conformance/parse/*.json` and
 * `conformance/encode/*.json` against ssekit, on whichever runtime runs it.
 *
 * Parse fixtures go through four surfaces of `client.ts` — the push parser
 * `ServerSentEventParser`, `ServerSentEventParserStream`, `EventConsumer`
 * (a `Response` over a `ReadableStream` of the chunks) and `EventSource`
 * reading a server on 127.0.0.1 — under four chunkings: the whole stream at
 * once, one byte per chunk, two chunks split at every byte offset, and seeded
 * random chunks (`EventSource`: whole and one byte per write). Encode fixtures
 * must match byte for byte through `encodeServerSentEvent` and
 * `ServerSentEventStream`, and rejections must throw the right error class.
 *
 * Prints a count per surface and chunking, the failures, and finally
 * `conformance (<runtime> <version>): N passed, N failed`; writes
 * `conformance/results/<runtime>.json` and re-renders `conformance/RESULTS.md`.
 * Exits non-zero when anything failed.
 *
 * Usage: `deno run -A conformance/run.ts`, `bun run conformance/run.ts`,
 * `node conformance/run.ts` [--seed N] [--random N] [--only NAME-SUBSTRING]
 *
 * @module
 */

import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type ServerResponse } from "node:http";
import process from "node:process";
import { setImmediate } from "node:timers";
import {
  EventConsumer,
  EventSource,
  type ParsedEventStreamChunk,
  type ServerSentEvent,
  ServerSentEventParser,
  ServerSentEventParserStream,
} from "../client.ts";
import {
  encodeServerSentEvent,
  type ServerSentEventMessage,
  ServerSentEventStream,
} from "../sse.ts";
import { type RuntimeResults, type Tally, writeReport } from "./report.ts";
import { listenOnLoopback } from "../_server_test_utils.ts";

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

interface ParseCase {
  name: string;
  source: string;
  input?: string;
  inputBase64?: string;
  events: ServerSentEvent[];
  retry?: number;
  finalLastEventId?: string;
  note?: string;
}

interface EncodeCase {
  name: string;
  source: string;
  message: unknown;
  output: unknown;
  outputBase64?: string;
  events: ServerSentEvent[];
  retry?: number;
  finalLastEventId?: string;
}

interface RejectCase {
  name: string;
  source: string;
  message: unknown;
  error: "TypeError" | "RangeError";
  field: string;
}

/** What a surface observed for one run of a parse fixture. */
interface Observed {
  events: ServerSentEvent[];
  /** The final reconnection time, `undefined` when none was reported. */
  retry?: number | undefined;
  /** The final last event ID, when the surface exposes it. */
  lastEventId?: string | undefined;
  /** An error the surface reported, if any. */
  error?: string | undefined;
}

const here = new URL(".", import.meta.url);

function readJson(dir: string): unknown[] {
  const folder = new URL(`${dir}/`, here);
  return readdirSync(folder).filter((f) => f.endsWith(".json")).sort().map((
    f,
  ) => JSON.parse(readFileSync(new URL(f, folder), "utf8")));
}

/** Decodes the `$number` and `$charCodes` stand-ins of the fixture format. */
function revive(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(revive);
  if (value === null || typeof value !== "object") return value;
  const record = value as Record<string, unknown>;
  if ("$number" in record) return Number(record.$number);
  if ("$charCodes" in record) {
    return String.fromCharCode(...(record.$charCodes as number[]));
  }
  return Object.fromEntries(
    Object.entries(record).map(([k, v]) => [k, revive(v)]),
  );
}

function base64ToBytes(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

const utf8 = new TextEncoder();

function inputBytes(c: ParseCase): Uint8Array {
  if (c.inputBase64 !== undefined) return base64ToBytes(c.inputBase64);
  return utf8.encode(c.input ?? "");
}

// ---------------------------------------------------------------------------
// Chunkings
// ---------------------------------------------------------------------------

/** Inputs longer than this get evenly spaced split points, not all of them. */
const ALL_SPLITS_LIMIT = 4096;
const SAMPLED_SPLITS = 512;

/** A seeded PRNG (mulberry32), so random chunkings are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function cut(bytes: Uint8Array, points: number[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const p of points) {
    chunks.push(bytes.subarray(start, p));
    start = p;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

function splitPoints(length: number): number[] {
  if (length <= ALL_SPLITS_LIMIT) {
    return Array.from({ length: Math.max(length - 1, 0) }, (_, i) => i + 1);
  }
  const points = new Set<number>();
  for (let i = 1; i <= 8; i++) points.add(i).add(length - i);
  for (let i = 1; i < SAMPLED_SPLITS; i++) {
    points.add(Math.floor((i * length) / SAMPLED_SPLITS));
  }
  return [...points].filter((p) => p > 0 && p < length).sort((a, b) => a - b);
}

/** Every chunk layout of one chunking, lazily (some are many). */
function* layouts(
  chunking: string,
  bytes: Uint8Array,
  random: () => number,
  randomSplits: number,
): Generator<Uint8Array[]> {
  switch (chunking) {
    case "whole":
      yield [bytes];
      return;
    case "byte":
      yield Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
      return;
    case "split":
      if (bytes.length < 2) yield [bytes];
      for (const p of splitPoints(bytes.length)) yield cut(bytes, [p]);
      return;
    case "random":
      for (let n = 0; n < randomSplits; n++) {
        if (bytes.length < 2) {
          yield [bytes];
          continue;
        }
        const count = 1 + Math.floor(random() * Math.min(bytes.length - 1, 32));
        const points = new Set<number>();
        while (points.size < count) {
          points.add(1 + Math.floor(random() * (bytes.length - 1)));
        }
        yield cut(bytes, [...points].sort((a, b) => a - b));
      }
      return;
  }
}

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]!.slice());
      else controller.close();
    },
  });
}

// ---------------------------------------------------------------------------
// Surfaces
// ---------------------------------------------------------------------------

function pushParser(chunks: Uint8Array[]): Observed {
  const events: ServerSentEvent[] = [];
  let retry: number | undefined;
  const parser = new ServerSentEventParser({
    onEvent: (e) => events.push({ ...e }),
    onRetry: (ms) => (retry = ms),
  });
  try {
    for (const chunk of chunks) parser.push(chunk.slice());
    const lastEventId = parser.lastEventId;
    parser.end();
    return { events, retry, lastEventId };
  } catch (error) {
    return { events, retry, error: String(error) };
  }
}

async function parserStream(chunks: Uint8Array[]): Promise<Observed> {
  const events: ServerSentEvent[] = [];
  let retry: number | undefined;
  try {
    const reader = streamOf(chunks)
      .pipeThrough(new ServerSentEventParserStream())
      .getReader();
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      const chunk: ParsedEventStreamChunk = value;
      if ("retry" in chunk) retry = chunk.retry;
      else events.push({ ...chunk });
    }
    return { events, retry };
  } catch (error) {
    return { events, retry, error: String(error) };
  }
}

async function eventConsumer(chunks: Uint8Array[]): Promise<Observed> {
  const events: ServerSentEvent[] = [];
  const response = new Response(streamOf(chunks), {
    headers: { "content-type": "text/event-stream" },
  });
  let consumer: EventConsumer | undefined;
  try {
    consumer = new EventConsumer(response);
    for await (const e of consumer) {
      events.push({ type: e.type, data: e.data, lastEventId: e.lastEventId });
    }
    return { events, retry: consumer.retry, lastEventId: consumer.lastEventId };
  } catch (error) {
    consumer?.close();
    return { events, error: String(error) };
  }
}

/** A reconnection time no fixture sets, to see whether `retry` was taken. */
const SENTINEL_DELAY = 7777;
const MAX_TIMEOUT = 2 ** 31 - 1;
const EVENT_SOURCE_TIMEOUT = 10_000;

/** Records every `MessageEvent` an `EventSource` dispatches, whatever its type. */
class RecordingEventSource extends EventSource {
  readonly seen: ServerSentEvent[] = [];
  override dispatchEvent(event: Event): boolean {
    if (event instanceof MessageEvent) {
      this.seen.push({
        type: event.type,
        data: String(event.data),
        lastEventId: event.lastEventId,
      });
    }
    return super.dispatchEvent(event);
  }
}

function eventSource(url: string): Promise<Observed> {
  return new Promise((resolve) => {
    let source: RecordingEventSource | undefined = undefined;
    const finish = (observed: Omit<Observed, "events">) => {
      clearTimeout(timer);
      source?.close();
      resolve({ events: source?.seen ?? [], ...observed });
    };
    const timer = setTimeout(
      () => finish({ error: "timed out waiting for the stream to end" }),
      EVENT_SOURCE_TIMEOUT,
    );
    source = new RecordingEventSource(url, {
      reconnect: { initialDelay: SENTINEL_DELAY, maxAttempts: 1 },
      // The stream ended and the source scheduled a reconnection: everything
      // it will ever dispatch from this response has been dispatched.
      onReconnect: ({ delay }) => {
        // Undo the clamp to report the retry the fixture expects to compare.
        finish({
          retry: delay === SENTINEL_DELAY ? undefined : delay,
          lastEventId: source!.lastEventId,
        });
      },
    });
    source.addEventListener("error", (event) => {
      if (source!.readyState === source!.CLOSED) {
        const message = (event as Event & { message?: string }).message;
        finish({ error: `connection failed: ${message ?? "error event"}` });
      }
    });
  });
}

// ---------------------------------------------------------------------------
// Loopback server: serves /<fixture index>/<whole|byte>
// ---------------------------------------------------------------------------

interface Loopback {
  origin: string;
  close(): Promise<void>;
}

/** Chunks of a response: the stream at once, or one byte per write. */
function responseChunks(bytes: Uint8Array, chunking: string): Uint8Array[] {
  return chunking === "byte"
    ? Array.from(bytes, (_, i) => bytes.subarray(i, i + 1))
    : [bytes];
}

/** Writes between yields to the event loop, so each write is flushed alone. */
function flushEvery(length: number): number {
  return length <= ALL_SPLITS_LIMIT ? 1 : 64;
}

type Route = (path: string) => Uint8Array[] | undefined;

interface DenoLike {
  serve(
    options: {
      hostname: string;
      port: number;
      onListen?: (addr: { port: number }) => void;
    },
    handler: (request: Request) => Response,
  ): { finished: Promise<void>; shutdown(): Promise<void> };
}

interface BunLike {
  serve(options: {
    hostname: string;
    port: number;
    fetch: (request: Request) => Response;
  }): { port: number; stop(force?: boolean): Promise<void> | void };
}

function webResponse(chunks: Uint8Array[] | undefined): Response {
  if (!chunks) return new Response("not found", { status: 404 });
  const every = flushEvery(chunks.length);
  let i = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (i >= chunks.length) return controller.close();
      controller.enqueue(chunks[i++]!.slice());
      if (i % every === 0) await new Promise((r) => setImmediate(r));
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
    },
  });
}

async function writeNode(
  res: ServerResponse,
  chunks: Uint8Array[],
): Promise<void> {
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-store",
  });
  res.flushHeaders();
  const every = flushEvery(chunks.length);
  for (let i = 0; i < chunks.length; i++) {
    if (res.destroyed) return;
    if (!res.write(chunks[i]!)) {
      await new Promise<void>((resolve) => res.once("drain", resolve));
    } else if ((i + 1) % every === 0) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  res.end();
}

async function startLoopback(route: Route): Promise<Loopback> {
  const { Deno, Bun } = globalThis as { Deno?: DenoLike; Bun?: BunLike };
  if (Deno) {
    let port = 0;
    const server = Deno.serve(
      {
        hostname: "127.0.0.1",
        port: 0,
        onListen: (addr) => (port = addr.port),
      },
      (request) => webResponse(route(new URL(request.url).pathname)),
    );
    return {
      origin: `http://127.0.0.1:${port}`,
      close: () => server.shutdown(),
    };
  }
  if (Bun) {
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (request) => webResponse(route(new URL(request.url).pathname)),
    });
    return {
      origin: `http://127.0.0.1:${server.port}`,
      close: async () => await server.stop(true),
    };
  }
  const server = createServer((req, res) => {
    const chunks = route(req.url ?? "");
    if (!chunks) {
      res.writeHead(404).end();
      return;
    }
    writeNode(res, chunks).catch(() => res.destroy());
  });
  return {
    origin: await listenOnLoopback(server),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------
// Comparison and bookkeeping
// ---------------------------------------------------------------------------

function show(value: unknown, max = 160): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > max
    ? text.slice(0, max) + `… (${text.length} chars)`
    : text;
}

function sameEvents(a: ServerSentEvent[], b: ServerSentEvent[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!, y = b[i]!;
    if (
      x.type !== y.type || x.data !== y.data || x.lastEventId !== y.lastEventId
    ) return false;
  }
  return true;
}

/** What a surface can show of a stream besides its events. */
interface Checks {
  /** Compare the final reconnection time. */
  retry: boolean;
  /** What the surface reports when the stream set no reconnection time. */
  noRetry?: number;
  /** `EventSource` clamps the reconnection time to what timers allow. */
  clampRetry?: boolean;
  /** Compare the final last event ID. */
  lastEventId: boolean;
}

/** `undefined` when the observation matches, else what differed. */
function compare(
  expected: {
    events: ServerSentEvent[];
    retry?: number;
    finalLastEventId?: string;
  },
  observed: Observed,
  checks: Checks,
): string | undefined {
  if (observed.error) return `error: ${observed.error}`;
  if (!sameEvents(expected.events, observed.events)) {
    const i = expected.events.findIndex((e, k) =>
      !sameEvents([e], observed.events.slice(k, k + 1))
    );
    const at = i === -1 ? expected.events.length : i;
    return `events differ at #${at} (expected ${expected.events.length}, got ${observed.events.length}): expected ${
      show(expected.events[at])
    }, got ${show(observed.events[at])}`;
  }
  if (checks.retry) {
    let want = expected.retry ?? checks.noRetry;
    if (checks.clampRetry && want !== undefined) {
      want = Math.min(want, MAX_TIMEOUT);
    }
    if (want !== observed.retry) {
      return `retry: expected ${show(want)}, got ${show(observed.retry)}`;
    }
  }
  if (
    checks.lastEventId && expected.finalLastEventId !== undefined &&
    expected.finalLastEventId !== observed.lastEventId
  ) {
    return `final last event ID: expected ${
      show(expected.finalLastEventId)
    }, got ${show(observed.lastEventId)}`;
  }
  return undefined;
}

function describeLayout(chunks: Uint8Array[]): string {
  if (chunks.length === 1) return "1 chunk";
  const sizes = chunks.map((c) => c.length);
  return sizes.length <= 8
    ? `chunks of ${sizes.join("+")} bytes`
    : `${sizes.length} chunks`;
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

function argument(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
}

function runtimeInfo(): { runtime: string; version: string } {
  const g = globalThis as {
    Deno?: { version: { deno: string } };
    Bun?: { version: string };
  };
  if (g.Deno) return { runtime: "deno", version: g.Deno.version.deno };
  if (g.Bun) return { runtime: "bun", version: g.Bun.version };
  return { runtime: "node", version: process.versions.node ?? "?" };
}

const MAX_FAILURES_SHOWN = 40;

async function main(): Promise<number> {
  const started = performance.now();
  const seed = Number(argument("--seed") ?? 20240601);
  const randomSplits = Number(argument("--random") ?? 16);
  const only = argument("--only");
  const { runtime, version } = runtimeInfo();

  const parseCases = (readJson("parse") as { cases: ParseCase[] }[])
    .flatMap((f) => f.cases)
    .filter((c) => !only || c.name.includes(only));
  const encodeFiles = (readJson("encode") as {
    cases: EncodeCase[];
    rejections: RejectCase[];
  }[]).map((f) => revive(f) as typeof f);
  const encodeCases = encodeFiles.flatMap((f) => f.cases)
    .filter((c) => !only || c.name.includes(only));
  const rejections = encodeFiles.flatMap((f) => f.rejections)
    .filter((c) => !only || c.name.includes(only));

  const parse: Record<string, Record<string, Tally>> = {};
  const encode: Record<string, Tally> = {};
  const failures: string[] = [];
  const tally = (
    table: Record<string, Tally>,
    key: string,
    ok: boolean,
    runs: number,
  ) => {
    const t = (table[key] ??= { passed: 0, failed: 0, runs: 0 });
    if (ok) t.passed++;
    else t.failed++;
    t.runs += runs;
  };

  // In-process surfaces, every chunking.
  type Surface = (chunks: Uint8Array[]) => Observed | Promise<Observed>;
  const surfaces: [string, Surface, Checks][] = [
    ["ServerSentEventParser", pushParser, { retry: true, lastEventId: true }],
    ["ServerSentEventParserStream", parserStream, {
      retry: true,
      lastEventId: false,
    }],
    // EventConsumer.retry is 0 when the stream sent no retry.
    ["EventConsumer", eventConsumer, {
      retry: true,
      noRetry: 0,
      lastEventId: true,
    }],
  ];
  for (const [surface, run, checks] of surfaces) {
    const table: Record<string, Tally> = (parse[surface] = {});
    for (const chunking of ["whole", "byte", "split", "random"]) {
      const t0 = performance.now();
      for (const [index, c] of parseCases.entries()) {
        const bytes = inputBytes(c);
        const random = prng(seed + index);
        let problem: string | undefined;
        let runs = 0;
        for (const chunks of layouts(chunking, bytes, random, randomSplits)) {
          runs++;
          const diff = compare(c, await run(chunks), checks);
          if (diff) {
            problem = `${describeLayout(chunks)}: ${diff}`;
            break;
          }
        }
        tally(table, chunking, !problem, runs);
        if (problem) {
          failures.push(`${surface} / ${chunking} / ${c.name}: ${problem}`);
        }
      }
      const t = table[chunking]!;
      console.log(
        `${surface.padEnd(28)} ${
          chunking.padEnd(6)
        } ${t.passed} passed, ${t.failed} failed (${t.runs} runs, ${
          Math.round(performance.now() - t0)
        } ms)`,
      );
    }
  }

  // EventSource over a loopback server: whole and one byte per write.
  const serveChunkings = ["whole", "byte"];
  const loopback = await startLoopback((path) => {
    const [, index, chunking] = path.split("/");
    const c = parseCases[Number(index)];
    if (!c || !serveChunkings.includes(chunking ?? "")) return undefined;
    return responseChunks(inputBytes(c), chunking!);
  });
  try {
    const table: Record<string, Tally> = (parse["EventSource"] = {});
    for (const chunking of serveChunkings) {
      const t0 = performance.now();
      for (const [index, c] of parseCases.entries()) {
        const observed = await eventSource(
          `${loopback.origin}/${index}/${chunking}`,
        );
        const diff = compare(c, observed, {
          retry: true,
          lastEventId: true,
          clampRetry: true,
        });
        tally(table, chunking, !diff, 1);
        if (diff) {
          failures.push(`EventSource / ${chunking} / ${c.name}: ${diff}`);
        }
      }
      const t = table[chunking]!;
      console.log(
        `${"EventSource".padEnd(28)} ${
          chunking.padEnd(6)
        } ${t.passed} passed, ${t.failed} failed (${t.runs} runs, ${
          Math.round(performance.now() - t0)
        } ms)`,
      );
    }
  } finally {
    await loopback.close();
  }

  // Encoder: byte-exact, and the text must parse back to what it says.
  for (const c of encodeCases) {
    const message = c.message as ServerSentEventMessage;
    const expectedBytes = c.outputBase64 !== undefined
      ? base64ToBytes(c.outputBase64)
      : utf8.encode(c.output as string);
    let problem: string | undefined;
    try {
      const out = encodeServerSentEvent(message);
      if (out !== c.output) {
        problem = `expected ${show(c.output)}, got ${show(out)}`;
      } else {
        const diff = compare(c, pushParser([utf8.encode(out)]), {
          retry: true,
          lastEventId: true,
        });
        if (diff) problem = `the output parses differently: ${diff}`;
      }
    } catch (error) {
      problem = `threw ${String(error)}`;
    }
    tally(encode, "encodeServerSentEvent", !problem, 1);
    if (problem) failures.push(`encodeServerSentEvent / ${c.name}: ${problem}`);

    problem = undefined;
    try {
      const bytes = await collectBytes(
        messageStream([message]).pipeThrough(new ServerSentEventStream()),
      );
      if (!sameBytes(bytes, expectedBytes)) {
        problem = `expected bytes ${show(Array.from(expectedBytes))}, got ${
          show(Array.from(bytes))
        }`;
      }
    } catch (error) {
      problem = `errored ${String(error)}`;
    }
    tally(encode, "ServerSentEventStream", !problem, 1);
    if (problem) failures.push(`ServerSentEventStream / ${c.name}: ${problem}`);
  }

  // Rejections: the right error class, naming the field.
  for (const c of rejections) {
    const message = c.message as ServerSentEventMessage;
    const problem = checkError(c, () => encodeServerSentEvent(message));
    tally(encode, "encodeServerSentEvent reject", !problem, 1);
    if (problem) {
      failures.push(`encodeServerSentEvent reject / ${c.name}: ${problem}`);
    }
    let streamError: unknown = undefined;
    try {
      await collectBytes(
        messageStream([message]).pipeThrough(new ServerSentEventStream()),
      );
    } catch (error) {
      streamError = error;
    }
    const streamProblem = checkError(c, () => {
      if (streamError !== undefined) throw streamError;
    });
    tally(encode, "ServerSentEventStream reject", !streamProblem, 1);
    if (streamProblem) {
      failures.push(
        `ServerSentEventStream reject / ${c.name}: ${streamProblem}`,
      );
    }
  }
  for (const [surface, t] of Object.entries(encode)) {
    console.log(`${surface.padEnd(35)} ${t.passed} passed, ${t.failed} failed`);
  }

  const all = [
    ...Object.values(parse).flatMap((t) => Object.values(t)),
    ...Object.values(encode),
  ];
  const passed = all.reduce((n, t) => n + t.passed, 0);
  const failed = all.reduce((n, t) => n + t.failed, 0);

  if (failures.length > 0) {
    console.log(`\nFailures (${failures.length}):`);
    for (const f of failures.slice(0, MAX_FAILURES_SHOWN)) {
      console.log(`  ${f}`);
    }
    if (failures.length > MAX_FAILURES_SHOWN) {
      console.log(`  … and ${failures.length - MAX_FAILURES_SHOWN} more`);
    }
  }

  if (!only) {
    const results: RuntimeResults = {
      runtime,
      version,
      fixtures: {
        parse: parseCases.length,
        encode: encodeCases.length,
        rejections: rejections.length,
      },
      seed,
      randomSplits,
      parse,
      encode,
      passed,
      failed,
      failures,
    };
    const dir = new URL("./results/", import.meta.url);
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      new URL(`${runtime}.json`, dir),
      JSON.stringify(results, null, 2) + "\n",
    );
    writeReport();
  }
  console.log(
    `(${parseCases.length} parse, ${encodeCases.length} encode, ${rejections.length} reject fixtures; ${
      Math.round(performance.now() - started)
    } ms)`,
  );
  console.log(
    `conformance (${runtime} ${version}): ${passed} passed, ${failed} failed`,
  );
  return failed === 0 && passed > 0 ? 0 : 1;
}

function messageStream(
  messages: unknown[],
): ReadableStream<ServerSentEventMessage> {
  let i = 0;
  return new ReadableStream<ServerSentEventMessage>({
    pull(controller) {
      if (i < messages.length) {
        controller.enqueue(messages[i++] as ServerSentEventMessage);
      } else controller.close();
    },
  });
}

async function collectBytes(
  stream: ReadableStream<Uint8Array>,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const reader = stream.getReader();
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** `undefined` when `fn` throws the fixture's error class naming its field. */
function checkError(c: RejectCase, fn: () => unknown): string | undefined {
  try {
    const value = fn();
    return `expected ${c.error} for ${c.field}, got no error (${show(value)})`;
  } catch (error) {
    const expected = c.error === "RangeError" ? RangeError : TypeError;
    const name = (error as Error)?.name;
    if (!(error instanceof expected) || name !== c.error) {
      return `expected ${c.error}, got ${String(error)}`;
    }
    const text = (error as Error).message;
    if (!new RegExp(`\\b${c.field}\\b`).test(text)) {
      return `expected the message to name ${c.field}: ${show(text)}`;
    }
    return undefined;
  }
}

process.exitCode = await main();
