// Runs every example the README quotes, against real servers on 127.0.0.1.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type RequestListener, type Server } from "node:http";
import {
  listenOnLoopback,
  nodeHttp2Server,
  waitFor,
  webServer,
} from "../_server_test_utils.ts";
import { EventConsumer, EventSource } from "../mod.ts";
import bunServe from "./bun_serve.ts";
import { server as nodeHttpExample } from "./node_http.ts";
import { handler as http2Handler } from "./node_http2.ts";
import { completion } from "./llm_stream.ts";
import { follow } from "./event_source.ts";
import { prices, server as broadcastExample } from "./broadcast.ts";
import { startInstance } from "./several_instances.ts";
import { redisMissing, startRedis } from "../_redis_test_utils.ts";

/** The first `count` events of a consumer; leaving the loop closes it. */
async function firstEventsOf(
  consumer: EventConsumer,
  count: number,
): Promise<MessageEvent[]> {
  const events: MessageEvent[] = [];
  for await (const event of consumer) {
    events.push(event);
    if (events.length === count) break;
  }
  return events;
}

/** The first `count` events of a response, then the body is cancelled. */
function firstEvents(
  response: Response | EventConsumer,
  count: number,
): Promise<MessageEvent[]> {
  const consumer = response instanceof EventConsumer
    ? response
    : new EventConsumer(response);
  return firstEventsOf(consumer, count);
}

async function stop(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

/** A node:http server for a test, with the origin it listens on. */
async function nodeServer(
  handler: RequestListener,
): Promise<{ origin: string; server: Server }> {
  const server = createServer(handler);
  return { origin: await listenOnLoopback(server), server };
}

function unusedNodeHandler(): never {
  throw new Error("this example serves web requests only");
}

describe("examples", () => {
  // On Node the examples' `import "ssekit"` resolves to dist/ (built by
  // `prepare` on npm ci): a dist/ older than the sources would test old code.
  test(
    "on Node, the package name resolves to a dist/ built from the current sources",
    {
      skip: "Deno" in globalThis || "Bun" in globalThis
        ? "Deno and Bun resolve it to the sources"
        : false,
    },
    async () => {
      const { statSync } = await import("node:fs");
      const { fileURLToPath } = await import("node:url");
      const resolved = fileURLToPath(import.meta.resolve("ssekit"));
      if (!resolved.includes("/dist/")) return; // --conditions=ssekit-source
      for (const name of ["sse", "client", "channel", "mod"]) {
        const source = fileURLToPath(new URL(`../${name}.ts`, import.meta.url));
        const built = fileURLToPath(
          new URL(`../dist/${name}.js`, import.meta.url),
        );
        assert.ok(
          statSync(built).mtimeMs >= statSync(source).mtimeMs,
          `dist/${name}.js is older than ${name}.ts: run \`npm run build\``,
        );
      }
    },
  );

  test("deno_serve.ts: connected, then the time every second", {
    skip: "Deno" in globalThis
      ? false
      : "Deno.serve and the @ssekit/sse import map are Deno's",
  }, async () => {
    const { handler } = await import("./deno_serve.ts");
    const server = await webServer.start({
      web: handler,
      node: unusedNodeHandler,
    });
    try {
      const [hello, tick] = await firstEvents(await server.fetch("/"), 2);
      assert.equal(hello?.data, "connected");
      assert.equal(tick?.type, "time");
      assert.ok(!Number.isNaN(Date.parse(tick!.data)), tick!.data);
    } finally {
      await server.close();
    }
  });

  test("bun_serve.ts: its default export is a Bun.serve fetch handler", {
    skip: webServer.skip,
  }, async () => {
    const server = await webServer.start({
      web: (request) => bunServe.fetch(request),
      node: unusedNodeHandler,
    });
    try {
      const response = await server.fetch("/");
      assert.match(
        response.headers.get("content-type")!,
        /^text\/event-stream/,
      );
      const [hello] = await firstEvents(response, 1);
      assert.equal(hello?.data, "connected");
    } finally {
      await server.close();
    }
  });

  test("node_http.ts: counts with ids, resumes from Last-Event-ID, then 204 stops EventSource", async () => {
    const origin = await listenOnLoopback(nodeHttpExample);
    try {
      const resumed = await fetch(`${origin}/events`, {
        headers: { "Last-Event-ID": "3" },
      });
      const [fourth] = await firstEvents(resumed, 1);
      assert.deepEqual([fourth?.type, fourth?.data, fourth?.lastEventId], [
        "count",
        "event #4",
        "4",
      ]);

      const source = new EventSource(`${origin}/events`);
      const seen: string[] = [];
      source.addEventListener(
        "count",
        (event) => seen.push((event as MessageEvent).data),
      );
      let errors = 0;
      source.onerror = () => errors++;
      await waitFor(
        () => source.readyState === EventSource.CLOSED,
        "the 204 that ends the stream",
      );
      assert.deepEqual(seen, [
        "event #1",
        "event #2",
        "event #3",
        "event #4",
        "event #5",
      ]);
      assert.ok(errors >= 1, "error fires when the 204 stops the source");
    } finally {
      await stop(nodeHttpExample);
    }
  });

  test("node_http2.ts: serves HTTP/2 without connection headers", {
    skip: nodeHttp2Server.skip,
  }, async () => {
    const server = await nodeHttp2Server.start({
      web: () => new Response(null, { status: 500 }),
      node: http2Handler as Parameters<typeof nodeHttp2Server.start>[0]["node"],
    });
    try {
      const response = await server.fetch("/");
      assert.equal(response.headers.get("connection"), null);
      const [hello] = await firstEvents(response, 1);
      assert.deepEqual([hello?.type, hello?.data], ["hello", "HTTP/2.0"]);
    } finally {
      await server.close();
    }
  });

  test("hono.ts: EventEndpoint inside a Hono route, with CORS headers", {
    skip: "Deno" in globalThis
      ? false
      : "a Deno example: its @ssekit/sse import is deno.json's",
  }, async () => {
    const { app: honoApp } = await import("./hono.ts");
    const response = await honoApp.fetch(
      new Request("http://localhost/events"),
    );
    assert.equal(response.headers.get("access-control-allow-origin"), "*");
    const [greeting] = await firstEvents(response, 1);
    assert.deepEqual([greeting?.type, greeting?.data], [
      "greeting",
      "hello from /events",
    ]);
  });

  test("llm_stream.ts: POSTs the prompt and yields tokens until [DONE]", async () => {
    let received = "";
    const llm = await nodeServer((req, res) => {
      req.on("data", (chunk: Uint8Array) => (received += chunk));
      req.on("end", () => {
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        for (const token of ["Hel", "lo", " 👋"]) {
          res.write(`data: ${JSON.stringify({ token })}\n\n`);
        }
        res.end("data: [DONE]\n\n");
      });
    });
    try {
      const tokens: string[] = [];
      for await (
        const token of completion(`${llm.origin}/v1/completions`, "Say hi")
      ) {
        tokens.push(token);
      }
      assert.deepEqual(tokens, ["Hel", "lo", " 👋"]);
      assert.deepEqual(JSON.parse(received), {
        prompt: "Say hi",
        stream: true,
      });
    } finally {
      await stop(llm.server);
    }
  });

  test("broadcast.ts: every client gets every price; a resuming one first gets what it missed", async () => {
    const origin = await listenOnLoopback(broadcastExample);
    try {
      const liveEvents = firstEvents(await fetch(origin), 3);
      const first = prices.publish({ event: "price", data: "1" });
      prices.publish({ event: "price", data: "2" });
      // Resumes after the first price: it must get the second, then live ones.
      const resumed = await fetch(origin, {
        headers: { "Last-Event-ID": first },
      });
      const resumedEvents = firstEvents(resumed, 2);
      await waitFor(() => prices.size === 2, "both clients to join");
      prices.publish({ event: "price", data: "3" });
      assert.deepEqual((await liveEvents).map((e) => e.data), ["1", "2", "3"]);
      assert.deepEqual((await resumedEvents).map((e) => e.data), ["2", "3"]);
    } finally {
      await stop(broadcastExample);
    }
  });

  test("event_source.ts: a fresh token on every reconnection, and abort closes it", async () => {
    const authorizations: string[] = [];
    const api = await nodeServer((req, res) => {
      authorizations.push(req.headers.authorization ?? "");
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      // retry: 10 makes the reconnection quick; then the stream ends.
      res.end(`retry: 10\nid: ${authorizations.length}\ndata: hi\n\n`);
    });
    const log = console.log;
    const logged: unknown[][] = [];
    console.log = (...args: unknown[]) => logged.push(args);
    const controller = new AbortController();
    let tokens = 0;
    try {
      const source = follow(
        `${api.origin}/events`,
        () => Promise.resolve(`token-${++tokens}`),
        controller.signal,
      );
      await waitFor(() => authorizations.length >= 2, "a reconnection");
      controller.abort();
      assert.equal(source.readyState, EventSource.CLOSED);
      assert.deepEqual(authorizations.slice(0, 2), [
        "Bearer token-1",
        "Bearer token-2",
      ]);
      assert.deepEqual(logged[0], ["connected"]);
      assert.deepEqual(logged[1], ["1", "hi"]);
    } finally {
      console.log = log;
      controller.abort();
      await stop(api.server);
    }
  });

  test(
    "several_instances.ts: an event published on one instance reaches the clients of another; a resume on a third is exact",
    {
      skip: redisMissing(),
    },
    async () => {
      const redis = await startRedis();
      const servers = await Promise.all(
        [1, 2, 3].map(() => startInstance(redis.url)),
      );
      const origins = await Promise.all(
        servers.map((s) => listenOnLoopback(s)),
      );
      try {
        const live = firstEvents(await fetch(origins[1]!), 2);
        const publish = async (data: string) => {
          const response = await fetch(origins[0]!, {
            method: "POST",
            body: data,
          });
          assert.equal(response.status, 200);
          return await response.text();
        };
        const first = await publish("one");
        const second = await publish("two");
        const received = await live;
        assert.deepEqual(received.map((e) => [e.lastEventId, e.data]), [
          [first, "one"],
          [second, "two"],
        ]);
        const resumed = firstEvents(
          await fetch(origins[2]!, { headers: { "Last-Event-ID": first } }),
          2,
        );
        const third = await publish("three");
        assert.deepEqual((await resumed).map((e) => [e.lastEventId, e.data]), [
          [second, "two"],
          [third, "three"],
        ]);
      } finally {
        for (const server of servers) await stop(server);
        await redis.stop();
      }
    },
  );
});
