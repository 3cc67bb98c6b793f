/**
 * `npm start`: the ssekit live demo on Deno.
 *
 * One broadcast channel feeds every open tab: a simulated price every
 * 500 ms (`tick`) and a chat (`chat`, from `POST /chat`). The channel's
 * history is kept in a file, so a browser that reconnects after the server
 * was killed and restarted resumes from its `Last-Event-ID` with nothing lost
 * or repeated.
 *
 * Usage: deno run -A demo/server.ts [--port 8000] [--data DIR]
 * (or the `PORT` and `DEMO_DATA` environment variables). `--port 0` picks a
 * free port; the URL is printed either way.
 *
 * @module
 */

import { EventChannel, EventEndpoint, ServerSentEventParser } from "../mod.ts";
import { fileURLToPath } from "node:url";
import { FileHistoryStore } from "./file_history_store.ts";

/** A price tick as broadcast and as kept for the page's first paint. */
interface Tick {
  t: number;
  price: number;
  members: number;
  boot: number;
}

/** A chat message as broadcast. */
interface Chat {
  t: number;
  name: string;
  text: string;
  system?: boolean;
}

const TICK_MS = 500;
/** Ticks the page's chart shows: 60 s. */
const RECENT_TICKS = 120;
const RECENT_CHAT = 50;
const MAX_NAME = 24;
const MAX_TEXT = 280;
const MAX_BODY = 4096;

function option(name: string, env: string, fallback: string): string {
  const at = Deno.args.indexOf(`--${name}`);
  if (at !== -1 && Deno.args[at + 1] !== undefined) return Deno.args[at + 1]!;
  return Deno.env.get(env) ?? fallback;
}

const port = Number(option("port", "PORT", "8000"));
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  throw new RangeError(
    `Invalid port ${
      JSON.stringify(option("port", "PORT", "8000"))
    }: expected an integer from 0 to 65535`,
  );
}
const dataDir = option(
  "data",
  "DEMO_DATA",
  fileURLToPath(new URL("./output/data", import.meta.url)),
);
const publicDir = new URL("./public/", import.meta.url);
const boot = Date.now();

// --- the channel, and what the page needs for its first paint ------------

const store = new FileHistoryStore(`${dataDir}/history.jsonl`);
// Ids are "<boot>-<n>": each process numbers its events under its own start
// time (ms, base 36), so ids from before a restart stay unique — even if
// the history file was deleted — and the file-backed history still finds them.
const idPrefix = `${boot.toString(36)}-`;
const channel = new EventChannel({ history: store, idPrefix });

const recentTicks: (Tick & { id: string })[] = [];
const recentChat: (Chat & { id: string })[] = [];
let lastEventId = "";

/** Keeps the last few ticks and chat messages, for `GET /state`. */
function remember(type: string, data: string, id: string): void {
  lastEventId = id;
  if (type === "tick") {
    recentTicks.push({ ...(JSON.parse(data) as Tick), id });
    if (recentTicks.length > RECENT_TICKS) recentTicks.shift();
  } else if (type === "chat") {
    recentChat.push({ ...(JSON.parse(data) as Chat), id });
    if (recentChat.length > RECENT_CHAT) recentChat.shift();
  }
}

// The history survived the last run: rebuild the recent lists from it, with
// ssekit's own parser, so the first page load shows the past minute.
const parser = new ServerSentEventParser({
  onEvent: (e) => remember(e.type, e.data, e.lastEventId),
});
for (const entry of store.entries()) parser.push(entry.bytes);

function publish(event: "tick" | "chat", value: Tick | Chat): string {
  const data = JSON.stringify(value);
  const id = channel.publish({ event, data });
  remember(event, data, id);
  return id;
}

// Every restart says so in the chat. Published before the server listens, so
// a page that resumes after a restart gets it only by replay.
publish("chat", {
  t: boot,
  name: "server",
  text:
    `Server started (pid ${Deno.pid}); its event ids start with ${idPrefix}`,
  system: true,
});

// --- the ticker ------------------------------------------------------------

let price = recentTicks.at(-1)?.price ?? 100;
/** A random walk with a little pull back to 100, so it stays on screen. */
function nextPrice(): number {
  const drift = (100 - price) * 0.01;
  price = Math.max(1, price + drift + (Math.random() - 0.5) * 0.8);
  return Math.round(price * 100) / 100;
}

setInterval(() => {
  publish("tick", {
    t: Date.now(),
    price: nextPrice(),
    members: channel.size,
    boot,
  });
}, TICK_MS);

// --- HTTP ------------------------------------------------------------------

const STATIC: Record<string, string> = {
  "/": "index.html",
  "/index.html": "index.html",
  "/app.js": "app.js",
  "/style.css": "style.css",
  // index.html names /favicon.svg; a browser that asks anyway gets the same.
  "/favicon.svg": "favicon.svg",
  "/favicon.ico": "favicon.svg",
};
const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
};

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
    },
  });
}

/**
 * `GET /events`: one endpoint per tab, joined to the channel, which replays
 * what came after the client's `Last-Event-ID`. A page's first connection
 * passes the id of its snapshot as `?lastEventId=` (a new `EventSource`
 * cannot set the header); the browser's own reconnects send the header,
 * which wins.
 */
function events(request: Request): Response {
  // A short retry so a restarted server is found again quickly.
  const endpoint = new EventEndpoint(request, { reconnectionTime: 1000 });
  const fromQuery = new URL(request.url).searchParams.get("lastEventId");
  channel.join(endpoint, {
    lastEventId: endpoint.lastEventId || (fromQuery ?? ""),
  });
  return endpoint.response!;
}

async function chat(request: Request): Promise<Response> {
  const tooLarge = json({ error: `expected at most ${MAX_BODY} bytes` }, 413);
  if (Number(request.headers.get("content-length") ?? 0) > MAX_BODY) {
    return tooLarge;
  }
  let body: unknown;
  try {
    const text = await request.text();
    if (text.length > MAX_BODY) return tooLarge;
    body = JSON.parse(text);
  } catch {
    return json({ error: "expected a JSON body" }, 400);
  }
  const { name, text } = (body ?? {}) as { name?: unknown; text?: unknown };
  if (typeof text !== "string" || text.trim() === "") {
    return json({ error: "expected a non-empty string `text`" }, 400);
  }
  const id = publish("chat", {
    t: Date.now(),
    name: typeof name === "string" && name.trim()
      ? name.trim().slice(0, MAX_NAME)
      : "guest",
    text: text.trim().slice(0, MAX_TEXT),
  });
  return json({ id });
}

async function serveStatic(path: string): Promise<Response> {
  const file = STATIC[path];
  if (!file) return new Response("Not found\n", { status: 404 });
  const body = await Deno.readFile(new URL(file, publicDir));
  const type = TYPES[file.slice(file.lastIndexOf(".") + 1)]!;
  return new Response(body, {
    headers: { "content-type": type, "cache-control": "no-cache" },
  });
}

function handler(request: Request): Response | Promise<Response> {
  const { pathname } = new URL(request.url);
  if (pathname === "/events" && request.method === "GET") {
    return events(request);
  }
  if (pathname === "/chat" && request.method === "POST") return chat(request);
  if (pathname === "/state" && request.method === "GET") {
    return json({
      lastEventId,
      ticks: recentTicks,
      chat: recentChat,
      stats: channel.stats(),
    });
  }
  if (request.method === "GET") return serveStatic(pathname);
  return new Response("Method not allowed\n", { status: 405 });
}

// Ctrl-C or a kill ends the process as it is: the history is already on
// disk, and browsers keep reconnecting until the server is back.
Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: ({ port }) => {
    console.log(`ssekit demo: http://localhost:${port}/`);
    console.log(
      "  Open it in two tabs and chat. Stop the server (Ctrl-C) and start it\n" +
        "  again: the tabs reconnect and resume from their Last-Event-ID.",
    );
    console.log(`  history: ${store.path}`);
  },
}, handler);
