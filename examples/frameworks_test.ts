// Runs every framework recipe against a real server on 127.0.0.1: the first
// event must be the tick after the client's Last-Event-ID, on an event stream.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { listenOnLoopback, runtime, webServer } from "../_server_test_utils.ts";
import { EventConsumer } from "../mod.ts";
import { app as expressApp } from "./express.ts";
import { app as fastifyApp } from "./fastify.ts";
import { app as koaApp } from "./koa.ts";
import { GET } from "./route_handler.ts";

/** Fetches /events resuming after id 41 and returns the first event. */
async function firstTick(origin: string): Promise<MessageEvent> {
  const response = await fetch(`${origin}/events`, {
    headers: { "Last-Event-ID": "41" },
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type")!, /^text\/event-stream/);
  assert.match(response.headers.get("cache-control")!, /no-transform/);
  for await (const event of new EventConsumer(response)) return event;
  throw new Error("the stream ended without an event");
}

function expectTick(event: MessageEvent, name: string): void {
  assert.deepEqual([event.type, event.data, event.lastEventId], [
    "tick",
    `${name} 42`,
    "42",
  ]);
}

async function stopNode(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

describe("framework recipes", () => {
  test("express.ts", async () => {
    const server = expressApp.listen(0, "127.0.0.1");
    await new Promise((resolve) => server.once("listening", resolve));
    try {
      const { port } = server.address() as { port: number };
      expectTick(await firstTick(`http://127.0.0.1:${port}`), "express");
    } finally {
      await stopNode(server);
    }
  });

  test("fastify.ts", async () => {
    const origin = await fastifyApp.listen({ port: 0, host: "127.0.0.1" });
    try {
      expectTick(await firstTick(origin), "fastify");
    } finally {
      fastifyApp.server.closeAllConnections();
      await fastifyApp.close();
    }
  });

  test("koa.ts", async () => {
    const listening = createServer(koaApp.callback());
    const origin = await listenOnLoopback(listening);
    try {
      expectTick(await firstTick(origin), "koa");
    } finally {
      await stopNode(listening);
    }
  });

  test("elysia.ts on Bun", {
    skip: runtime === "bun" ? false : "Elysia's server is Bun.serve",
  }, async () => {
    // Not a static import: Elysia's types bring Bun's globals with them.
    const path = "./elysia.ts";
    const { app } = await import(path);
    app.listen({ port: 0, hostname: "127.0.0.1" });
    try {
      expectTick(
        await firstTick(`http://127.0.0.1:${app.server.port}`),
        "elysia",
      );
    } finally {
      await app.stop(true);
    }
  });

  test("route_handler.ts: export function GET(request)", {
    skip: webServer.skip,
  }, async () => {
    const server = await webServer.start({
      web: GET,
      node: () => {
        throw new Error("web requests only");
      },
    });
    try {
      expectTick(await firstTick(server.origin), "route");
    } finally {
      await server.close();
    }
  });
});
