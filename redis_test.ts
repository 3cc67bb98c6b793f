import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { type ChannelMember, EventChannel } from "./channel.ts";
import { type RedisCommand, RedisStreamLog } from "./redis.ts";
import {
  redisMissing,
  type RedisServer,
  startRedis,
} from "./_redis_test_utils.ts";

const decoder = new TextDecoder();

/** Records what it is sent. */
class Recorder extends EventTarget implements ChannelMember {
  lastEventId: string;
  closed = false;
  bufferedAmount = 0;
  text = "";
  constructor(lastEventId = "") {
    super();
    this.lastEventId = lastEventId;
  }
  write(bytes: Uint8Array): Promise<boolean> {
    this.text += decoder.decode(bytes);
    return Promise.resolve(true);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dispatchEvent(new Event("close"));
  }
  events(): { id: string; event: string; data: string }[] {
    return this.text.split("\n\n").filter((b) => b !== "").map((block) => {
      const e = { id: "", event: "message", data: "" };
      for (const line of block.split("\n")) {
        const colon = line.indexOf(":");
        const field = line.slice(0, colon);
        const value = line.slice(colon + 1);
        if (field === "id" || field === "event" || field === "data") {
          e[field] = value;
        }
      }
      return e;
    });
  }
}

interface Connection {
  command: RedisCommand;
  close(): Promise<void>;
}
interface Adapter {
  name: string;
  connect(url: string): Promise<Connection>;
}

const runtime = globalThis as { Bun?: unknown; Deno?: unknown };

/** The clients this runtime tests, each through its one-line adapter. */
async function adapters(): Promise<Adapter[]> {
  const list: Adapter[] = [];
  if (runtime.Bun) {
    // Bun's built-in client (also `import { RedisClient } from "bun"`).
    const { RedisClient } = runtime.Bun as {
      RedisClient: new (url: string, options: object) => {
        connect(): Promise<void>;
        send(name: string, args: string[]): Promise<unknown>;
        close(): void;
      };
    };
    list.push({
      name: "Bun RedisClient",
      async connect(url) {
        const client = new RedisClient(url, {
          enableOfflineQueue: false,
          autoReconnect: true,
        });
        await client.connect();
        return {
          command: ([name, ...args]) => client.send(name!, args),
          close: () => Promise.resolve(client.close()),
        };
      },
    });
    return list;
  }
  const { createClient } = await import("redis");
  list.push({
    name: "node-redis",
    async connect(url) {
      const client = createClient({ url, disableOfflineQueue: true });
      client.on("error", () => {});
      await client.connect();
      return {
        command: (args) => client.sendCommand(args),
        close: () => Promise.resolve(client.destroy()),
      };
    },
  });
  if (!runtime.Deno) {
    const { Redis } = await import("ioredis");
    list.push({
      name: "ioredis",
      async connect(url) {
        const client = new Redis(url, {
          enableOfflineQueue: false,
          maxRetriesPerRequest: 0,
          lazyConnect: true,
        });
        client.on("error", () => {});
        await client.connect();
        return {
          command: ([name, ...args]) => client.call(name!, ...args),
          close: () => Promise.resolve(client.disconnect()),
        };
      },
    });
  }
  return list;
}

const missing = redisMissing();
const clientAdapters = await adapters();
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (condition()) return;
    await wait(5);
  }
  throw new Error(`Gave up waiting for ${what} after 10 s`);
}

describe("RedisStreamLog on a real redis-server", { skip: missing }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.stop();
  });

  let streams = 0;
  /** An instance: its own connections, log and channel. */
  async function instance(
    adapter: Adapter,
    key: string,
    options: { memory?: number; maxReplay?: number; lag?: number } = {},
  ) {
    const main = await adapter.connect(redis.url);
    const reading = await adapter.connect(redis.url);
    const lag = options.lag ?? 0;
    const reader: RedisCommand = lag === 0 ? reading.command : async (args) => {
      await wait(lag);
      return reading.command(args);
    };
    const log = await RedisStreamLog.open({
      key,
      command: main.command,
      reader,
      block: 100,
      retryDelay: 20,
      ...(options.memory !== undefined ? { memory: options.memory } : {}),
    });
    const channel = new EventChannel({
      log,
      ...(options.maxReplay !== undefined
        ? { maxReplay: options.maxReplay }
        : {}),
    });
    return {
      channel,
      log,
      async close() {
        log.close();
        await main.close();
        await reading.close();
      },
    };
  }

  for (const adapter of clientAdapters) {
    describe(adapter.name, () => {
      test("every instance, the publisher included, delivers the stream's ids in the same order", async () => {
        const key = `s${++streams}`;
        const a = await instance(adapter, key);
        const b = await instance(adapter, key);
        try {
          const ma = new Recorder();
          const mb = new Recorder();
          a.channel.join(ma);
          b.channel.join(mb);
          const ids: string[] = [];
          for (let i = 1; i <= 20; i++) {
            const on = i % 2 === 0 ? a : b;
            ids.push(await on.channel.publish({ data: String(i) }));
          }
          await until(
            () => ma.events().length === 20 && mb.events().length === 20,
            "both instances to deliver 20 events",
          );
          assert.ok(ids.every((id) => /^\d+-\d+$/.test(id)));
          assert.deepEqual(ma.events().map((e) => e.id), ids);
          assert.deepEqual(mb.events().map((e) => e.id), ids);
          assert.deepEqual(
            ma.events().map((e) => e.data),
            ids.map((_, i) => String(i + 1)),
          );
        } finally {
          await a.close();
          await b.close();
        }
      });

      test("resume: from memory, from the stream (inclusive check), trimmed → exactly one reset; the exclusive read loses events silently", async () => {
        const key = `s${++streams}`;
        const a = await instance(adapter, key, { memory: 2 });
        try {
          const live = new Recorder();
          a.channel.join(live);
          const ids: string[] = [];
          for (let i = 1; i <= 10; i++) {
            ids.push(await a.channel.publish({ data: String(i) }));
          }
          await until(() => live.events().length === 10, "10 events");
          // In memory (the last 2).
          const fromMemory = new Recorder(ids[8]);
          a.channel.join(fromMemory);
          await until(() => fromMemory.events().length === 1, "1 event");
          assert.deepEqual(fromMemory.events().map((e) => e.data), ["10"]);
          // Not in memory: read from Redis.
          const fromRedis = new Recorder(ids[2]);
          a.channel.join(fromRedis);
          await until(() => fromRedis.events().length === 7, "7 events");
          assert.deepEqual(
            fromRedis.events().map((e) => e.id),
            ids.slice(3),
          );
          // Trim the stream to its last 5 entries: ids[2] is gone.
          await redis.raw("XTRIM", key, "MAXLEN", "5");
          const gone = new Recorder(ids[2]);
          a.channel.join(gone);
          await until(() => gone.events().length === 1, "the reset");
          assert.equal(gone.events()[0]!.event, "reset");
          assert.equal(gone.events()[0]!.id, ids[9]);
          // The control: an exclusive-start XRANGE after the trimmed id
          // silently starts at the oldest held entry: events 4 and 5 lost.
          const naive = await redis.raw("XRANGE", key, `(${ids[2]}`, "+");
          assert.ok(!naive.includes(ids[3]!) && naive.includes(ids[5]!));
          // Malformed and unknown ids.
          for (const bad of ["abc", "1700000000000-x", "1-1"]) {
            const m = new Recorder(bad);
            a.channel.join(m);
            await until(() => m.events().length === 1, `reset for ${bad}`);
            assert.equal(m.events()[0]!.event, "reset");
          }
        } finally {
          await a.close();
        }
      });

      test("a client from a faster instance gets the events after its id, never twice", async () => {
        const key = `s${++streams}`;
        const fast = await instance(adapter, key);
        const slow = await instance(adapter, key, { lag: 150 });
        try {
          const ids: string[] = [];
          for (let i = 1; i <= 6; i++) {
            ids.push(await fast.channel.publish({ data: String(i) }));
          }
          // The client saw event 4 on the fast instance; the slow one has
          // not read it yet.
          const member = new Recorder(ids[3]);
          slow.channel.join(member);
          await until(() => member.events().length >= 2, "events 5 and 6");
          await wait(200);
          assert.deepEqual(member.events().map((e) => e.id), ids.slice(4));
        } finally {
          await fast.close();
          await slow.close();
        }
      });

      test("idempotency key: a retried publish appends once", async () => {
        const key = `s${++streams}`;
        const a = await instance(adapter, key);
        try {
          const m = new Recorder();
          a.channel.join(m);
          const first = await a.channel.publish({ data: "x" }, { key: "k1" });
          const again = await a.channel.publish({ data: "x" }, { key: "k1" });
          const other = await a.channel.publish({ data: "y" }, {
            key: "k2",
            topic: "t",
          });
          assert.equal(first, again);
          await until(() => m.events().length === 2, "2 events");
          assert.deepEqual(m.events().map((e) => e.id), [first, other]);
        } finally {
          await a.close();
        }
      });

      test("maxReplay: a client that missed more gets a reset", async () => {
        const key = `s${++streams}`;
        const a = await instance(adapter, key, { memory: 0, maxReplay: 3 });
        try {
          const ids: string[] = [];
          for (let i = 1; i <= 6; i++) {
            ids.push(await a.channel.publish({ data: String(i) }));
          }
          await until(() => a.log.position === ids[5], "the reader");
          const within = new Recorder(ids[2]);
          a.channel.join(within);
          const beyond = new Recorder(ids[1]);
          a.channel.join(beyond);
          await until(
            () => within.events().length === 3 && beyond.events().length === 1,
            "the replays",
          );
          assert.deepEqual(within.events().map((e) => e.data), ["4", "5", "6"]);
          assert.equal(beyond.events()[0]!.event, "reset");
        } finally {
          await a.close();
        }
      });

      test("killed connections: readers resume from their position, nothing lost or repeated", async () => {
        const key = `s${++streams}`;
        const a = await instance(adapter, key);
        const b = await instance(adapter, key);
        try {
          const ma = new Recorder();
          const mb = new Recorder();
          a.channel.join(ma);
          b.channel.join(mb);
          const ids: string[] = [];
          for (let i = 1; i <= 30; i++) {
            if (i % 10 === 0) {
              await redis.raw("CLIENT", "KILL", "TYPE", "normal");
              await wait(50);
            }
            for (let attempt = 0;; attempt++) {
              try {
                ids.push(
                  await a.channel.publish({ data: String(i) }, {
                    key: `kill-${i}`,
                  }),
                );
                break;
              } catch (error) {
                if (attempt > 100) throw error;
                await wait(20);
              }
            }
          }
          await until(
            () => ma.events().length >= 30 && mb.events().length >= 30,
            "30 events on both",
          );
          await wait(150);
          assert.deepEqual(ma.events().map((e) => e.id), ids);
          assert.deepEqual(mb.events().map((e) => e.id), ids);
        } finally {
          await a.close();
          await b.close();
        }
      });
    });
  }

  test("Redis down: publish rejects, live clients stay, a resume closes the connection (no reset); restarted empty: every client gets reset", async () => {
    const [adapter] = clientAdapters;
    const key = `s${++streams}`;
    const a = await instance(adapter!, key, { memory: 0 });
    try {
      const live = new Recorder();
      a.channel.join(live);
      const ids = [await a.channel.publish({ data: "1" })];
      ids.push(await a.channel.publish({ data: "2" }));
      await until(() => live.events().length === 2, "2 events");
      await redis.stop();
      await assert.rejects(() => a.channel.publish({ data: "lost" }));
      const resuming = new Recorder(ids[0]);
      a.channel.join(resuming);
      await until(() => resuming.closed, "the resume to close");
      assert.equal(resuming.text, "");
      assert.equal(live.closed, false);
      await redis.restartEmpty();
      await until(
        () => live.events().some((e) => e.event === "reset"),
        "the reset",
      );
      assert.deepEqual(live.events().map((e) => e.event), [
        "message",
        "message",
        "reset",
      ]);
      let id = "";
      for (let attempt = 0; id === ""; attempt++) {
        try {
          id = await a.channel.publish({ data: "3" });
        } catch (error) {
          if (attempt > 200) throw error;
          await wait(20);
        }
      }
      await until(() => live.events().length === 4, "the event after");
      assert.equal(live.events()[3]!.id, id);
    } finally {
      await a.close();
    }
  });
});

if (missing) process.stderr.write(`redis_test.ts skipped: ${missing}\n`);
