/**
 * The published types as each kind of project compiles them, with
 * `skipLibCheck: false`: a consumer file importing `ssekit` from
 * `node_modules` (package.json and the built `dist/`: run `npm run build`
 * first) under
 *
 * - `dom`: a browser project (`lib: ["ES2022", "DOM", "DOM.Iterable"]`);
 * - `node`: a Node project without the DOM lib (`lib: ["ES2022"]`,
 *   `types: ["node"]`);
 * - `bun`: a Bun project as `bun init` sets it up (`lib: ["ESNext"]`,
 *   `types: ["bun"]`);
 * - `deno`: `deno check` of the same consumer (Deno's own lib; a Deno project
 *   that uses the npm package rather than the sources).
 *
 * The consumer also checks that wrong options are rejected (`headers: 42`), so
 * types that silently widen to `any` fail too.
 *
 * Known gaps, kept in `tools/type_gaps.json` (`{ "node": ["TS2304 ErrorEvent",
 * …] }`: the error code and the first quoted name of each message), are
 * reported but do not fail; a listed gap that no longer occurs fails, so the
 * list only shrinks. Exits 1 on any other error.
 *
 * Usage: node_modules/.bin/node tools/check_types.ts
 *
 * @module
 */

import { spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = join(root, "node_modules", ".bin");

const gaps = JSON.parse(
  readFileSync(join(root, "tools", "type_gaps.json"), "utf8"),
) as Record<string, string[]>;

function run(
  command: string,
  args: string[],
  cwd: string,
): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd,
      env: { ...process.env, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk));
    child.on("close", (code) => resolve({ code: code ?? 1, output }));
  });
}

const dist = join(root, "dist");
const CONSUMER = `
import {
  encodeServerSentEvent,
  EventChannel,
  EventConsumer,
  EventEndpoint,
  EventSource,
  MemoryHistoryStore,
  type ServerSentEventMessage,
} from "ssekit";

export function handler(request: Request): Response {
  const endpoint = new EventEndpoint(request, { heartbeat: 5000 });
  void endpoint.send("hello");
  void endpoint.sendEvent("time", new Date().toISOString(), "1");
  endpoint.addEventListener("close", () => {});
  return endpoint.response!;
}

export const message: ServerSentEventMessage = { event: "x", data: "y", id: "1" };
export const encoded: string = encodeServerSentEvent(message);
export const channel: EventChannel = new EventChannel({
  history: new MemoryHistoryStore({ maxCount: 10 }),
});

export async function read(response: Response): Promise<string[]> {
  const seen: string[] = [];
  for await (const event of new EventConsumer(response)) seen.push(event.data);
  return seen;
}

export function follow(url: string): EventSource {
  const source = new EventSource(url, {
    method: "POST",
    headers: { Authorization: "Bearer x" },
    body: "{}",
  });
  source.onmessage = (event) => console.log(event.data);
  source.onerror = () => source.close();
  return source;
}

// Wrong types must be errors, not silently accepted:
// @ts-expect-error headers must be a HeadersInit, not a number
new EventSource("/x", { headers: 42 });
// @ts-expect-error heartbeat must be a number
new EventEndpoint(new Request("http://x/"), { heartbeat: "often" });
// @ts-expect-error EventEndpoint headers must be a HeadersInit, not a number
new EventEndpoint(new Request("http://x/"), { headers: 42 });
export const endpointHeaders = [
  new EventEndpoint(new Request("http://x/"), { headers: new Headers() }),
  new EventEndpoint(new Request("http://x/"), { headers: [["a", "b"]] }),
  new EventEndpoint(new Request("http://x/"), { headers: { a: "b" } }),
];
export function listen(endpoint: EventEndpoint): void {
  const listener = { handleEvent(_event: Event): void {} };
  endpoint.addEventListener("message", listener, { once: true });
  endpoint.removeEventListener("message", listener, { capture: false });
  // @ts-expect-error a listener is a function or an object with handleEvent
  endpoint.addEventListener("message", 42);
}
`;

interface Setup {
  name: string;
  compilerOptions?: Record<string, unknown>;
  deno?: true;
}

const setups: Setup[] = [
  {
    name: "dom",
    compilerOptions: { lib: ["ES2022", "DOM", "DOM.Iterable"], types: [] },
  },
  { name: "node", compilerOptions: { lib: ["ES2022"], types: ["node"] } },
  { name: "bun", compilerOptions: { lib: ["ESNext"], types: ["bun"] } },
  { name: "deno", deno: true },
];

/**
 * `client.d.ts: TS2304 ErrorEvent` for
 * "…/dist/client.d.ts(301,76): error TS2304: Cannot find name 'ErrorEvent'."
 * Errors inside other packages' types (e.g. bun-types against this
 * @types/node) are not ssekit's: they come back in `elsewhere`.
 */
function errorsOf(output: string): { ours: string[]; elsewhere: number } {
  const ours = new Set<string>();
  let elsewhere = 0;
  // tsc: "file(1,2): error TS2304: …"; deno: "TS2304 [ERROR]: …\n  at file:…"
  const pattern =
    /^(?:(.+?)\(\d+,\d+\): error (TS\d+): (.*)|(TS\d+) \[ERROR\]: (.*)\n[\s\S]*?\n\s+at (\S+?):\d+:\d+)$/gm;
  for (const m of output.matchAll(pattern)) {
    const file = (m[1] ?? m[6])!;
    const code = (m[2] ?? m[4])!;
    const text = (m[3] ?? m[5])!;
    const base = file.slice(file.lastIndexOf("/") + 1);
    if (!/node_modules\/ssekit\/dist\//.test(file) && base !== "consumer.ts") {
      elsewhere++;
      continue;
    }
    ours.add(`${base}: ${code} ${text.match(/'([^']+)'/)?.[1] ?? text.trim()}`);
  }
  return { ours: [...ours].sort(), elsewhere };
}

if (!existsSync(join(dist, "mod.d.ts"))) {
  console.log("FAILED: no dist/mod.d.ts: run `npm run build` first");
  process.exit(1);
}

let failed = 0;
const dir = mkdtempSync(join(tmpdir(), "ssekit-types-"));
try {
  for (const setup of setups) {
    const project = join(dir, setup.name);
    mkdirSync(project);
    writeFileSync(join(project, "consumer.ts"), CONSUMER);
    // The package as installed: package.json and dist/ in node_modules/ssekit.
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({
        name: "consumer",
        private: true,
        type: "module",
        dependencies: { ssekit: "*" },
      }),
    );
    const installed = join(project, "node_modules", "ssekit");
    mkdirSync(installed, { recursive: true });
    cpSync(join(root, "package.json"), join(installed, "package.json"));
    cpSync(dist, join(installed, "dist"), { recursive: true });
    let result;
    if (setup.deno) {
      writeFileSync(
        join(project, "deno.json"),
        JSON.stringify({
          nodeModulesDir: "manual",
          compilerOptions: { strict: true, skipLibCheck: false },
        }),
      );
      result = await run(join(bin, "deno"), ["check", "consumer.ts"], project);
    } else {
      writeFileSync(
        join(project, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            target: "ES2022",
            module: "NodeNext",
            moduleResolution: "NodeNext",
            strict: true,
            noEmit: true,
            skipLibCheck: false,
            // The project's own @types (node, bun) serve every setup.
            typeRoots: [join(root, "node_modules", "@types")],
            ...setup.compilerOptions,
          },
          files: ["consumer.ts"],
        }),
      );
      result = await run(join(bin, "tsc"), ["-p", "."], project);
    }
    const { ours: errors, elsewhere } = result.code === 0
      ? { ours: [], elsewhere: 0 }
      : errorsOf(result.output);
    if (result.code !== 0 && errors.length === 0 && elsewhere === 0) {
      errors.push(result.output.trim());
    }
    if (elsewhere) {
      console.log(
        `  (${setup.name}: ${elsewhere} errors inside other packages' types, not counted)`,
      );
    }
    const known = gaps[setup.name] ?? [];
    const unexpected = errors.filter((e) => !known.includes(e));
    const gone = known.filter((e) => !errors.includes(e));
    if (unexpected.length === 0 && gone.length === 0) {
      console.log(
        `ok types: ${setup.name}` +
          (known.length
            ? ` (known gaps in tools/type_gaps.json: ${known.join(", ")})`
            : ""),
      );
    } else {
      failed++;
      console.log(`FAILED types: ${setup.name}`);
      if (unexpected.length) console.log(`  errors: ${unexpected.join(", ")}`);
      if (gone.length) {
        console.log(
          `  fixed, remove from tools/type_gaps.json: ${gone.join(", ")}`,
        );
      }
      console.log(result.output.trim().split("\n").slice(0, 40).join("\n"));
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`types: ${setups.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
