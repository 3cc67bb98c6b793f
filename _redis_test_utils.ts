/**
 * A real `redis-server` for tests: one per test file, on a free port on
 * 127.0.0.1, without persistence, killed by its pid at the end. When the
 * binary is missing, tests skip, except under `CI=true`, where they fail.
 * Not published.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import * as net from "node:net";
import process from "node:process";
import { Buffer } from "node:buffer";

export const REDIS_SERVER = process.env.REDIS_SERVER ?? "/usr/bin/redis-server";

/** Why Redis tests cannot run here, or `undefined` when they can. */
export function redisMissing(): string | undefined {
  if (existsSync(REDIS_SERVER)) return undefined;
  const why = `${REDIS_SERVER} not found (apt-get install -y redis-server)`;
  if (process.env.CI === "true") throw new Error(`Redis tests need ${why}`);
  return why;
}

/** A running redis-server. */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Sends one command on a fresh connection and returns the raw reply. */
  raw(...args: string[]): Promise<string>;
  /** Kills the server (SIGKILL by pid) and starts an empty one on the same port. */
  restartEmpty(): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Where the RESP value at `at` ends, or -1 when it is incomplete. */
function respEnd(text: string, at: number): number {
  const line = text.indexOf("\r\n", at);
  if (line < 0) return -1;
  const type = text[at];
  const n = Number(text.slice(at + 1, line));
  let end = line + 2;
  if (type === "$" || type === "=" || type === "!") {
    if (n < 0) return end;
    end += n + 2;
    return end <= text.length ? end : -1;
  }
  if (type === "*" || type === ">" || type === "~" || type === "%") {
    const count = type === "%" ? 2 * n : n;
    for (let i = 0; i < count; i++) {
      end = respEnd(text, end);
      if (end < 0) return -1;
    }
    return end;
  }
  return end; // +, -, :, _ and the like: one line
}

function raw(port: number, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    let reply = "";
    socket.on("error", reject);
    socket.on("data", (chunk) => {
      reply += chunk.toString("latin1");
      if (respEnd(reply, 0) === reply.length) {
        socket.destroy();
        resolve(reply);
      }
    });
    let text = `*${args.length}\r\n`;
    for (const a of args) text += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
    socket.write(text);
  });
}

function launch(port: number) {
  const child = spawn(REDIS_SERVER, [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
  ], { stdio: "ignore" });

  return child;
}

async function waitUp(port: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    try {
      if ((await raw(port, ["PING"])).startsWith("+PONG")) return;
    } catch { /* not yet */ }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`redis-server on port ${port} did not answer PING in 5 s`);
}

async function kill(child: ReturnType<typeof spawn>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  process.kill(child.pid!, "SIGKILL");
  await exited;
}

/** Starts a redis-server on a free port of 127.0.0.1. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let child = launch(port);
  await waitUp(port);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    raw: (...args) => raw(port, args),
    async restartEmpty() {
      await kill(child);
      child = launch(port);
      await waitUp(port);
    },
    stop: () => kill(child),
  };
}
