/**
 * Runs the interop matrix on the runtime running this code, every pair at
 * once (each pair's conversation waits `FIRST_RETRY` ms for a reconnection,
 * so running them in turn would take minutes):
 *
 * - ssekit's `EventEndpoint` (served by this runtime) → Deno's native
 *   `EventSource`, the `eventsource` npm package on Node 24, and Node 24's
 *   undici `EventSource` (`--experimental-eventsource`), each in its own
 *   process;
 * - ssekit's `EventEndpoint` and each peer server (served by this runtime)
 *   → ssekit's `EventSource` and `EventConsumer` in this process.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import process from "node:process";
import { EventConsumer, EventSource } from "../client.ts";
import {
  type EventSourceClass,
  observeConsumer,
  observeEventSource,
} from "./observe.ts";
import type { Results, Row } from "./report.ts";
import {
  type Check,
  FIRST_RETRY,
  judge,
  type Observation,
  ServerLog,
} from "./scenario.ts";
import {
  PEER_SERVERS,
  type ServerKind,
  ssekitServer,
  type StartedServer,
} from "./servers.ts";
import { hostRuntime, versioned } from "./serve.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = (name: string): string => `${root}node_modules/.bin/${name}`;
const CLIENT_SCRIPT = fileURLToPath(
  new URL("./clients/source.ts", import.meta.url),
);

/** How long a client waits for the whole conversation before giving up. */
export const DEADLINE = FIRST_RETRY + 9000;

/** An out-of-process `EventSource` client. */
interface ExternalClient {
  label: string;
  title: string;
  name: string;
  command: string;
  args: string[];
}

const EXTERNAL_CLIENTS: ExternalClient[] = [
  {
    label: `Deno EventSource (${versioned("deno")})`,
    title: "Deno EventSource",
    name: "deno",
    command: bin("deno"),
    args: ["run", "-A", CLIENT_SCRIPT, "native"],
  },
  {
    label: `npm ${versioned("eventsource")} (${versioned("node")})`,
    title: "npm eventsource",
    name: "eventsource",
    command: bin("node"),
    args: [CLIENT_SCRIPT, "eventsource"],
  },
  {
    label: `Node undici EventSource (${
      versioned("node")
    } --experimental-eventsource)`,
    title: "Node undici EventSource",
    name: "undici",
    command: bin("node"),
    args: ["--experimental-eventsource", CLIENT_SCRIPT, "native"],
  },
];

/** Runs one external client to the end and parses its observation. */
function runExternal(
  client: ExternalClient,
  url: string,
): Promise<Observation> {
  return new Promise((resolve) => {
    const child = spawn(
      client.command,
      [...client.args, url, String(DEADLINE)],
      {
        cwd: root,
        env: { ...process.env, NO_COLOR: "1" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Uint8Array) => {
      stdout += new TextDecoder().decode(chunk);
    });
    child.stderr.on("data", (chunk: Uint8Array) => {
      stderr += new TextDecoder().decode(chunk);
    });
    // The client has its own deadline; this one only catches a hung process.
    const kill = setTimeout(() => child.kill("SIGKILL"), DEADLINE + 15_000);
    child.on("close", (code) => {
      clearTimeout(kill);
      const line = stdout.trim().split("\n").pop() ?? "";
      try {
        resolve(JSON.parse(line) as Observation);
      } catch {
        resolve({
          kind: "EventSource",
          events: [],
          opens: 0,
          errors: [],
          finalReadyState: -1,
          timedOut: false,
          failure: `${client.name} client exited ${code}: ${
            (stderr || stdout).trim().slice(0, 500)
          }`,
        });
      }
    });
  });
}

/** ssekit's EventEndpoint → every external client. */
async function serverSide(): Promise<Row[]> {
  const log = new ServerLog();
  const server = await ssekitServer.start(log);
  try {
    return await Promise.all(EXTERNAL_CLIENTS.map(async (client) => {
      const key = `ssekit-${client.name}`;
      const observation = await runExternal(client, `${server.url}?key=${key}`);
      return {
        pair: `${ssekitServer.title} → ${client.title}`,
        server: server.label,
        client: client.label,
        cells: judge(key, observation, log.of(key)),
      };
    }));
  } finally {
    await server.close();
  }
}

/** One peer server → ssekit's EventSource and EventConsumer. */
async function clientSide(kind: ServerKind): Promise<Row[]> {
  const log = new ServerLog();
  let server: StartedServer | undefined;
  try {
    server = await kind.start(log);
    const url = server.url;
    const sourceKey = `${kind.name}-es`;
    const consumerKey = `${kind.name}-ec`;
    const [source, consumer] = await Promise.all([
      observeEventSource(
        EventSource as unknown as EventSourceClass,
        `${url}?key=${sourceKey}`,
        DEADLINE,
      ),
      observeConsumer(EventConsumer, `${url}?key=${consumerKey}`, DEADLINE),
    ]);
    const label = server.label;
    const cells = (key: string, observation: Observation) => {
      const judged = judge(key, observation, log.of(key));
      for (const [check, reason] of Object.entries(kind.unsupported ?? {})) {
        const cell = judged[check as Check];
        judged[check as Check] = {
          result: "n/a",
          detail: `${reason} (observed: ${cell.detail ?? "passed anyway"})`,
        };
      }
      return judged;
    };
    return [
      {
        pair: `${kind.title} → ssekit EventSource`,
        server: label,
        client: `ssekit EventSource (${hostRuntime()})`,
        cells: cells(sourceKey, source),
      },
      {
        pair: `${kind.title} → ssekit EventConsumer`,
        server: label,
        client: `ssekit EventConsumer (${hostRuntime()})`,
        cells: cells(consumerKey, consumer),
      },
    ];
  } finally {
    await server?.close();
  }
}

/** Runs every pair this runtime can run, all at once. */
export async function runMatrix(): Promise<Results> {
  const groups = await Promise.all([
    serverSide(),
    // ssekit → ssekit first: the round trip, a baseline for the peers.
    ...[ssekitServer, ...PEER_SERVERS].map((kind) => clientSide(kind)),
  ]);
  return { host: hostRuntime(), rows: groups.flat() };
}

export type { Results, Row };
