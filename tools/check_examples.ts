/**
 * Runs every example's `// Run:` line as printed, on a fresh clone of the
 * committed HEAD after what `npm ci` does there (this checkout's
 * node_modules, linked, and the `prepare` script), with `deno`, `bun` and
 * `node` from node_modules/.bin. A server example passes when the URL it
 * names answers with an event stream and its first event (on the port in
 * `PORT`, so nothing else on 8000 matters); a client example passes when it
 * prints what a local server sends it.
 *
 * An example run with `deno` must import `@ssekit/sse` (what Deno users
 * install), one run with `node` or `bun` must import `ssekit`.
 *
 * Prints `ok …` or `FAILED …` per example; exits 1 when one failed.
 *
 * Usage: node_modules/.bin/node tools/check_examples.ts
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { runChecked } from "./_process.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = join(root, "node_modules", ".bin");
const env = {
  ...process.env,
  PATH: `${bin}:${process.env.PATH}`,
  NO_COLOR: "1",
};

/** Examples that need more than their Run line gives: why they are left out. */
const NOT_RUN: Record<string, string> = {
  "node_http2.ts":
    "needs a TLS key and certificate (examples_test.ts runs its handler)",
  "several_instances.ts":
    "needs a redis-server (several_instances_test.ts runs it on each runtime)",
};
const WAIT_MS = 20_000;

function run(command: string, args: string[], cwd: string): Promise<string> {
  return runChecked(command, args, cwd, env);
}

/** A free port on 127.0.0.1 (closed again before the example takes it). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Reads a stream until `done(text)` or the deadline; cancels it. */
async function readUntil(
  body: ReadableStream<Uint8Array>,
  done: (text: string) => boolean,
): Promise<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const timer = setTimeout(() => reader.cancel(), WAIT_MS);
  try {
    while (!done(text)) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
  return text;
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

function start(line: string, cwd: string, port: number, url?: string) {
  const [command, ...args] = line.split(/\s+/);
  const child = spawn(
    join(bin, command!),
    url
      ? args.map((a) =>
        a.startsWith("http://localhost:8000")
          ? a.replace("http://localhost:8000", url)
          : a
      )
      : args,
    {
      cwd,
      env: { ...env, PORT: String(port) },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk));
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk));
  return { child, output: () => output };
}

/** A server example: its URL, on PORT, answers with an event stream and an event. */
async function serverExample(
  line: string,
  url: string,
  cwd: string,
): Promise<string> {
  const port = await freePort();
  const { child, output } = start(line, cwd, port);
  try {
    const target = url.replace(":8000", `:${port}`);
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      if (child.exitCode !== null) {
        throw new Error(`exited ${child.exitCode}:\n${output()}`);
      }
      try {
        const response = await fetch(target);
        const type = response.headers.get("content-type") ?? "";
        if (!type.startsWith("text/event-stream")) {
          throw new Error(`${target}: ${response.status} ${type}`);
        }
        const text = await readUntil(response.body!, (t) => /^data:/m.test(t));
        const data = text.match(/^data: ?(.*)$/m)?.[1];
        if (data === undefined) {
          throw new Error(`no event from ${target}: ${JSON.stringify(text)}`);
        }
        return `${target.replace(`:${port}`, ":PORT")} sent ${
          JSON.stringify(data)
        }`;
      } catch (error) {
        if (
          (error as Error).message.startsWith("no event") ||
          Date.now() > deadline
        ) throw error;
        if (
          !String((error as { cause?: { code?: string } }).cause?.code)
            .startsWith("ECONNREFUSED")
        ) {
          if (!(error as Error).message.includes("fetch failed")) throw error;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } finally {
    await stop(child);
  }
}

/** A client example, pointed at a local server: it must print what it got. */
async function clientExample(line: string, cwd: string): Promise<string> {
  const server = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    if (req.url === "/v1/completions") {
      for (const token of ["Hel", "lo"]) {
        res.write(`data: ${JSON.stringify({ token })}\n\n`);
      }
      res.end("data: [DONE]\n\n");
    } else {
      res.end("retry: 60000\nid: 7\ndata: hi\n\n");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { child, output } = start(line, cwd, 0, origin);
  try {
    const wanted = line.includes("llm_stream") ? "Hello" : "7 hi";
    const deadline = Date.now() + WAIT_MS;
    while (!output().includes(wanted)) {
      if (
        Date.now() > deadline ||
        (child.exitCode !== null && !output().includes(wanted))
      ) {
        throw new Error(
          `expected ${JSON.stringify(wanted)} in the output:\n${output()}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return `printed ${JSON.stringify(output().trim().replaceAll("\n", " | "))}`;
  } finally {
    await stop(child);
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

const dir = mkdtempSync(join(tmpdir(), "ssekit-examples-"));
const clone = join(dir, "ssekit");
let passed = 0;
let failed = 0;
try {
  await run("git", [
    "clone",
    "--quiet",
    "--depth",
    "1",
    pathToFileURL(root).href,
    clone,
  ], dir);
  symlinkSync(join(root, "node_modules"), join(clone, "node_modules"), "dir");
  // What `npm ci` runs after installing: the prepare script, if any.
  const scripts =
    JSON.parse(readFileSync(join(clone, "package.json"), "utf8")).scripts ?? {};
  if (scripts.prepare) await run("npm", ["run", "prepare"], clone);
  for (const name of readdirSync(join(clone, "examples")).sort()) {
    if (!name.endsWith(".ts") || name.endsWith("_test.ts")) continue;
    const text = readFileSync(join(clone, "examples", name), "utf8");
    const match = text.match(/^\/\/ Run: (.+?)(?:, then open (\S+).*)?$/m);
    if (NOT_RUN[name]) {
      console.log(`skip ${name}: ${NOT_RUN[name]}`);
      continue;
    }
    if (!match) {
      failed++;
      console.log(`FAILED ${name}: no "// Run:" line`);
      continue;
    }
    const [, line, url] = match;
    // The name this runtime's users install: @ssekit/sse on Deno (JSR),
    // ssekit on Node and Bun (npm).
    const names = [...text.matchAll(/from "((?:@ssekit\/sse|ssekit)[^"]*)"/g)]
      .map((m) => m[1]!);
    const wrong = names.filter((n) =>
      line!.startsWith("deno ")
        ? !n.startsWith("@ssekit/sse")
        : n.startsWith("@ssekit/")
    );
    if (wrong.length) {
      failed++;
      console.log(
        `FAILED ${name}: "${line}" but it imports ${wrong.join(", ")}: ` +
          (line!.startsWith("deno ")
            ? "Deno users install @ssekit/sse"
            : "npm users install ssekit"),
      );
      continue;
    }
    try {
      const detail = url
        ? await serverExample(line!, url, clone)
        : await clientExample(line!, clone);
      passed++;
      console.log(`ok ${name}: ${line} → ${detail}`);
    } catch (error) {
      failed++;
      console.log(
        `FAILED ${name}: ${line}: ${(error as Error).message.slice(0, 2000)}`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`examples as printed: ${passed} passed, ${failed} failed`);
process.exit(failed || !passed ? 1 : 0);
