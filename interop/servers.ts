/**
 * The server side of the conversation (see `scenario.ts`), once with
 * ssekit's `EventEndpoint` and once with each peer server: Hono's
 * `streamSSE`, better-sse, @ayonli/jsext's `EventEndpoint`, and plain
 * `node:http` writes as in the classic tutorials.
 *
 * Each is written the way that library's own docs show it, on the runtime
 * running this code. Servers that cannot tell a client to stop (all but
 * ssekit and jsext) answer `204` from application state: the id of the last
 * event means "no more".
 *
 * @module
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { createSession } from "better-sse";
import { EventEndpoint as JsextEventEndpoint } from "@ayonli/jsext/sse";
import { EventEndpoint } from "../sse.ts";
import {
  type Check,
  FIRST_RETRY,
  firstEvents,
  keyOf,
  phaseOf,
  resumeEvent,
  type ScriptedEvent,
  SECOND_RETRY,
  type ServerLog,
} from "./scenario.ts";
import {
  runtime,
  type Served,
  serveFetch,
  serveNode,
  versioned,
} from "./serve.ts";

/** A page on the server's origin, so that a browser's EventSource is same-origin. */
const PAGE = "<!doctype html><title>ssekit interop</title>";

function isPage(url: string): boolean {
  return new URL(url, "http://127.0.0.1").pathname === "/page";
}

function nodeHeader(req: IncomingMessage): string | null {
  const value = req.headers["last-event-id"];
  return (Array.isArray(value) ? value[0] : value) ?? null;
}

/** The events of a phase 1 or 2 request. */
function script(key: string, phase: 1 | 2, header: string | null) {
  return phase === 1
    ? { retry: FIRST_RETRY, events: firstEvents(key) }
    : { retry: SECOND_RETRY, events: [resumeEvent(key, header ?? "")] };
}

/** What a server is, for the report. */
export interface StartedServer extends Served {
  /** The server library and how it is served. */
  label: string;
}

/** A server factory of the matrix. */
export interface ServerKind {
  /** Short name used in keys. */
  name: string;
  /** Name in test titles. */
  title: string;
  /** Checks the server cannot take part in, and why (the cell is n/a). */
  unsupported?: Partial<Record<Check, string>>;
  start(log: ServerLog): Promise<StartedServer>;
}

// --- ssekit -----------------------------------------------------------------

async function sendAll(
  endpoint: {
    send(d: string, id?: string): Promise<unknown>;
    sendEvent(e: string, d: string, id?: string): Promise<unknown>;
  },
  events: ScriptedEvent[],
): Promise<void> {
  for (const e of events) {
    const sent = e.event === undefined
      ? await endpoint.send(e.data, e.id)
      : await endpoint.sendEvent(e.event, e.data, e.id);
    if (sent === false) return; // ssekit: the client left
  }
}

/**
 * ssekit's `EventEndpoint`: `new EventEndpoint(req, res)` on `node:http`
 * under Node, `new EventEndpoint(request)` on `Deno.serve` / `Bun.serve`.
 * Phase 2 ends with `close(true)`; the 204 is ssekit's own.
 */
export const ssekitServer: ServerKind = {
  name: "ssekit",
  title: "ssekit EventEndpoint",
  async start(log) {
    const play = (
      endpoint: EventEndpoint,
      key: string,
      header: string | null,
    ) => {
      const phase = phaseOf(key, header);
      if (phase === 3) {
        // ssekit did not recognise its own marker: end it again so that a
        // client loop stays bounded by the client's deadline.
        endpoint.close(true);
        return;
      }
      const { events } = script(key, phase, header);
      if (phase === 1) {
        endpoint.addEventListener("close", () => log.firstStreamEnded(key));
      }
      sendAll(endpoint, events).then(
        () => endpoint.close(phase === 2),
        () => endpoint.close(),
      );
    };
    const options = (key: string, header: string | null) => ({
      reconnectionTime: phaseOf(key, header) === 1 ? FIRST_RETRY : SECOND_RETRY,
      heartbeat: 0,
    });
    if (runtime === "node") {
      const served = await serveNode((req, res) => {
        if (isPage(req.url ?? "")) {
          res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
          return;
        }
        const key = keyOf(req.url ?? "");
        const header = nodeHeader(req);
        const endpoint = new EventEndpoint(req, res, options(key, header));
        log.request(key, header, res.statusCode);
        if (!endpoint.closed) play(endpoint, key, header);
      });
      return { ...served, label: "ssekit EventEndpoint(req, res), node:http" };
    }
    const served = await serveFetch((request) => {
      if (isPage(request.url)) {
        return new Response(PAGE, { headers: { "content-type": "text/html" } });
      }
      const key = keyOf(request.url);
      const header = request.headers.get("last-event-id");
      const endpoint = new EventEndpoint(request, options(key, header));
      const response = endpoint.response!;
      log.request(key, header, response.status);
      if (!endpoint.closed) play(endpoint, key, header);
      return response;
    });
    return { ...served, label: `ssekit EventEndpoint(request), ${served.via}` };
  },
};

// --- peers ------------------------------------------------------------------

/** Hono's `streamSSE` on the runtime's server (on Node, via the adapter in serve.ts). */
export const honoServer: ServerKind = {
  name: "hono",
  title: "Hono streamSSE",
  async start(log) {
    const app = new Hono();
    app.get("/", (c) => {
      const key = keyOf(c.req.url);
      const header = c.req.header("last-event-id") ?? null;
      const phase = phaseOf(key, header);
      if (phase === 3) {
        log.request(key, header, 204);
        return c.body(null, 204);
      }
      log.request(key, header, 200);
      const { retry, events } = script(key, phase, header);
      return streamSSE(c, async (stream) => {
        let first = true;
        for (const e of events) {
          await stream.writeSSE({
            data: e.data,
            id: e.id,
            ...(e.event === undefined ? {} : { event: e.event }),
            // writeSSE has no retry-only message: it rides on the first event.
            ...(first ? { retry } : {}),
          });
          first = false;
        }
        // streamSSE closes the stream when this callback returns.
        if (phase === 1) queueMicrotask(() => log.firstStreamEnded(key));
      });
    });
    const served = await serveFetch((request) => app.fetch(request));
    return {
      ...served,
      label: `${versioned("hono")} streamSSE, ${served.via}`,
    };
  },
};

/** better-sse's `createSession` on `node:http`. */
export const betterSseServer: ServerKind = {
  name: "better-sse",
  title: "better-sse",
  unsupported: {
    "multi-line":
      "better-sse writes a serialized value after a single data: (its sanitizer normalizes line breaks but does not start a data: line per line), so text with line breaks cannot be sent with a raw-string serializer; its default JSON serializer escapes them instead",
  },
  async start(log) {
    const served = await serveNode(async (req, res) => {
      const key = keyOf(req.url ?? "");
      const header = nodeHeader(req);
      const phase = phaseOf(key, header);
      if (phase === 3) {
        log.request(key, header, 204);
        res.writeHead(204).end();
        return;
      }
      log.request(key, header, 200);
      const { retry, events } = script(key, phase, header);
      const session = await createSession(req, res, {
        retry,
        keepAlive: null,
        // Send strings as they are, not JSON-encoded.
        serializer: (data: unknown) => String(data),
      });
      for (const e of events) session.push(e.data, e.event ?? "message", e.id);
      res.end();
      if (phase === 1) log.firstStreamEnded(key);
    });
    return {
      ...served,
      label: `${versioned("better-sse")} createSession, node:http`,
    };
  },
};

/**
 * @ayonli/jsext's `EventEndpoint`: `(req, res)` on `node:http` under Node,
 * `(request)` on `Deno.serve` / `Bun.serve`. Phase 2 ends with
 * `close(true)`; the 204 is jsext's own.
 */
export const jsextServer: ServerKind = {
  name: "jsext",
  title: "@ayonli/jsext EventEndpoint",
  async start(log) {
    const play = (
      endpoint: JsextEventEndpoint,
      key: string,
      header: string | null,
    ) => {
      const phase = phaseOf(key, header);
      if (phase === 3) {
        endpoint.close(true);
        return;
      }
      const { events } = script(key, phase, header);
      sendAll(endpoint, events).then(() => {
        endpoint.close(phase === 2);
        if (phase === 1) log.firstStreamEnded(key);
      }, () => endpoint.close());
    };
    const options = (key: string, header: string | null) => ({
      reconnectionTime: phaseOf(key, header) === 1 ? FIRST_RETRY : SECOND_RETRY,
    });
    if (runtime === "node") {
      const served = await serveNode((req, res) => {
        const key = keyOf(req.url ?? "");
        const header = nodeHeader(req);
        const endpoint = new JsextEventEndpoint(req, res, options(key, header));
        log.request(key, header, res.statusCode);
        if (!endpoint.closed) play(endpoint, key, header);
      });
      return {
        ...served,
        label: `${
          versioned("@ayonli/jsext")
        } EventEndpoint(req, res), node:http`,
      };
    }
    const served = await serveFetch((request) => {
      const key = keyOf(request.url);
      const header = request.headers.get("last-event-id");
      const endpoint = new JsextEventEndpoint(request, options(key, header));
      const response = endpoint.response!;
      log.request(key, header, response.status);
      if (!endpoint.closed) play(endpoint, key, header);
      return response;
    });
    return {
      ...served,
      label: `${
        versioned("@ayonli/jsext")
      } EventEndpoint(request), ${served.via}`,
    };
  },
};

/** Plain `node:http` writes, as in the classic tutorials. */
export const plainNodeServer: ServerKind = {
  name: "node-http",
  title: "plain node:http",
  async start(log) {
    const served = await serveNode(
      (req: IncomingMessage, res: ServerResponse) => {
        const key = keyOf(req.url ?? "");
        const header = nodeHeader(req);
        const phase = phaseOf(key, header);
        if (phase === 3) {
          log.request(key, header, 204);
          res.writeHead(204);
          res.end();
          return;
        }
        log.request(key, header, 200);
        const { retry, events } = script(key, phase, header);
        res.writeHead(200, {
          "Content-Type": "text/event-stream",
          "Cache-Control": "no-cache",
          "Connection": "keep-alive",
        });
        res.write(`retry: ${retry}\n\n`);
        for (const e of events) {
          res.write(`id: ${e.id}\n`);
          if (e.event !== undefined) res.write(`event: ${e.event}\n`);
          for (const line of e.data.split("\n")) res.write(`data: ${line}\n`);
          res.write("\n");
        }
        res.end();
        if (phase === 1) log.firstStreamEnded(key);
      },
    );
    return { ...served, label: "plain node:http res.write()" };
  },
};

/** The peer servers, in table order. */
export const PEER_SERVERS: ServerKind[] = [
  honoServer,
  betterSseServer,
  jsextServer,
  plainNodeServer,
];
