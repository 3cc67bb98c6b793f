/**
 * Servers on 127.0.0.1 for the interop matrix, on whatever runtime runs it:
 * a fetch handler on `Deno.serve`, `Bun.serve`, or (on Node) `node:http`
 * through a small fetch adapter; and a plain `node:http` listener on all
 * three (Deno and Bun implement `node:http`).
 *
 * @module
 */

import {
  createServer,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { Readable } from "node:stream";
import { readFileSync } from "node:fs";
import process from "node:process";

/** A running server. */
export interface Served {
  /** `http://127.0.0.1:PORT/` */
  url: string;
  /** Which server it is, for the report. */
  via: string;
  /** Stops it and closes every connection. */
  close(): Promise<void>;
}

/** A fetch-style request handler. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** The runtime running this code. */
export const runtime: "deno" | "bun" | "node" = "Deno" in globalThis
  ? "deno"
  : "Bun" in globalThis
  ? "bun"
  : "node";

const devDependencies: Record<string, string> = JSON.parse(
  readFileSync(new URL("../package.json", import.meta.url), "utf8"),
).devDependencies;

/** `name version` of a dev dependency, for labels. */
export function versioned(name: string): string {
  return `${name} ${devDependencies[name] ?? "?"}`;
}

/** The runtime running this code, with its version. */
export function hostRuntime(): string {
  const g = globalThis as {
    Deno?: { version: { deno: string } };
    Bun?: { version: string };
  };
  if (g.Deno) return `Deno ${g.Deno.version.deno}`;
  if (g.Bun) return `Bun ${g.Bun.version}`;
  return `Node ${process.versions.node}`;
}

interface DenoServer {
  readonly addr: { port: number };
  readonly finished: Promise<void>;
  shutdown(): Promise<void>;
}
interface DenoLike {
  serve(
    options: {
      hostname: string;
      port: number;
      onListen?: () => void;
    },
    handler: FetchHandler,
  ): DenoServer;
}
interface BunServer {
  readonly port: number;
  stop(closeActiveConnections?: boolean): Promise<void> | void;
}
interface BunLike {
  serve(options: {
    hostname: string;
    port: number;
    idleTimeout?: number;
    fetch: FetchHandler;
  }): BunServer;
}

/** Serves a fetch handler with the runtime's own server. */
export async function serveFetch(handler: FetchHandler): Promise<Served> {
  if (runtime === "deno") {
    const Deno = (globalThis as unknown as { Deno: DenoLike }).Deno;
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      handler,
    );
    return {
      url: `http://127.0.0.1:${server.addr.port}/`,
      via: "Deno.serve",
      async close() {
        await server.shutdown();
        await server.finished;
      },
    };
  }
  if (runtime === "bun") {
    const Bun = (globalThis as unknown as { Bun: BunLike }).Bun;
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      // Streams idle through the reconnection delay must not be cut.
      idleTimeout: 30,
      fetch: handler,
    });
    return {
      url: `http://127.0.0.1:${server.port}/`,
      via: "Bun.serve",
      async close() {
        await server.stop(true);
      },
    };
  }
  const served = await serveNode((req, res) => {
    nodeToFetch(req, res, handler);
  });
  return { ...served, via: "node:http + fetch adapter" };
}

/** Serves a `node:http` listener on 127.0.0.1. */
export function serveNode(
  listener: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<Served> {
  const server = createServer(listener);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      resolve({
        url: `http://127.0.0.1:${port}/`,
        via: "node:http",
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

/**
 * Runs a fetch handler for a `node:http` request: the request becomes a
 * `Request` whose `signal` aborts when the client goes away, the response's
 * body is streamed chunk by chunk (respecting `drain`), and is cancelled if
 * the client goes away first.
 */
export async function nodeToFetch(
  req: IncomingMessage,
  res: ServerResponse,
  handler: FetchHandler,
): Promise<void> {
  const abort = new AbortController();
  res.once("close", () => abort.abort());
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === "string") headers.set(name, value);
    else if (Array.isArray(value)) {
      for (const v of value) headers.append(name, v);
    }
  }
  const method = req.method ?? "GET";
  const hasBody = method !== "GET" && method !== "HEAD";
  const request = new Request(
    new URL(req.url ?? "/", `http://${req.headers.host ?? "127.0.0.1"}`),
    {
      method,
      headers,
      signal: abort.signal,
      ...(hasBody
        ? {
          body: Readable.toWeb(req) as ReadableStream<Uint8Array>,
          duplex: "half",
        }
        : {}),
    } as RequestInit,
  );
  let response: Response;
  try {
    response = await handler(request);
  } catch (error) {
    res.writeHead(500, { "content-type": "text/plain" });
    res.end(String(error));
    return;
  }
  const head: Record<string, string> = {};
  response.headers.forEach((value, name) => (head[name] = value));
  res.writeHead(response.status, head);
  if (!response.body) {
    res.end();
    return;
  }
  res.flushHeaders();
  const reader = response.body.getReader();
  const cancel = () => reader.cancel().catch(() => {});
  res.once("close", cancel);
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) {
        await new Promise<void>((resolve) => {
          res.once("drain", resolve);
          res.once("close", resolve);
        });
      }
      if (res.destroyed) return;
    }
    res.end();
  } catch {
    res.destroy();
  } finally {
    res.off("close", cancel);
  }
}
