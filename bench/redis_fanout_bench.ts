// Fan-out through Redis against one process: 1000 members on one channel
// (in memory) versus 1000 members spread over 3 channels that share a Redis
// stream (3 "instances" in this process, each with its own two connections),
// at a steady publish rate for 3 s. Members are in-process recorders (no
// HTTP), so this measures the channel and the Redis hop, not sockets.
// Prints deliveries per second and how many events each side delivered.
// Run: node_modules/.bin/node bench/redis_fanout_bench.ts
//      (also with deno run -A, or bun)
import process from "node:process";
import { type ChannelMember, EventChannel } from "../channel.ts";
import { RedisStreamLog } from "../redis.ts";
import { startRedis } from "../_redis_test_utils.ts";

// Events in a chunk (blank lines), counted once per chunk: members share them.
const counted = new WeakMap<Uint8Array, number>();
function eventsIn(bytes: Uint8Array): number {
  let n = counted.get(bytes);
  if (n === undefined) {
    n = 0;
    for (let i = 1; i < bytes.length; i++) {
      if (bytes[i] === 10 && bytes[i - 1] === 10) n++;
    }
    counted.set(bytes, n);
  }
  return n;
}

class Counter extends EventTarget implements ChannelMember {
  lastEventId = "";
  closed = false;
  bufferedAmount = 0;
  events = 0;
  write(bytes: Uint8Array): Promise<boolean> {
    this.events += eventsIn(bytes);
    return Promise.resolve(true);
  }
  close(): void {
    this.closed = true;
    this.dispatchEvent(new Event("close"));
  }
}

const MEMBERS = 1000;
const SECONDS = 3;
const message = { data: "x".repeat(50) };

async function run(
  label: string,
  channels: EventChannel<string | Promise<string>>[],
  rate: number,
): Promise<void> {
  const members: Counter[] = [];
  for (let i = 0; i < MEMBERS; i++) {
    const member = new Counter();
    channels[i % channels.length]!.join(member);
    members.push(member);
  }
  const before = channels.map((c) => c.stats().eventsPublished);
  const started = performance.now();
  let published = 0;
  const pending: Promise<unknown>[] = [];
  // Publish in 10 ms slices at the target rate, round-robin over channels.
  while (performance.now() - started < SECONDS * 1000) {
    const due = Math.floor((performance.now() - started) / 1000 * rate);
    for (; published < due; published++) {
      const result = channels[published % channels.length]!.publish(message);
      if (result instanceof Promise) pending.push(result);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await Promise.all(pending);
  // Let every channel deliver what was published (at most 2 s more).
  const target = before.map((b) => b + published);
  const drainStart = performance.now();
  while (
    channels.some((c, i) => c.stats().eventsPublished < target[i]!) &&
    performance.now() - drainStart < 2000
  ) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await new Promise((resolve) => setTimeout(resolve, 0)); // the last tick
  const elapsed = (performance.now() - started) / 1000;
  const deliveries = members.reduce((n, m) => n + m.events, 0);
  const complete = members.filter((m) => m.events === published).length;
  console.log(
    `${label} at ${rate}/s: ${published} published, ${deliveries} deliveries (${complete}/${MEMBERS} members got all), ${
      (deliveries / elapsed / 1e6).toFixed(2)
    } M deliveries/s over ${elapsed.toFixed(2)} s`,
  );
  for (const member of members) member.close();
}

const redis = await startRedis();
const closers: (() => void)[] = [];
try {
  const { createClient } = await import("redis");
  const connection = async () => {
    const client = createClient({ url: redis.url, disableOfflineQueue: true });
    client.on("error", () => {});
    await client.connect();
    closers.push(() => client.destroy());
    return (args: string[]) => client.sendCommand(args);
  };
  const shared: EventChannel<Promise<string>>[] = [];
  for (let i = 0; i < 3; i++) {
    const log = await RedisStreamLog.open({
      key: "fanout",
      command: await connection(),
      reader: await connection(),
      maxLength: 100_000,
    });
    closers.push(() => log.close());
    shared.push(new EventChannel({ log }));
  }
  const local = new EventChannel();
  for (const rate of [1000, 4000]) {
    await run("1 process, in memory", [local], rate);
    await run("3 instances on Redis", shared, rate);
  }
} finally {
  for (const close of closers) close();
  await redis.stop();
  process.exit(0);
}
