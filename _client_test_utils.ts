/**
 * Test helpers for client_test.ts: a real HTTP server on 127.0.0.1 with
 * whatever the runtime has (Deno.serve, Bun.serve or node:http), answering
 * each request with a scripted reply; and what the parser reports for a
 * stream (also used by sse_test.ts). Not published.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createServer } from "node:http";
import process from "node:process";
import type { IncomingMessage, ServerResponse } from "node:http";
import { listenOnLoopback } from "./_server_test_utils.ts";
import { type ServerSentEvent, ServerSentEventParser } from "./client.ts";

/** Everything a parser reported for one stream. */
export interface Parsed {
  events: ServerSentEvent[];
  retries: number[];
  comments: string[];
  lastEventId: string;
}

/** Feeds `chunks` to a new parser, ends the stream, and returns what it saw. */
export function parse(chunks: Iterable<Uint8Array>): Parsed {
  const parsed: Parsed = {
    events: [],
    retries: [],
    comments: [],
    lastEventId: "",
  };
  const parser = new ServerSentEventParser({
    onEvent: (event) => parsed.events.push(event),
    onRetry: (ms) => parsed.retries.push(ms),
    onComment: (text) => parsed.comments.push(text),
  });
  for (const chunk of chunks) parser.push(chunk);
  parser.end();
  parsed.lastEventId = parser.lastEventId;
  return parsed;
}

/** A request as the server received it. */
export interface RecordedRequest {
  method: string;
  /** The path and query. */
  path: string;
  /** Header values as byte strings (one char per byte). */
  headers: Record<string, string>;
  body: string;
}

/** How the server answers one request. */
export interface Reply {
  /** @default {200} */
  status?: number;
  /** @default {{ "content-type": "text/event-stream" }} */
  headers?: Record<string, string>;
  /** Written as is; `null` for no body. @default {""} */
  body?: string | null;
  /** Keep the response open after the body until the client goes away. */
  hold?: boolean;
}

/** A running test server. */
export interface TestServer {
  /** `http://127.0.0.1:PORT`. */
  origin: string;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** Stops the server and drops every connection. */
  close(): Promise<void>;
}

/** The handler a test gives: may wait before answering. */
export type ReplyHandler = (
  request: RecordedRequest,
  index: number,
) => Reply | Promise<Reply>;

const encoder = new TextEncoder();

function replyHeaders(reply: Reply): Record<string, string> {
  return reply.headers ?? { "content-type": "text/event-stream" };
}

/** A web `Response` for the reply; `hold` keeps it open until cancelled. */
function webResponse(reply: Reply, held: Set<() => void>): Response {
  const status = reply.status ?? 200;
  const headers = replyHeaders(reply);
  if (reply.body === null || status === 204) {
    return new Response(null, { status, headers });
  }
  const text = reply.body ?? "";
  if (!reply.hold) return new Response(text, { status, headers });
  let release = (): void => {};
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      if (text) controller.enqueue(encoder.encode(text));
      release = () => {
        try {
          controller.close();
        } catch { /* already cancelled by the client */ }
      };
      held.add(release);
    },
    cancel() {
      held.delete(release);
    },
  });
  return new Response(stream, { status, headers });
}

async function recordWeb(request: Request): Promise<RecordedRequest> {
  const headers: Record<string, string> = {};
  request.headers.forEach((value, name) => (headers[name] = value));
  const url = new URL(request.url);
  return {
    method: request.method,
    path: url.pathname + url.search,
    headers,
    body: await request.text(),
  };
}

interface DenoServer {
  addr: { port: number };
  shutdown(): Promise<void>;
}
interface DenoLike {
  serve(
    options: { hostname: string; port: number; onListen(): void },
    handler: (request: Request) => Promise<Response>,
  ): DenoServer;
}
interface BunServer {
  port: number;
  stop(closeActiveConnections?: boolean): Promise<void> | void;
}
interface BunLike {
  serve(options: {
    hostname: string;
    port: number;
    idleTimeout: number;
    fetch(request: Request): Promise<Response>;
  }): BunServer;
}

/**
 * Starts a server on 127.0.0.1 (a free port) answering with `handler`.
 *
 * @param handler Gives the reply for each request.
 * @returns The running server.
 */
export async function serve(handler: ReplyHandler): Promise<TestServer> {
  const requests: RecordedRequest[] = [];
  const held = new Set<() => void>();
  const releaseAll = () => {
    for (const release of held) release();
    held.clear();
  };
  const g = globalThis as { Deno?: DenoLike; Bun?: BunLike };
  const answerWeb = async (request: Request): Promise<Response> => {
    const recorded = await recordWeb(request);
    requests.push(recorded);
    return webResponse(
      await handler(recorded, requests.length - 1),
      held,
    );
  };
  if (g.Deno) {
    const server = g.Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      answerWeb,
    );
    return {
      origin: `http://127.0.0.1:${server.addr.port}`,
      requests,
      close: () => {
        releaseAll();
        return server.shutdown();
      },
    };
  }
  if (g.Bun) {
    const server = g.Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      idleTimeout: 0,
      fetch: answerWeb,
    });
    return {
      origin: `http://127.0.0.1:${server.port}`,
      requests,
      close: async () => {
        releaseAll();
        await server.stop(true);
      },
    };
  }
  return await serveNode(handler, requests);
}

async function serveNode(
  handler: ReplyHandler,
  requests: RecordedRequest[],
): Promise<TestServer> {
  const open = new Set<ServerResponse>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    req.on("end", async () => {
      const headers: Record<string, string> = {};
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        headers[req.rawHeaders[i]!.toLowerCase()] = req.rawHeaders[i + 1]!;
      }
      const recorded: RecordedRequest = {
        method: req.method ?? "",
        path: req.url ?? "",
        headers,
        body: new TextDecoder().decode(concat(chunks)),
      };
      requests.push(recorded);
      const reply = await handler(recorded, requests.length - 1);
      res.writeHead(reply.status ?? 200, replyHeaders(reply));
      if (reply.body) res.write(reply.body);
      if (reply.hold) {
        open.add(res);
        res.on("close", () => open.delete(res));
      } else res.end();
    });
  });
  return {
    origin: await listenOnLoopback(server),
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of open) res.end();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Decodes a header value received as a byte string as UTF-8. */
export function headerAsUtf8(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const bytes = new Uint8Array(value.length);
  for (let i = 0; i < value.length; i++) bytes[i] = value.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/** Resolves with the next event of `type` dispatched on `target`. */
export function nextEvent<E extends Event = Event>(
  target: EventTarget,
  type: string,
): Promise<E> {
  return new Promise((resolve) =>
    target.addEventListener(type, (event) => resolve(event as E), {
      once: true,
    })
  );
}

/** A promise with its resolve function, for handlers that wait. */
export function deferred<T = void>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
} {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Rejections nobody handled, recorded by {@linkcode trapUnhandledRejections}. */
const unhandled: unknown[] = [];
let trapped = false;

/**
 * Installs a process-level trap for unhandled promise rejections, on Deno
 * (`unhandledrejection` on globalThis), Bun and Node
 * (`process.on("unhandledRejection")`): each one is recorded, printed, and
 * sets a failing exit code, so the test file fails even when no test is
 * running at that moment. Call it at the top of a test file, and
 * {@linkcode assertNoUnhandledRejections} in its last test.
 */
export function trapUnhandledRejections(): void {
  if (trapped) return;
  trapped = true;
  const record = (reason: unknown) => {
    unhandled.push(reason);
    console.error("unhandled rejection:", reason);
    process.exitCode = 1;
  };
  const g = globalThis as {
    Deno?: unknown;
    addEventListener?: (
      type: string,
      listener: (event: Event & { reason?: unknown }) => void,
    ) => void;
  };
  if (g.Deno && typeof g.addEventListener === "function") {
    g.addEventListener("unhandledrejection", (event) => {
      event.preventDefault();
      record(event.reason);
    });
  } else {
    process.on("unhandledRejection", record);
  }
}

/**
 * Fails when the trap recorded an unhandled rejection (after letting pending
 * ones surface: rejections are reported after a macrotask).
 */
export async function assertNoUnhandledRejections(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(unhandled, [], "unhandled rejections during the file");
}
