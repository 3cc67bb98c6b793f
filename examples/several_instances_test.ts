// Three instances of several_instances.ts as separate processes, one on each
// runtime, on a real redis-server, and clients that reconnect to the next
// instance every time. Every client's events are checked against the stream
// itself: each event exactly once, in order, or an explicit reset.
// Runs from Node only (it starts all three runtimes itself).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import * as http from "node:http";
import process from "node:process";
import {
  redisMissing,
  type RedisServer,
  startRedis,
} from "../_redis_test_utils.ts";

const runtime = globalThis as { Bun?: unknown; Deno?: unknown };
const onNode = !runtime.Bun && !runtime.Deno;
const missing = onNode ? redisMissing() : "runs from Node only";
const root = new URL("..", import.meta.url).pathname;
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Instance {
  name: string;
  origin: string;
  child: ChildProcess;
  alive: boolean;
}

const commands: [string, string[]][] = [
  ["node", ["--conditions=ssekit-source", "examples/several_instances.ts"]],
  ["bun", ["examples/several_instances.ts"]],
  ["deno", ["run", "-A", "examples/several_instances.ts"]],
];

function startInstance(
  name: string,
  args: string[],
  redisUrl: string,
): Promise<Instance> {
  const child = spawn(`${root}node_modules/.bin/${name}`, args, {
    cwd: root,
    env: { ...process.env, REDIS_URL: redisUrl, PORT: "0" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (chunk) => {
      out += chunk;
      const match = out.match(/listening on (http:\/\/\S+)/);
      if (match) resolve({ name, origin: match[1]!, child, alive: true });
    });
    child.once("exit", (code) => reject(new Error(`${name} exited ${code}`)));
  });
}

interface Received {
  id: string;
  event: string;
  data: string;
}

/**
 * A client that stays on an instance for a while, then reconnects to the
 * next one with its Last-Event-ID; when a connection fails or ends, it
 * reconnects to the next one at once.
 */
class RotatingClient {
  received: Received[] = [];
  lastEventId = "";
  connections = 0;
  #request: http.ClientRequest | undefined;
  #stopped = false;
  #next: number;
  #instances: Instance[];
  #away = 0;

  constructor(instances: Instance[], first: number) {
    this.#instances = instances;
    this.#next = first;
  }

  start(): void {
    this.#connect();
  }

  /** Disconnects and stays away `ms` before reconnecting. */
  leaveFor(ms: number): void {
    this.#away = ms;
    this.#request?.destroy();
  }

  stop(): void {
    this.#stopped = true;
    this.#request?.destroy();
  }

  #connect(): void {
    if (this.#stopped) return;
    const instances = this.#instances;
    let instance = instances[this.#next++ % instances.length]!;
    for (let i = 0; !instance.alive && i < instances.length; i++) {
      instance = instances[this.#next++ % instances.length]!;
    }
    this.connections++;
    let buffer = "";
    let done = false;
    const again = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const away = this.#away;
      this.#away = 0;
      setTimeout(() => this.#connect(), away || 10);
    };
    const headers: Record<string, string> = this.lastEventId === ""
      ? {}
      : { "last-event-id": this.lastEventId };
    const request = http.get(instance.origin + "/", { headers }, (res) => {
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event: Received = { id: "", event: "message", data: "" };
          let hasId = false;
          for (const line of block.split("\n")) {
            const colon = line.indexOf(":");
            if (colon <= 0) continue;
            const field = line.slice(0, colon);
            const value = line.slice(colon + 1);
            if (field === "id") hasId = true;
            if (field === "id" || field === "event" || field === "data") {
              event[field] = value;
            }
          }
          if (!hasId) continue;
          this.lastEventId = event.id;
          this.received.push(event);
        }
      });
      res.on("end", again);
      res.on("error", again);
      res.on("close", again);
    });
    request.on("error", again);
    this.#request = request;
    // Stay 100 to 300 ms, then move to the next instance.
    const timer = setTimeout(
      () => request.destroy(),
      100 + Math.random() * 200,
    );
  }
}

/**
 * Checks a client's events against the stream's ids, oldest first: after
 * its first event, each one is the next entry of the stream, except after a
 * reset, which continues from the entry after the reset's id.
 */
function check(
  client: RotatingClient,
  stream: string[],
  firstAfterRestart: number,
): {
  resets: number;
  delivered: number;
} {
  const index = new Map(stream.map((id, i) => [id, i]));
  let expected = -1;
  let resets = 0;
  let delivered = 0;
  for (const event of client.received) {
    if (event.event === "reset") {
      resets++;
      expected = event.id === "0-0"
        ? firstAfterRestart
        : index.get(event.id)! + 1;
      assert.ok(!Number.isNaN(expected), `reset id ${event.id} in the stream`);
      continue;
    }
    const at = index.get(event.id);
    assert.ok(at !== undefined, `event ${event.id} is in the stream`);
    if (expected >= 0) {
      assert.equal(
        event.id,
        stream[expected],
        `after ${stream[expected - 1]} the next event is ${
          stream[expected]
        }, not ${event.id} (event ${delivered} of the client)`,
      );
    }
    expected = at + 1;
    delivered++;
  }
  return { resets, delivered };
}

/** The stream ids in a raw RESP reply, in order. */
function idsIn(reply: string): string[] {
  return [...reply.matchAll(/\$\d+\r\n(\d+-\d+)\r\n/g)].map((m) => m[1]!);
}

/** The stream's ids, oldest first. */
async function streamIds(redis: RedisServer): Promise<string[]> {
  return idsIn(await redis.raw("XRANGE", "news", "-", "+"));
}

function compareIds(a: string, b: string): number {
  const [am, as] = a.split("-").map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split("-").map(BigInt) as [bigint, bigint];
  return am === bm ? (as < bs ? -1 : as > bs ? 1 : 0) : am < bm ? -1 : 1;
}

function merge(...lists: string[][]): string[] {
  return [...new Set(lists.flat())].sort(compareIds);
}

describe(
  "several_instances.ts: three processes (Node, Bun, Deno) on one Redis stream",
  {
    skip: missing,
  },
  () => {
    let redis: RedisServer;
    let instances: Instance[] = [];
    before(async () => {
      redis = await startRedis();
      instances = await Promise.all(
        commands.map(([name, args]) => startInstance(name, args, redis.url)),
      );
    });
    after(async () => {
      for (const instance of instances) {
        if (instance.child.exitCode === null && instance.alive) {
          const exited = new Promise((r) => instance.child.once("exit", r));
          instance.child.kill("SIGKILL");
          await exited;
        }
      }
      await redis?.stop();
    });

    test("clients moving between instances get every event once, in order, or an explicit reset", async () => {
      const clients = Array.from(
        { length: 30 },
        (_, i) => new RotatingClient(instances, i),
      );
      let published = 0;
      let rejected = 0;
      let publishing = true;
      let holding = false; // no publishing while the test reads the stream
      const paused = new Set<Instance>();
      const agent = new http.Agent({ keepAlive: true });
      const publisher = (async () => {
        for (let n = 0; publishing; n++) {
          const target = instances[n % 3]!;
          if (holding) {
            await wait(5);
            continue;
          }
          if (!target.alive || paused.has(target)) continue;
          const status = await new Promise<number>((resolve) => {
            const request = http.request(target.origin + "/", {
              method: "POST",
              agent,
            }, (res) => {
              res.resume();
              res.on("end", () => resolve(res.statusCode ?? 0));
            });
            request.on("error", () => resolve(0));
            request.end(String(n));
          });
          if (status === 200) published++;
          else rejected++;
          await wait(2);
        }
      })();
      const phases: string[] = [];
      const phase = (name: string) => phases.push(`${name} at ${published}`);
      try {
        for (const client of clients) client.start();
        await wait(800);

        // One instance lags: Bun's process is stopped for 300 ms.
        const bun = instances[1]!;
        paused.add(bun);
        process.kill(bun.child.pid!, "SIGSTOP");
        await wait(300);
        process.kill(bun.child.pid!, "SIGCONT");
        paused.delete(bun);
        await wait(500);
        phase("lag");

        // Every instance's Redis connections are killed.
        await redis.raw("CLIENT", "KILL", "TYPE", "normal");
        await wait(700);
        phase("client kill");

        // A client away longer than retention: while it is away, 1500 events
        // (more than an instance keeps in memory) and a trim to 5 entries.
        const away = clients[0]!;
        away.leaveFor(1500);
        await wait(50);
        const awayFrom = away.lastEventId;
        const resetsBefore = away.received.filter((e) => e.event === "reset")
          .length;
        holding = true;
        await wait(50); // the publish in flight lands
        const burst = [];
        for (let i = 0; i < 1500; i++) {
          burst.push(
            redis.raw("XADD", "news", "*", "d", `data:burst ${i}\n\n`),
          );
        }
        await Promise.all(burst);
        const untrimmed = await streamIds(redis);
        await redis.raw("XTRIM", "news", "MAXLEN", "5");
        // The control: an exclusive-start read after the client's id returns
        // entries as if nothing were missing in between.
        const naive = idsIn(
          await redis.raw("XRANGE", "news", `(${awayFrom}`, "+", "COUNT", "1"),
        );
        const next = untrimmed[untrimmed.indexOf(awayFrom) + 1];
        assert.equal(naive.length, 1);
        assert.notEqual(naive[0], next, "the naive read skipped events");
        const lost = untrimmed.indexOf(naive[0]!) -
          untrimmed.indexOf(awayFrom) -
          1;
        // At least the burst, less the 5 entries the trim kept.
        assert.ok(lost >= 1495, `the naive read silently lost ${lost} events`);
        holding = false;
        await wait(2000);
        const resetsAfter = away.received.filter((e) => e.event === "reset")
          .length;
        assert.equal(resetsAfter - resetsBefore, 1, "the away client: 1 reset");
        phase("retention");

        // One instance is killed: its clients resume elsewhere.
        const deno = instances[2]!;
        deno.alive = false;
        deno.child.kill("SIGKILL");
        await wait(700);
        phase("instance killed");

        // Redis restarts empty.
        holding = true;
        await wait(50);
        const beforeRestart = await streamIds(redis);
        await redis.restartEmpty();
        holding = false;
        await wait(1500);
        phase("redis restarted");
        publishing = false;
        await publisher;
        await wait(300);
        for (const client of clients) client.stop();
        const afterRestart = await streamIds(redis);

        const stream = merge(untrimmed, beforeRestart);
        const firstAfterRestart = stream.length;
        stream.push(...afterRestart);
        let delivered = 0;
        let resets = 0;
        for (const client of clients) {
          const result = check(client, stream, firstAfterRestart);
          delivered += result.delivered;
          resets += result.resets;
          const restartResets = client.received.filter((e) =>
            e.event === "reset" &&
            (e.id === "0-0" || afterRestart.includes(e.id) ||
              e.id === beforeRestart.at(-1))
          );
          assert.ok(
            restartResets.length >= 1,
            "every client got a reset when Redis restarted empty",
          );
        }
        assert.ok(published > 100, `published ${published}`);
        console.log(
          `${clients.length} clients, ${
            clients.reduce((n, c) => n + c.connections, 0)
          } connections, ${published} published (${rejected} rejected), ${delivered} deliveries checked, ${resets} resets; ${
            phases.join(", ")
          }`,
        );
      } finally {
        publishing = false;
        await publisher;
        for (const client of clients) client.stop();
        agent.destroy();
      }
    });
  },
);
