/**
 * ssekit's client in a real browser: `client.ts` bundled with esbuild into a
 * page served from `node:http` on 127.0.0.1, driven in headless Chromium
 * (playwright-core). The server side is ssekit's `EventEndpoint`.
 *
 * - `EventSource` with `method: "POST"`, headers and a body, reconnecting
 *   with `Last-Event-ID` (and the same POST) after the stream ends;
 * - `EventConsumer` over `fetch` with POST, as LLM clients stream;
 * - a hidden tab (`document.hidden`, `visibilitychange`) neither aborts the
 *   stream nor sends the POST again (the failure users of
 *   @microsoft/fetch-event-source report, Azure/fetch-event-source#36, #75);
 * - a finished stream is not requested again: after `close(true)` the
 *   reconnection gets `204` and `EventSource` stops, and an `EventConsumer`
 *   whose stream ended makes no request (#79).
 *
 * Prints one `ok`/`FAIL` line per check and ends with `N passed, N failed`.
 *
 * Usage: node_modules/.bin/node tools/browser_client_check.ts
 *
 * @module
 */

import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { Browser } from "playwright-core";
import { EventEndpoint } from "../sse.ts";
import { launchChromium } from "./chromium.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const WAIT_MS = 15_000;

interface Seen {
  method: string;
  authorization: string;
  lastEventId: string;
  body: string;
}

const requests: Record<string, Seen[]> = {};
const results: { name: string; ok: boolean; detail: string }[] = [];

function check(name: string, ok: boolean, detail = ""): void {
  results.push({ name, ok, detail });
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${detail ? ` — ${detail}` : ""}`);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk));
    req.on("end", () => resolve(body));
  });
}

const bundle = await build({
  entryPoints: [`${root}client.ts`],
  bundle: true,
  format: "esm",
  target: "es2022",
  write: false,
});
const script = bundle.outputFiles[0]!.text;

const PAGE = `<!doctype html><meta charset="utf-8"><title>ssekit client</title>
<script type="module">
import * as ssekit from "/ssekit.js";
globalThis.ssekit = ssekit;
globalThis.ready = true;
</script>`;

/**
 * Whether a write reached the client: works with `send` resolving to nothing
 * and rejecting when the client left, or resolving to a boolean.
 */
function delivered(write: Promise<unknown>): Promise<boolean> {
  return write.then((result) => result !== false, () => false);
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url!, "http://localhost");
  if (url.pathname === "/") {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(
      PAGE,
    );
    return;
  }
  if (url.pathname === "/ssekit.js") {
    res.writeHead(200, { "content-type": "text/javascript" }).end(script);
    return;
  }
  if (url.pathname === "/favicon.ico") {
    res.writeHead(204).end();
    return;
  }
  const body = await readBody(req);
  const key = url.pathname.slice(1);
  const endpoint = new EventEndpoint(req, res, { reconnectionTime: 50 });
  (requests[key] ??= []).push({
    method: req.method!,
    authorization: req.headers.authorization ?? "",
    lastEventId: endpoint.lastEventId,
    body,
  });
  const n = requests[key]!.length;
  // A reconnection after close(true) has been answered 204 already.
  if (String(req.headers["last-event-id"]).startsWith("ssekit:closed:")) return;
  if (key === "reconnect") {
    // First stream: one event, then the stream ends; the reconnection
    // resumes after it and ends telling the client not to come back.
    if (n === 1) {
      await delivered(endpoint.sendEvent("token", "one", "1"));
      endpoint.close();
    } else {
      await delivered(
        endpoint.sendEvent("token", `two after ${endpoint.lastEventId}`, "2"),
      );
      endpoint.close(true);
    }
  } else if (key === "tokens") {
    // An LLM answer: 12 tokens, 100 ms apart, then [DONE] and the end.
    for (let i = 0; i < 12; i++) {
      if (!await delivered(endpoint.send(`t${i}`))) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await delivered(endpoint.send("[DONE]"));
    endpoint.close(true);
  } else {
    endpoint.close(true);
  }
});
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

let browser: Browser | undefined;
try {
  browser = await launchChromium();
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(`${origin}/`);
  await page.waitForFunction(
    () => (globalThis as { ready?: boolean }).ready,
    null,
    {
      timeout: WAIT_MS,
    },
  );

  // 1. EventSource: POST, headers, body; reconnects with Last-Event-ID and
  // the same POST; the 204 after close(true) stops it.
  const reconnect = await page.evaluate(async (wait) => {
    const { EventSource } =
      (globalThis as unknown as { ssekit: typeof import("../client.ts") })
        .ssekit;
    const source = new EventSource("/reconnect", {
      method: "POST",
      headers: { Authorization: "Bearer page-token" },
      body: JSON.stringify({ prompt: "hi" }),
    });
    const data: string[] = [];
    source.addEventListener(
      "token",
      (event) => data.push((event as MessageEvent).data),
    );
    const started = Date.now();
    while (
      source.readyState !== EventSource.CLOSED && Date.now() - started < wait
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // Time for any further (wrong) reconnection at retry: 50 ms.
    await new Promise((resolve) => setTimeout(resolve, 500));
    return { data, readyState: source.readyState };
  }, WAIT_MS);
  const seen = requests.reconnect ?? [];
  check(
    "EventSource in Chromium: POST with headers and body, events of both streams",
    JSON.stringify(reconnect.data) === JSON.stringify(["one", "two after 1"]) &&
      seen.length >= 2 &&
      seen.slice(0, 2).every((r) =>
        r.method === "POST" && r.authorization === "Bearer page-token" &&
        r.body === '{"prompt":"hi"}'
      ),
    `events ${JSON.stringify(reconnect.data)}, requests ${
      JSON.stringify(seen)
    }`,
  );
  check(
    "EventSource reconnects with Last-Event-ID",
    seen[1]?.lastEventId === "1",
    `second request Last-Event-ID ${JSON.stringify(seen[1]?.lastEventId)}`,
  );
  check(
    "a finished stream (close(true), then 204) is not requested again",
    reconnect.readyState === 2 && seen.length === 3,
    `readyState ${reconnect.readyState}, ${seen.length} requests (2 streams and the 204)`,
  );

  // 2. EventConsumer over fetch POST, with the tab hidden mid-answer.
  const consumed = await page.evaluate(async () => {
    const { EventConsumer } =
      (globalThis as unknown as { ssekit: typeof import("../client.ts") })
        .ssekit;
    const response = await fetch("/tokens", {
      method: "POST",
      headers: { Authorization: "Bearer page-token" },
      body: JSON.stringify({ prompt: "tell me" }),
    });
    const tokens: string[] = [];
    for await (const event of new EventConsumer(response)) {
      if (event.data === "[DONE]") break;
      tokens.push(event.data);
      if (tokens.length === 3) {
        // The user switches tabs: the page is hidden.
        const document = (globalThis as unknown as { document: EventTarget })
          .document;
        Object.defineProperty(document, "hidden", {
          configurable: true,
          get: () => true,
        });
        Object.defineProperty(document, "visibilityState", {
          configurable: true,
          get: () => "hidden",
        });
        document.dispatchEvent(new Event("visibilitychange"));
      }
    }
    return tokens;
  });
  const tokenRequests = requests.tokens ?? [];
  check(
    "EventConsumer over fetch POST: every token, the tab hidden after the third",
    consumed.length === 12 && consumed.every((t, i) => t === `t${i}`),
    JSON.stringify(consumed),
  );
  check(
    "a hidden tab neither aborts the stream nor sends the POST again",
    tokenRequests.length === 1,
    `${tokenRequests.length} POST /tokens`,
  );

  // 3. EventSource over the same LLM stream, hidden mid-answer: it gets the
  // whole answer on one request; the end (close(true)) costs one 204, no more.
  const viaSource = await page.evaluate(async (wait) => {
    const { EventSource } =
      (globalThis as unknown as { ssekit: typeof import("../client.ts") })
        .ssekit;
    const source = new EventSource("/tokens", { method: "POST", body: "{}" });
    const tokens: string[] = [];
    source.onmessage = (event) => {
      if (event.data !== "[DONE]") tokens.push(event.data);
      if (tokens.length === 3) {
        (globalThis as unknown as { document: EventTarget }).document
          .dispatchEvent(new Event("visibilitychange"));
        globalThis.dispatchEvent(new Event("blur"));
      }
    };
    const started = Date.now();
    while (
      source.readyState !== EventSource.CLOSED && Date.now() - started < wait
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    return { tokens, readyState: source.readyState };
  }, WAIT_MS);
  const total = (requests.tokens ?? []).length;
  check(
    "EventSource POST in a hidden tab: one request for the answer, then one 204, then CLOSED",
    viaSource.tokens.length === 12 && viaSource.readyState === 2 && total === 3,
    `${viaSource.tokens.length} tokens, readyState ${viaSource.readyState}, ` +
      `${total - 1} requests for this answer`,
  );
  check("no page errors", errors.length === 0, errors.join("; "));
} catch (error) {
  check("browser client check ran to the end", false, String(error));
} finally {
  await browser?.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}
const failed = results.filter((r) => !r.ok).length;
console.log(
  `browser client: ${results.length - failed} passed, ${failed} failed`,
);
process.exit(failed ? 1 : 0);
