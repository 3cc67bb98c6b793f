/**
 * Test helpers for sse_test.ts: real servers on 127.0.0.1 for every kind of
 * server the runtime has (Deno.serve or Bun.serve, node:http, node:http2
 * h2c), each with a `fetch` that talks to it. Not published.
 *
 * @module
 */

import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";

/** A node request handler for both node:http and node:http2 (compat API). */
export type NodeHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/** A web request handler. */
export type WebHandler = (request: Request) => Response | Promise<Response>;

/** Options of {@linkcode TestServer.fetch}. */
export interface TestFetchInit {
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** A running server and a client for it. */
export interface TestServer {
  /** `http://127.0.0.1:port` */
  readonly origin: string;
  /** Whether requests arrive as HTTP/2. */
  readonly http2: boolean;
  /** Requests `path` from the server; the body streams with backpressure. */
  fetch(path: string, init?: TestFetchInit): Promise<Response>;
  /** Stops the server and drops every connection. */
  close(): Promise<void>;
}

/** A kind of server, started with the handler shape it takes. */
export interface ServerKind {
  readonly name: string;
  /** Why this runtime cannot run it, or `undefined`. */
  readonly skip: string | undefined;
  start(handlers: { web: WebHandler; node: NodeHandler }): Promise<TestServer>;
}

interface DenoServer {
  addr: { port: number };
  shutdown(): Promise<void>;
}
interface DenoLike {
  serve(
    options: { port: number; hostname: string; onListen(): void },
    handler: WebHandler,
  ): DenoServer;
}
interface BunServer {
  port: number;
  stop(force: boolean): Promise<void> | void;
}
interface BunLike {
  serve(options: {
    port: number;
    hostname: string;
    fetch: WebHandler;
  }): BunServer;
}

const g = globalThis as { Deno?: DenoLike; Bun?: BunLike };

/** `"deno"`, `"bun"` or `"node"`. */
export const runtime: "deno" | "bun" | "node" = g.Deno
  ? "deno"
  : g.Bun
  ? "bun"
  : "node";

function webFetch(origin: string) {
  return (path: string, init: TestFetchInit = {}): Promise<Response> =>
    fetch(origin + path, init);
}

/**
 * The same response, with a body that pulls from the original one chunk at a
 * time (backpressure unchanged) and that `streaming`'s function ends.
 */
function endable(response: Response, streaming: Set<() => void>): Response {
  if (!response.body) return response;
  const reader = response.body.getReader();
  let end = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      end = () => {
        streaming.delete(end);
        try {
          controller.close();
        } catch {
          // Already closed or cancelled.
        }
        reader.cancel(new Error("the test server closed")).catch(() => {});
      };
      streaming.add(end);
    },
    async pull(controller) {
      const { done, value } = await reader.read();
      if (!streaming.has(end)) return;
      if (done) {
        streaming.delete(end);
        controller.close();
      } else controller.enqueue(value);
    },
    cancel(reason) {
      streaming.delete(end);
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  return new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/** `Deno.serve` on Deno, `Bun.serve` (default options) on Bun. */
export const webServer: ServerKind = {
  name: runtime === "bun" ? "Bun.serve" : "Deno.serve",
  skip: runtime === "node"
    ? "Node has neither Deno.serve nor Bun.serve"
    : undefined,
  start({ web }) {
    if (g.Deno) {
      // Deno's shutdown() waits for every response to finish; an event stream
      // never does, so close() ends the bodies still streaming first.
      const streaming = new Set<() => void>();
      const server = g.Deno.serve(
        { port: 0, hostname: "127.0.0.1", onListen() {} },
        async (request) => endable(await web(request), streaming),
      );
      const origin = `http://127.0.0.1:${server.addr.port}`;
      return Promise.resolve({
        origin,
        http2: false,
        fetch: webFetch(origin),
        async close() {
          for (const end of streaming) end();
          await server.shutdown();
        },
      });
    }
    const server = g.Bun!.serve({ port: 0, hostname: "127.0.0.1", fetch: web });
    const origin = `http://127.0.0.1:${server.port}`;
    return Promise.resolve({
      origin,
      http2: false,
      fetch: webFetch(origin),
      async close() {
        await server.stop(true);
      },
    });
  },
};

/** `node:http` (the runtime's own implementation or compat layer). */
export const nodeHttpServer: ServerKind = {
  name: "node:http",
  skip: undefined,
  async start({ node }) {
    const server = http.createServer(node);
    const origin = await listenOnLoopback(server);
    return {
      origin,
      http2: false,
      fetch: webFetch(origin),
      async close() {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      },
    };
  },
};

/** `node:http2` without TLS (h2c, prior knowledge), compatibility API. */
export const nodeHttp2Server: ServerKind = {
  name: "node:http2 (h2c)",
  skip: undefined,
  async start({ node }) {
    const server = http2.createServer(node);
    const serverSessions = new Set<http2.ServerHttp2Session>();
    server.on("session", (session) => {
      serverSessions.add(session);
      session.on("close", () => serverSessions.delete(session));
    });
    const origin = await listenOnLoopback(server);
    const clientSessions = new Set<http2.ClientHttp2Session>();
    return {
      origin,
      http2: true,
      fetch(path, init = {}) {
        return h2Fetch(origin, path, init, clientSessions);
      },
      async close() {
        for (const session of clientSessions) session.destroy();
        for (const session of serverSessions) session.destroy();
        await new Promise((resolve) => server.close(resolve));
      },
    };
  },
};

/** Every server kind; `skip` says which this runtime cannot run. */
export const serverKinds: ServerKind[] = [
  webServer,
  nodeHttpServer,
  nodeHttp2Server,
];

/** A `Response` read from an HTTP/2 stream, one session per request. */
function h2Fetch(
  origin: string,
  path: string,
  init: TestFetchInit,
  sessions: Set<http2.ClientHttp2Session>,
): Promise<Response> {
  const session = http2.connect(origin);
  sessions.add(session);
  session.on("error", () => {});
  session.on("close", () => sessions.delete(session));
  const stream = session.request({ ":path": path, ...init.headers });
  const done = () => {
    stream.destroy();
    session.close();
  };
  init.signal?.addEventListener("abort", done, { once: true });
  return new Promise((resolve, reject) => {
    stream.on("error", reject);
    stream.on("response", (head) => {
      const headers = new Headers();
      for (const [name, value] of Object.entries(head)) {
        if (name.startsWith(":") || value === undefined) continue;
        headers.set(name, Array.isArray(value) ? value.join(", ") : `${value}`);
      }
      const status = Number(head[":status"]);
      stream.on("close", () => session.close());
      if (status === 204) {
        stream.resume();
        resolve(new Response(null, { status, headers }));
        return;
      }
      const body = Readable.toWeb(stream) as ReadableStream<Uint8Array>;
      resolve(new Response(body, { status, headers }));
    });
  });
}

/** A `node:http` or `node:http2` server, as far as listening goes. */
interface Listenable {
  listen(port: number, host: string, listener: () => void): unknown;
  address(): AddressInfo | string | null;
}

/** Starts `server` on a free port of 127.0.0.1 and returns its origin. */
export async function listenOnLoopback(server: Listenable): Promise<string> {
  await new Promise<void>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve())
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Polls `condition` every 10 ms, at most `attempts` times. */
export async function waitFor(
  condition: () => boolean,
  what: string,
  attempts = 1000,
): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`Timed out waiting for ${what}`);
}
