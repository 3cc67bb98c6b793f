/**
 * Every install route the README gives for today, tried as a new user would:
 * from an empty project in a temporary directory, on the runtime it names.
 *
 * - `npm pack`, then `npm install` of the tarball: `import` and `require()` on
 *   Node 24; `bun add` of the tarball on Bun.
 * - Straight from the git repository: `npm install git+file://…` (npm runs the
 *   package's `prepare` build in its own clone).
 * - Deno: an import map entry `"@ssekit/sse": "<clone>/mod.ts"`.
 * - Vendoring: `sse.ts` alone, and `client.ts` alone, copied into a project
 *   and run on Node, Deno and Bun.
 * - `npm publish --dry-run` (`deno publish --dry-run` is one of npm test's
 *   checks already).
 *
 * The git route installs what is committed (HEAD), as a user gets it.
 * Prints `ok …` or `FAILED …` per route; exits 1 when one failed.
 *
 * Usage: node_modules/.bin/node tools/check_install.ts [--skip-git]
 *
 * @module
 */

import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { runChecked } from "./_process.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = join(root, "node_modules", ".bin");
const NODE = join(bin, "node");
const DENO = join(bin, "deno");
const BUN = join(bin, "bun");
// npm and the scripts it runs find the project's Node 24 first.
const env = {
  ...process.env,
  PATH: `${bin}:${process.env.PATH}`,
  NO_COLOR: "1",
  npm_config_audit: "false",
  npm_config_fund: "false",
  npm_config_update_notifier: "false",
};

/** Runs a command; rejects with its output when it exits non-zero. */
function run(command: string, args: string[], cwd: string): Promise<string> {
  return runChecked(command, args, cwd, env);
}

function project(dir: string, files: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

// A server and a client on 127.0.0.1 through the installed package: each
// program prints `got hello` once its client has read the server's event.
const SERVER_AND_CLIENT = `
import { createServer } from "node:http";
const server = createServer((req, res) => {
  const endpoint = new EventEndpoint(req, res);
  endpoint.send("hello");
});
server.listen(0, "127.0.0.1", async () => {
  const { port } = server.address();
  const consumer = new EventConsumer(await fetch(\`http://127.0.0.1:\${port}/\`));
  for await (const event of consumer) {
    console.log("got", event.data);
    break;
  }
  server.closeAllConnections();
  server.close();
});
`;

const DENO_PROGRAM = `
import { EventConsumer, EventEndpoint } from "@ssekit/sse";
const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
  const endpoint = new EventEndpoint(request);
  endpoint.send("hello");
  return endpoint.response!;
});
const consumer = new EventConsumer(await fetch(\`http://127.0.0.1:\${server.addr.port}/\`));
for await (const event of consumer) {
  console.log("got", event.data);
  break;
}
await server.shutdown();
`;

// sse.ts alone: a server whose stream is read with plain fetch.
const VENDORED_SSE = `
import { EventEndpoint } from "./sse.ts";
import { createServer } from "node:http";
const server = createServer((req, res) => {
  new EventEndpoint(req, res).send("hello");
});
server.listen(0, "127.0.0.1", async () => {
  const { port } = server.address() as { port: number };
  const reader = (await fetch(\`http://127.0.0.1:\${port}/\`)).body!.getReader();
  let text = "";
  while (!text.includes("hello")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  console.log("got", text);
  await reader.cancel();
  server.closeAllConnections();
  server.close();
});
`;

// client.ts alone: a consumer over a Response.
const VENDORED_CLIENT = `
import { EventConsumer } from "./client.ts";
const response = new Response("data: hello\\n\\n", {
  headers: { "content-type": "text/event-stream" },
});
for await (const event of new EventConsumer(response)) {
  console.log("got", event.data);
}
`;

function expectOutput(output: string, wanted: string | RegExp): void {
  if (
    typeof wanted === "string" ? !output.includes(wanted) : !wanted.test(output)
  ) {
    throw new Error(`expected ${wanted} in the output:\n${output}`);
  }
}

const routes: [string, (dir: string) => Promise<string>][] = [];
let tarball = "";

routes.push(["npm pack", async (dir) => {
  const output = await run("npm", ["pack", "--pack-destination", dir], root);
  const name = output.trim().split("\n").at(-1)!;
  tarball = join(dir, name);
  return name;
}]);

routes.push([
  "Node 24: npm install <tarball>, then import and require()",
  async (dir) => {
    const app = project(join(dir, "node-app"), {
      "package.json": JSON.stringify({
        name: "app",
        private: true,
        type: "module",
      }),
      "main.js":
        `import { EventConsumer, EventEndpoint } from "ssekit";\n${SERVER_AND_CLIENT}`,
      "main.cjs":
        `const { EventEndpoint, EventConsumer, EventChannel } = require("ssekit");\n` +
        `const { encodeServerSentEvent } = require("ssekit/server");\n` +
        `console.log("require", typeof EventEndpoint, typeof EventConsumer, typeof EventChannel,` +
        ` JSON.stringify(encodeServerSentEvent({ data: "hi" })));\n`,
    });
    await run("npm", ["install", tarball], app);
    const imported = await run(NODE, ["main.js"], app);
    expectOutput(imported, "got hello");
    const required = await run(NODE, ["main.cjs"], app);
    expectOutput(
      required,
      /require function function function "data: ?hi\\n\\n"/,
    );
    return `${imported.trim()}; ${required.trim()}`;
  },
]);

routes.push(["Bun: bun add <tarball>", async (dir) => {
  const app = project(join(dir, "bun-app"), {
    "package.json": JSON.stringify({
      name: "app",
      private: true,
      type: "module",
    }),
    "main.ts":
      `import { EventConsumer, EventEndpoint } from "ssekit";\n${SERVER_AND_CLIENT}`,
  });
  await run(BUN, ["add", tarball], app);
  const output = await run(BUN, ["main.ts"], app);
  expectOutput(output, "got hello");
  return output.trim();
}]);

let clone = "";
routes.push(["git clone (the committed HEAD)", async (dir) => {
  clone = join(dir, "ssekit");
  await run("git", [
    "clone",
    "--quiet",
    "--depth",
    "1",
    pathToFileURL(root).href,
    clone,
  ], dir);
  return clone;
}]);

routes.push(["Deno: an import map entry for @ssekit/sse", async (dir) => {
  const app = project(join(dir, "deno-app"), {
    "deno.json": JSON.stringify({
      imports: { "@ssekit/sse": "../ssekit/mod.ts" },
    }),
    "main.ts": DENO_PROGRAM,
  });
  const output = await run(DENO, ["run", "-A", "main.ts"], app);
  expectOutput(output, "got hello");
  return output.trim();
}]);

const VENDORED: [file: string, main: string, expected: string | RegExp][] = [
  ["sse.ts", VENDORED_SSE, /^data: ?hello$/m],
  ["client.ts", VENDORED_CLIENT, "got hello"],
];
for (const [file, main, expected] of VENDORED) {
  for (const runtime of ["node", "deno", "bun"] as const) {
    routes.push([`vendoring ${file} alone, on ${runtime}`, async (dir) => {
      const app = project(join(dir, `vendor-${file}-${runtime}`), {
        "main.ts": main,
      });
      copyFileSync(join(root, file), join(app, file));
      const output = await run(
        runtime === "node" ? NODE : runtime === "deno" ? DENO : BUN,
        runtime === "deno" ? ["run", "-A", "main.ts"] : ["main.ts"],
        app,
      );
      expectOutput(output, expected);
      return output.trim();
    }]);
  }
}

routes.push(["npm publish --dry-run", async () => {
  const output = await run("npm", ["publish", "--dry-run"], root);
  expectOutput(output, "ssekit@");
  return output.trim().split("\n").at(-1)!;
}]);

if (!process.argv.includes("--skip-git")) {
  routes.push(["Node 24: npm install git+file://<repository>", async (dir) => {
    const app = project(join(dir, "git-app"), {
      "package.json": JSON.stringify({
        name: "app",
        private: true,
        type: "module",
      }),
      "main.js":
        `import { EventConsumer, EventEndpoint } from "ssekit";\n${SERVER_AND_CLIENT}`,
    });
    await run("npm", ["install", `git+${pathToFileURL(root).href}`], app);
    const output = await run(NODE, ["main.js"], app);
    expectOutput(output, "got hello");
    return output.trim();
  }]);
}

const dir = mkdtempSync(join(tmpdir(), "ssekit-install-"));
let failed = 0;
try {
  for (const [name, route] of routes) {
    const started = Date.now();
    try {
      const detail = await route(dir);
      console.log(`ok ${name} (${Date.now() - started} ms): ${detail}`);
    } catch (error) {
      failed++;
      console.log(`FAILED ${name}: ${(error as Error).message}`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(
  `install routes: ${routes.length - failed} passed, ${failed} failed`,
);
process.exit(failed ? 1 : 0);
