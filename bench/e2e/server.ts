/**
 * End-to-end bench server: one SSE implementation on this runtime's own HTTP
 * server (Deno.serve, Bun.serve or node:http), listening on 127.0.0.1.
 *
 * Usage: `<runtime> bench/e2e/server.ts <impl>` with impl one of
 * {@linkcode E2E_IMPLS}; prints `ready <port>` once listening. Each library runs
 * through its own idiom for a broadcast:
 * - `floor`: pre-encoded events written straight to the body, 64 per chunk,
 *   with the same response headers as `EventEndpoint`;
 * - `ssekit-channel`: an `EventChannel` (what the README tells users to write
 *   for a broadcast: each event encoded once);
 * - `ssekit`: a Set of `EventEndpoint`s and one loop over all of them;
 * - `ssekit-loops`: the same endpoints, one loop per connection;
 * - `hono`: `streamSSE` and `writeSSE` from one loop over all streams;
 * - `better-sse`: `session.push` from one loop over all sessions;
 * - `better-sse-loops`: `session.push` from one loop per session;
 * - `better-sse-channel`: better-sse's own `Channel.broadcast`;
 * - `jsext`: @ayonli/jsext's `EventEndpoint.send` from one loop over all.
 *
 * Routes:
 * - `GET /sse?round=R`: an event stream; sends one `@ready@` event at once,
 *   then stays idle until `/go` for its round.
 * - `GET /go?round=R&n=N`: sends N `@tick@` events to every stream of round R,
 *   the way a user would (a Set of endpoints, a loop that sends without
 *   awaiting each send), yielding to the event loop every 64 events. Clients close their streams when done.
 * - `GET /stop?round=R`: stops that loop after the current event (the floor: batch) and
 *   answers with the number of events it sent to each stream.
 * - `GET /fanout?round=R&i=K`: sends one `@tick@` event (id K) to every stream
 *   of round R through the implementation's idiom and answers once the call
 *   returned; the client times until the last stream has it.
 * - `GET /stats`: `{ rss, heapUsed, streams }` after a full GC.
 * - `GET /quit`: exits.
 *
 * @module
 */

import process from "node:process";
import { setImmediate } from "node:timers";
import {
  createServer,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { E2E_IMPLS } from "../_cases.ts";
import { EventEndpoint } from "../../sse.ts";
import { EventChannel } from "../../channel.ts";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";
import { Hono } from "hono";
import {
  type Channel as BetterSseChannel,
  createChannel,
  createResponse,
  createSession,
  type Session,
} from "better-sse";
import { EventEndpoint as JsextEventEndpoint } from "@ayonli/jsext/sse";

/** ~85 B on the wire with an id; the markers are what the client counts. */
export const TICK =
  '@tick@ {"kind":"quote","sym":"ACME","px":101.25,"qty":300,"v":1}';
/** The first event of every stream. */
export const READY = "@ready@";

type Impl = typeof E2E_IMPLS[number];

/** One open stream, as the send loop sees it. */
interface Stream {
  /** Sends one event; may return a promise that settles when it was taken. */
  send(data: string, id: string): unknown;
  /** The floor sends up to 64 pre-encoded events at once instead. */
  sendBatch?(chunk: Uint8Array): void;
}

const impl = (process.argv[2] ?? "") as Impl;
if (!(E2E_IMPLS as readonly string[]).includes(impl)) {
  console.error(`usage: server.ts ${E2E_IMPLS.join("|")}, got "${impl}"`);
  process.exit(2);
}

const encoder = new TextEncoder();
const runtime = "Deno" in globalThis
  ? "deno"
  : "Bun" in globalThis
  ? "bun"
  : "node";
const rounds = new Map<string, Set<Stream>>();

function join(round: string, stream: Stream): void {
  let set = rounds.get(round);
  if (!set) rounds.set(round, set = new Set());
  set.add(stream);
}

/** 64 pre-encoded events: what the floor writes per chunk. */
const floorEvents = Array.from(
  { length: 64 },
  (_, i) => encoder.encode(`id: ${i}\ndata: ${TICK}\n\n`),
);
const batch = new Uint8Array(floorEvents.reduce((n, e) => n + e.length, 0));
/** `batchEnds[k]`: the byte length of the first k events of the batch. */
const batchEnds = [0];
for (const e of floorEvents) {
  batch.set(e, batchEnds.at(-1));
  batchEnds.push(batchEnds.at(-1)! + e.length);
}
const readyBytes = encoder.encode(`data: ${READY}\n\n`);

/**
 * The floor's response headers: the ones `EventEndpoint` sends (sse.ts), so
 * that both put the same head on the wire and hold the same header strings.
 */
const FLOOR_HEADERS: Record<string, string> = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
};
/** On node:http `EventEndpoint` also sets `Connection: keep-alive` (HTTP/1.1). */
const FLOOR_NODE_HEADERS: Record<string, string> = {
  ...FLOOR_HEADERS,
  connection: "keep-alive",
};

const yieldToLoop = (): Promise<void> =>
  new Promise((resolve) => setImmediate(resolve));

/** Rounds whose send loop should stop at the next 64-event boundary. */
const stopping = new Set<string>();
/** Running send loops by round; each resolves with the events it sent. */
const loops = new Map<string, Promise<number>>();

function go(round: string, n: number): void {
  stopping.delete(round);
  loops.set(round, sendLoop(round, n));
}

async function stop(round: string): Promise<number> {
  stopping.add(round);
  const sent = await (loops.get(round) ?? Promise.resolve(0));
  loops.delete(round);
  return sent;
}

/** ssekit's broadcast: one channel per round, events encoded once. */
const channels = new Map<string, EventChannel>();

function channelFor(round: string): EventChannel {
  let channel = channels.get(round);
  if (!channel) channels.set(round, channel = new EventChannel());
  return channel;
}

/** better-sse's broadcast: its own `Channel`, one per round. */
const betterChannels = new Map<string, BetterSseChannel>();

function betterChannelFor(round: string): BetterSseChannel {
  let channel = betterChannels.get(round);
  if (!channel) betterChannels.set(round, channel = createChannel());
  return channel;
}

/** One event to every stream of the round, through the library's idiom. */
function broadcastOne(round: string, id: string): void {
  if (impl === "ssekit-channel") {
    channelFor(round).publish({ data: TICK });
  } else if (impl === "better-sse-channel") {
    betterChannelFor(round).broadcast(TICK, "message", { eventId: id });
  } else if (impl === "floor") {
    for (const s of rounds.get(round) ?? []) s.sendBatch?.(floorEvents[0]!);
  } else {
    for (const s of rounds.get(round) ?? []) s.send(TICK, id);
  }
}

async function publishLoop(round: string, n: number): Promise<number> {
  const channel = channelFor(round);
  let i = 0;
  for (; i < n && !stopping.has(round); i++) {
    channel.publish({ data: TICK });
    if ((i & 63) === 63) {
      await yieldToLoop();
      // Backpressure: wait while any member is more than 256 KiB behind.
      while (channel.stats().maxQueuedBytes > 256 * 1024) {
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
  }
  return i;
}

/** better-sse's `Channel.broadcast`, yielding every 64 events. */
async function betterBroadcastLoop(round: string, n: number): Promise<number> {
  const channel = betterChannelFor(round);
  let i = 0;
  for (; i < n && !stopping.has(round); i++) {
    channel.broadcast(TICK, "message", { eventId: String(i) });
    if ((i & 63) === 63) await yieldToLoop();
  }
  return i;
}

/**
 * One loop per connection, each yielding every 64 events: the shape of a
 * handler that streams to its own client. A stop is seen by every loop at
 * its next yield, so all streams get the same count (the first loop's).
 */
async function perConnectionLoops(round: string, n: number): Promise<number> {
  const streams = [...(rounds.get(round) ?? [])];
  let limit = n;
  const one = async (stream: Stream): Promise<void> => {
    let last: unknown;
    for (let i = 0; i < limit; i++) {
      last = stream.send(TICK, String(i));
      if ((i & 63) === 63) {
        await yieldToLoop();
        if (stopping.has(round) && limit === n) limit = i + 1;
      }
    }
    await last;
  };
  await Promise.all(streams.map(one));
  return limit;
}

async function sendLoop(round: string, n: number): Promise<number> {
  if (impl === "ssekit-channel") return await publishLoop(round, n);
  if (impl === "better-sse-channel") return await betterBroadcastLoop(round, n);
  if (impl.endsWith("-loops")) return await perConnectionLoops(round, n);
  const streams = [...(rounds.get(round) ?? [])];
  if (impl === "floor") {
    let i = 0;
    for (; i < n && !stopping.has(round); i += 64) {
      const chunk = n - i >= 64 ? batch : batch.subarray(0, batchEnds[n - i]);
      for (const s of streams) s.sendBatch?.(chunk);
      await yieldToLoop();
    }
    return Math.min(i, n);
  }
  const last: unknown[] = new Array(streams.length);
  let i = 0;
  for (; i < n; i++) {
    const id = String(i);
    for (let s = 0; s < streams.length; s++) {
      last[s] = streams[s]!.send(TICK, id);
    }
    if ((i & 63) === 63) {
      // Fire and forget, as the floor does: only yield so the runtime can
      // write. (Awaiting each batch would make every stream wait for the
      // slowest one.)
      await yieldToLoop();
    }
    if (stopping.has(round)) {
      i++;
      break;
    }
  }
  await Promise.all(last);
  return i;
}

// --- web (Deno.serve, Bun.serve) -------------------------------------------

function floorWeb(round: string): Response {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      c.enqueue(readyBytes);
    },
  });
  join(round, {
    send() {},
    sendBatch(chunk) {
      try {
        controller.enqueue(chunk);
      } catch { /* closed by the client */ }
    },
  });
  return new Response(body, { headers: FLOOR_HEADERS });
}

function ssekitWeb(request: Request, round: string): Response {
  const endpoint = new EventEndpoint(request);
  if (impl === "ssekit-channel") {
    endpoint.send(READY);
    channelFor(round).join(endpoint);
    join(round, { send() {} });
    return endpoint.response!;
  }
  endpoint.send(READY);
  join(round, {
    send: (data, id) => void endpoint.send(data, id),
  });
  return endpoint.response!;
}

const hono = new Hono();
hono.get("/sse", (c) =>
  streamSSE(c, async (stream: SSEStreamingApi) => {
    await stream.writeSSE({ data: READY });
    join(c.req.query("round") ?? "", {
      send: (data, id) => stream.writeSSE({ data, id }),
    });
    // Keep the stream open until the client goes away.
    await new Promise<void>((resolve) => stream.onAbort(resolve));
  }));

/** A better-sse session joins the round: its channel, or the Set of streams. */
function joinBetterSse(round: string, session: Session): void {
  session.push(READY, "message", "0");
  if (impl === "better-sse-channel") {
    betterChannelFor(round).register(session);
    join(round, { send() {} });
    return;
  }
  join(round, {
    send: (data, id) => {
      if (session.isConnected) session.push(data, "message", id);
    },
  });
}

function betterSseWeb(request: Request, round: string): Response {
  return createResponse(request, (session: Session) => {
    joinBetterSse(round, session);
  });
}

/** jsext's sends reject once the client is gone: the caller must catch. */
const ignore = (): void => {};

function joinJsext(round: string, endpoint: JsextEventEndpoint): void {
  endpoint.send(READY).catch(ignore);
  join(round, {
    send: (data, id) => endpoint.send(data, id).catch(ignore),
  });
}

function jsextWeb(request: Request, round: string): Response {
  const endpoint = new JsextEventEndpoint(request);
  joinJsext(round, endpoint);
  return endpoint.response!;
}

async function stats(): Promise<Response> {
  const body = await statsJson();
  return new Response(body, {
    headers: { "content-type": "application/json" },
  });
}

function fetchHandler(request: Request): Response | Promise<Response> {
  const url = new URL(request.url);
  const round = url.searchParams.get("round") ?? "";
  switch (url.pathname) {
    case "/sse":
      if (impl === "floor") return floorWeb(round);
      if (impl.startsWith("ssekit")) return ssekitWeb(request, round);
      if (impl === "hono") return hono.fetch(request);
      if (impl === "jsext") return jsextWeb(request, round);
      return betterSseWeb(request, round);
    case "/go":
      go(round, Number(url.searchParams.get("n")));
      return new Response("ok");
    case "/stop":
      return stop(round).then((sent) => new Response(String(sent)));
    case "/fanout":
      broadcastOne(round, url.searchParams.get("i") ?? "0");
      return new Response("ok");
    case "/stats":
      return stats();
    case "/quit":
      setTimeout(() => process.exit(0), 10);
      return new Response("bye");
  }
  return new Response("not found", { status: 404 });
}

// --- node:http -------------------------------------------------------------

/** What @hono/node-server does, minimally: a Request in, the Response out. */
async function serveFetch(
  handler: (request: Request) => Response | Promise<Response>,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const controller = new AbortController();
  res.on("close", () => controller.abort());
  const request = new Request(`http://127.0.0.1${req.url}`, {
    headers: req.headers as Record<string, string>,
    signal: controller.signal,
  });
  const response = await handler(request);
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (!response.body) return void res.end();
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) {
        await new Promise((resolve) => res.once("drain", resolve));
      }
    }
    res.end();
  } catch {
    res.destroy();
  }
}

function nodeSse(
  req: IncomingMessage,
  res: ServerResponse,
  round: string,
): void {
  switch (impl) {
    case "floor": {
      res.writeHead(200, FLOOR_NODE_HEADERS);
      res.write(readyBytes);
      join(round, { send() {}, sendBatch: (chunk) => void res.write(chunk) });
      return;
    }
    case "ssekit-channel": {
      const endpoint = new EventEndpoint(req, res);
      endpoint.send(READY);
      channelFor(round).join(endpoint);
      join(round, { send() {} });
      return;
    }
    case "ssekit":
    case "ssekit-loops": {
      const endpoint = new EventEndpoint(req, res);
      endpoint.send(READY);
      join(round, {
        send: (data, id) => void endpoint.send(data, id),
      });
      return;
    }
    case "hono":
      void serveFetch(hono.fetch, req, res);
      return;
    case "jsext":
      joinJsext(round, new JsextEventEndpoint(req, res));
      return;
    case "better-sse":
    case "better-sse-loops":
    case "better-sse-channel":
      void createSession(req, res).then((session) => {
        joinBetterSse(round, session);
      });
  }
}

function nodeHandler(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://127.0.0.1");
  const round = url.searchParams.get("round") ?? "";
  switch (url.pathname) {
    case "/sse":
      return nodeSse(req, res, round);
    case "/go":
      go(round, Number(url.searchParams.get("n")));
      return void res.end("ok");
    case "/stop":
      void stop(round).then((sent) => res.end(String(sent)));
      return;
    case "/fanout":
      broadcastOne(round, url.searchParams.get("i") ?? "0");
      return void res.end("ok");
    case "/stats":
      void statsJson().then((body) => res.end(body));
      return;
    case "/quit":
      res.end("bye");
      setTimeout(() => process.exit(0), 10);
      return;
  }
  res.writeHead(404).end("not found");
}

// --- shared -----------------------------------------------------------------

async function statsJson(): Promise<string> {
  const g = globalThis as {
    gc?: () => void;
    Bun?: { gc(force: boolean): void };
  };
  for (let i = 0; i < 3; i++) {
    if (g.Bun) g.Bun.gc(true);
    else g.gc?.();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  let streams = 0;
  for (const set of rounds.values()) streams += set.size;
  const { rss, heapUsed } = process.memoryUsage();
  return JSON.stringify({ rss, heapUsed, streams, runtime });
}

interface BunLike {
  serve(options: {
    hostname: string;
    port: number;
    idleTimeout: number;
    fetch(request: Request): Response | Promise<Response>;
  }): { port: number };
}

interface DenoLike {
  serve(
    options: {
      hostname: string;
      port: number;
      onListen(addr: { port: number }): void;
    },
    handler: (request: Request) => Response | Promise<Response>,
  ): unknown;
}

if (runtime === "deno") {
  const deno = (globalThis as unknown as { Deno: DenoLike }).Deno;
  deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }) => console.log(`ready ${port}`),
  }, fetchHandler);
} else if (runtime === "bun") {
  const bun = (globalThis as unknown as { Bun: BunLike }).Bun;
  // idleTimeout 0: idle streams must not be cut during the RSS measurement.
  const server = bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    fetch: fetchHandler,
  });
  console.log(`ready ${server.port}`);
} else {
  const server = createServer(nodeHandler);
  server.listen(0, "127.0.0.1", 1024, () => {
    const address = server.address();
    console.log(
      `ready ${typeof address === "object" && address ? address.port : 0}`,
    );
  });
}
