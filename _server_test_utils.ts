/**
 * Test helpers for sse_test.ts: real servers on 127.0.0.1 for every kind of
 * server the runtime has (Deno.serve or Bun.serve, node:http, node:http2
 * h2c and over TLS, Hono), each with a `fetch` that talks to it. Not
 * published.
 *
 * @module
 */

import * as http from "node:http";
import * as http2 from "node:http2";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo, Socket } from "node:net";
import { Readable } from "node:stream";
import { Hono } from "hono";

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

/** A listening `node:http` server as a test server. */
function httpTestServer(server: http.Server, origin: string): TestServer {
  return {
    origin,
    http2: false,
    fetch: webFetch(origin),
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
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
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        streaming.delete(end); // the server aborted it
        throw error;
      }
      const { done, value } = result;
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
    return httpTestServer(server, await listenOnLoopback(server));
  },
};

/**
 * A `node:http2` server listening at `origin` as a {@linkcode TestServer},
 * closed without a GOAWAY frame: `close()` destroys the server's sockets
 * (`event` hands them over), so each session on both ends ends because its
 * socket closed. (`session.close()` and `session.destroy()` on a live socket
 * send GOAWAY, and Deno's node:http2 (2.9) can abort the whole process on one
 * with nghttp2's `find_stream_on_goaway_func: Assertion
 * 'stream->closed_next == NULL' failed`.)
 */
function http2TestServer(
  server: http2.Http2Server | http2.Http2SecureServer,
  event: "connection" | "secureConnection",
  origin: string,
  options: http2.SecureClientSessionOptions = {},
): TestServer {
  const sockets = new Set<Socket>();
  const serverSessions = new Set<http2.ServerHttp2Session>();
  const clientSessions = new Set<http2.ClientHttp2Session>();
  server.on(event, (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.on("session", (session: http2.ServerHttp2Session) => {
    serverSessions.add(session);
    session.on("close", () => serverSessions.delete(session));
  });
  return {
    origin,
    http2: true,
    fetch(path, init = {}) {
      return h2Fetch(origin, path, init, clientSessions, options);
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await waitFor(
        () =>
          sockets.size === 0 && serverSessions.size === 0 &&
          clientSessions.size === 0,
        "the HTTP/2 sessions to close",
      );
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** `node:http2` without TLS (h2c, prior knowledge), compatibility API. */
export const nodeHttp2Server: ServerKind = {
  name: "node:http2 (h2c)",
  skip: undefined,
  async start({ node }) {
    const server = http2.createServer(node);
    return http2TestServer(
      server,
      "connection",
      await listenOnLoopback(server),
    );
  },
};

/** A self-signed certificate for 127.0.0.1, made with `openssl`. */
function selfSignedCertificate(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), "ssekit-tls-"));
  try {
    execFileSync("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-keyout",
      join(dir, "key.pem"),
      "-out",
      join(dir, "cert.pem"),
    ], { stdio: "ignore" });
    return {
      key: readFileSync(join(dir, "key.pem"), "utf8"),
      cert: readFileSync(join(dir, "cert.pem"), "utf8"),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `node:http2` over TLS (ALPN h2) with a certificate made at test time. */
export const nodeHttp2TlsServer: ServerKind = {
  name: "node:http2 (TLS)",
  skip: undefined,
  async start({ node }) {
    const { key, cert } = selfSignedCertificate();
    const server = http2.createSecureServer({ key, cert }, node);
    const origin = (await listenOnLoopback(server)).replace("http:", "https:");
    return http2TestServer(server, "secureConnection", origin, { ca: cert });
  },
};

/**
 * A web handler on node:http, as Hono's node adapter serves one: the
 * request's signal aborts and the body is cancelled when the client goes
 * away; the body is written with backpressure.
 */
function webOnNode(handler: WebHandler, origin: () => string): NodeHandler {
  return async (req, res) => {
    const controller = new AbortController();
    let gone = false;
    let onGone = () => {};
    res.on("close", () => {
      gone = true;
      controller.abort();
      onGone();
    });
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (name.startsWith(":") || value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) {
        headers.append(name, v);
      }
    }
    const response = await handler(
      new Request(origin() + req.url, {
        method: req.method ?? "GET",
        headers,
        signal: controller.signal,
      }),
    );
    const head: Record<string, string | string[]> = {};
    response.headers.forEach((value, name) => {
      if (name !== "set-cookie") head[name] = value;
    });
    const cookies = response.headers.getSetCookie();
    if (cookies.length > 0) head["set-cookie"] = cookies;
    (res as http.ServerResponse).writeHead(response.status, head);
    if (!response.body) {
      res.end();
      return;
    }
    const reader = response.body.getReader();
    onGone = () => void reader.cancel().catch(() => {});
    try {
      while (!gone) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!(res as http.ServerResponse).write(value)) {
          // Whichever comes first; the other listener goes too (a stalled
          // client makes this wait many times on one response).
          await new Promise<void>((resolve) => {
            const done = () => {
              res.off("drain", done);
              res.off("close", done);
              resolve();
            };
            res.once("drain", done);
            res.once("close", done);
          });
        }
      }
      res.end();
    } catch {
      res.destroy();
    }
  };
}

/**
 * Hono (`app.fetch`) passing every request to the web handler: on
 * Deno.serve or Bun.serve, or on node:http through an adapter like
 * `@hono/node-server`.
 */
export const honoServer: ServerKind = {
  name: "Hono",
  skip: undefined,
  async start({ web, node }) {
    const app = new Hono();
    app.all("*", (c) => web(c.req.raw));
    const fetchApp = (request: Request) => app.fetch(request);
    if (runtime !== "node") return webServer.start({ web: fetchApp, node });
    let origin = "";
    const server = http.createServer(webOnNode(fetchApp, () => origin));
    origin = await listenOnLoopback(server);
    return httpTestServer(server, origin);
  },
};

/** The server kinds of the basic suites; `skip` says which this runtime cannot run. */
export const serverKinds: ServerKind[] = [
  webServer,
  nodeHttpServer,
  nodeHttp2Server,
];

/** Every server kind, with TLS HTTP/2 and Hono. */
export const allServerKinds: ServerKind[] = [
  ...serverKinds,
  nodeHttp2TlsServer,
  honoServer,
];

/** The runtime's own server: Deno.serve, Bun.serve, or node:http on Node. */
export const ownServer: ServerKind = runtime === "node"
  ? nodeHttpServer
  : webServer;

/** A `Response` read from an HTTP/2 stream, one session per request. */
function h2Fetch(
  origin: string,
  path: string,
  init: TestFetchInit,
  sessions: Set<http2.ClientHttp2Session>,
  options: http2.SecureClientSessionOptions = {},
): Promise<Response> {
  const session = http2.connect(origin, options);
  sessions.add(session);
  session.on("error", () => {});
  session.on("close", () => sessions.delete(session));
  const stream = session.request({ ":path": path, ...init.headers });
  // Aborting resets the stream (RST_STREAM), as a browser does; the session
  // stays open until the server's close() drops its socket (see
  // http2TestServer for why nothing here sends GOAWAY).
  init.signal?.addEventListener("abort", () => stream.destroy(), {
    once: true,
  });
  return new Promise((resolve, reject) => {
    stream.on("error", reject);
    stream.on("response", (head) => {
      const headers = new Headers();
      for (const [name, value] of Object.entries(head)) {
        if (name.startsWith(":") || value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) {
          headers.append(name, `${v}`);
        }
      }
      const status = Number(head[":status"]);
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
