// RedisStreamLog on a real redis-server (started on a free port, killed at the
// end): publish rate on one connection, the added hop (publish on one
// instance → delivered to a member of another, p50/p99), and a replay of
// 10 000 events from Redis. Prints the figures; no thresholds here.
// Run: node_modules/.bin/node bench/redis_bench.ts
//      node_modules/.bin/deno run -A bench/redis_bench.ts
//      node_modules/.bin/bun bench/redis_bench.ts
import process from "node:process";
import { type ChannelMember, EventChannel } from "../channel.ts";
import { type RedisCommand, RedisStreamLog } from "../redis.ts";
import { startRedis } from "../_redis_test_utils.ts";

interface Connection {
  command: RedisCommand;
  close(): void;
}

const runtime = globalThis as {
  Bun?: {
    RedisClient: new (url: string, options?: object) => {
      connect(): Promise<void>;
      send(name: string, args: string[]): Promise<unknown>;
      close(): void;
    };
  };
  Deno?: unknown;
};
const name = runtime.Bun ? "bun" : runtime.Deno ? "deno" : "node";

async function nodeRedis(url: string): Promise<Connection> {
  const { createClient } = await import("redis");
  const client = createClient({ url, disableOfflineQueue: true });
  client.on("error", () => {});
  await client.connect();
  return {
    command: (args) => client.sendCommand(args),
    close: () => client.destroy(),
  };
}

async function bunRedis(url: string): Promise<Connection> {
  const client = new runtime.Bun!.RedisClient(url, {
    enableOfflineQueue: false,
  });
  await client.connect();
  return {
    command: ([cmd, ...args]) => client.send(cmd!, args),
    close: () => client.close(),
  };
}

class Counter extends EventTarget implements ChannelMember {
  lastEventId = "";
  closed = false;
  bufferedAmount = 0;
  onWrite: (bytes: Uint8Array) => void = () => {};
  write(bytes: Uint8Array): Promise<boolean> {
    this.onWrite(bytes);
    return Promise.resolve(true);
  }
  close(): void {
    this.closed = true;
    this.dispatchEvent(new Event("close"));
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

const redis = await startRedis();
const clients: [string, (url: string) => Promise<Connection>][] = [
  ["node-redis", nodeRedis],
];
if (runtime.Bun) clients.push(["Bun RedisClient", bunRedis]);
const open: Connection[] = [];
const connect = async (make: (url: string) => Promise<Connection>) => {
  const c = await make(redis.url);
  open.push(c);
  return c;
};
const message = { data: "x".repeat(50) }; // 66 bytes once encoded with its id
const text = `data:${message.data}\n\n`;

try {
  for (const [client, make] of clients) {
    const key = `bench-${client}`;
    const main = await connect(make);
    const log = await RedisStreamLog.open({
      key,
      command: main.command,
      reader: (await connect(make)).command,
      maxLength: 100_000,
    });
    const channel = new EventChannel({ log });

    // 1. Publish rate on one connection, 1000 publishes in flight.
    const total = 20_000;
    let started = performance.now();
    for (let sent = 0; sent < total; sent += 1000) {
      const batch: Promise<string>[] = [];
      for (let i = 0; i < 1000; i++) batch.push(channel.publish(message));
      await Promise.all(batch);
    }
    let ms = performance.now() - started;
    console.log(
      `${name} ${client}: publish ${total} (channel.publish, 1000 in flight): ${
        Math.round(total / ms * 1000)
      } events/s`,
    );
    started = performance.now();
    for (let i = 0; i < 2000; i++) await channel.publish({ data: "one" });
    ms = performance.now() - started;
    console.log(
      `${name} ${client}: publish one at a time: ${
        Math.round(2000 / ms * 1000)
      } events/s`,
    );

    // 2. The hop: published on this instance, delivered by another one
    // (its own connections and reader, same process).
    const other = new EventChannel({
      log: await RedisStreamLog.open({
        key,
        command: (await connect(make)).command,
        reader: (await connect(make)).command,
      }),
    });
    const member = new Counter();
    other.join(member);
    const hops: number[] = [];
    for (let i = 0; i < 2000; i++) {
      const at = performance.now();
      const delivered = new Promise<void>((resolve) => {
        member.onWrite = () => resolve();
      });
      await channel.publish({ data: String(i) });
      await delivered;
      hops.push(performance.now() - at);
    }
    hops.sort((a, b) => a - b);
    console.log(
      `${name} ${client}: publish → delivered by another instance: p50 ${
        percentile(hops, 0.5).toFixed(3)
      } ms, p99 ${percentile(hops, 0.99).toFixed(3)} ms`,
    );

    // 3. Replay of 10 000 events from Redis (nothing in memory).
    const replayKey = `${key}-replay`;
    const cold = await RedisStreamLog.open({
      key: replayKey,
      command: main.command,
      reader: (await connect(make)).command,
      memory: 0,
    });
    const ids: string[] = [];
    for (let sent = 0; sent <= 10_000; sent += 1000) {
      const batch: Promise<string>[] = [];
      for (let i = 0; i < 1000 && sent + i <= 10_000; i++) {
        batch.push(cold.append(text, undefined));
      }
      ids.push(...await Promise.all(batch));
    }
    const times: number[] = [];
    for (let run = 0; run < 5; run++) {
      started = performance.now();
      const read = await cold.read(ids[0]!, ids.at(-1)!, {
        topics: null,
        limit: 20_000,
      });
      times.push(performance.now() - started);
      if (read.kind !== "entries" || read.entries.length !== 10_000) {
        throw new Error(`replay read ${read.kind}`);
      }
    }
    times.sort((a, b) => a - b);
    console.log(
      `${name} ${client}: replay 10 000 events from Redis: median ${
        times[2]!.toFixed(1)
      } ms (5 runs, ${times[0]!.toFixed(1)}–${times[4]!.toFixed(1)})`,
    );
    cold.close();
    log.close();
  }
} finally {
  for (const c of open) c.close();
  await redis.stop();
  process.exit(0);
}
