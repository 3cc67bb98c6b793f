/**
 * End-to-end bench client (run by Node 24): raw HTTP/1.1 over `node:net`, so
 * the client costs as little as possible and is the same for every server.
 *
 * Usage: `node bench/e2e/client.ts <port> ttfe-pair:<floor-port> <samples>`
 * (first-event medians of both servers, measured alternately), or
 * `node bench/e2e/client.ts <port> idle:<clients>` (idle RSS per
 * stream, on a fresh server: the slope of RSS as `clients` more streams open
 * in five steps after the first `clients / 5`), or
 * `node bench/e2e/client.ts <port> idle-steps:<clients>` (RSS and JS heap
 * after every 100 more idle streams, up to `clients`: where the memory
 * comes in steps), or
 * `node bench/e2e/client.ts <port> <clients>:<max-events>[,...]
 * [ttfe-samples] [seconds]` — each round lets the server send for about
 * `seconds` (at most max-events per client), then stops it; or
 * `node bench/e2e/client.ts <port> fanout:<clients> <samples>` — fan-out
 * latency: with `clients` streams open, the time from asking the server to
 * send one event until the last stream has it, `samples` times (p50, p99).
 *
 * Past a few thousand streams, connections come from several loopback source
 * addresses (20 000 per address, then 127.<n>.x.y with a second octet of this
 * process's own),
 * so neither the ephemeral ports of one address nor the sockets an earlier
 * run left in TIME_WAIT run out. The caller raises the open-file limit.
 *
 * Prints one JSON line per round: `{ clients, events, delivered, seconds,
 * eventsPerSecond, rssPerIdleConnection }`, then `{ ttfeMs }` (median time
 * from connect to the first complete event over sequential fresh
 * connections, measured before the rounds). Counts marker strings in the
 * response bodies (chunked framing undone: it may split an event anywhere) and
 * checks every stream got exactly its events. Everything is bounded: 60 s per round.
 *
 * @module
 */

import { request } from "node:http";
import { connect, type Socket } from "node:net";
import process from "node:process";

const [portArg, roundsArg = "1:1000", ttfeArg = "20", secondsArg = "1"] =
  process.argv.slice(2);
const port = Number(portArg);
const ROUND_TIMEOUT_MS = 60_000;
const READY = Buffer.from("@ready@");
const TICK = Buffer.from("@tick@");

interface Conn {
  socket: Socket;
  /** Resolves with ms from connect to the first complete event. */
  ready: Promise<number>;
  ticks: number;
  /** `performance.now()` when the last tick arrived. */
  lastTickAt: number;
  /** Resolves once `ticks` reaches `total`; rejects if the stream ends. */
  waitFor(total: number): Promise<void>;
}

/** Counts `marker` in a stream of chunks, including across chunk edges. */
function counter(marker: Buffer): (chunk: Buffer) => number {
  let carry = Buffer.alloc(0);
  return (chunk) => {
    let n = 0;
    if (carry.length) {
      // Only occurrences that start in the previous chunk's tail.
      const joint = Buffer.concat([
        carry,
        chunk.subarray(0, marker.length - 1),
      ]);
      for (
        let i = joint.indexOf(marker);
        i !== -1 && i < carry.length;
        i = joint.indexOf(marker, i + 1)
      ) {
        n++;
      }
    }
    for (
      let i = chunk.indexOf(marker);
      i !== -1;
      i = chunk.indexOf(marker, i + marker.length)
    ) {
      n++;
    }
    carry = Buffer.from(
      chunk.subarray(Math.max(0, chunk.length - marker.length + 1)),
    );
    return n;
  };
}

/**
 * Turns a connection's raw bytes into body bytes: skips the response head and
 * undoes chunked transfer encoding. A server may frame its body at any byte
 * (Deno.serve splits large writes), so markers are counted in the body, never
 * in the framed bytes.
 */
function bodyDecoder(): (chunk: Buffer) => Buffer[] {
  let head: Buffer | null = Buffer.alloc(0);
  let chunked = false;
  let state: "size" | "data" | "crlf" = "size";
  let sizeLine = "";
  let remaining = 0;
  return (chunk) => {
    const body: Buffer[] = [];
    if (head !== null) {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end === -1) return body;
      chunked = /\r\ntransfer-encoding:[ \t]*chunked/i.test(
        head.toString("latin1", 0, end),
      );
      chunk = head.subarray(end + 4);
      head = null;
    }
    if (!chunked) {
      if (chunk.length > 0) body.push(chunk);
      return body;
    }
    let i = 0;
    while (i < chunk.length) {
      if (state === "size") {
        const lf = chunk.indexOf(10, i);
        if (lf === -1) {
          sizeLine += chunk.toString("latin1", i);
          break;
        }
        sizeLine += chunk.toString("latin1", i, lf);
        remaining = parseInt(sizeLine, 16) || 0;
        sizeLine = "";
        i = lf + 1;
        state = remaining > 0 ? "data" : "crlf";
        if (remaining === 0) remaining = 2;
      } else {
        const take = Math.min(remaining, chunk.length - i);
        if (state === "data") body.push(chunk.subarray(i, i + take));
        remaining -= take;
        i += take;
        if (remaining === 0) {
          if (state === "data") {
            state = "crlf";
            remaining = 2;
          } else state = "size";
        }
      }
    }
    return body;
  };
}

/** Streams opened by this process so far (picks the source address). */
let opened = 0;
/** Connections per loopback source address. */
const PER_SOURCE = 20_000;
/** This process's second octet: 127.<octet>.x.y, never 127.0.x.y. */
const octet = 1 + (process.pid % 250);

/**
 * The source address of the next stream: none (the kernel's choice, which
 * is fast) for the first 20 000; an explicit bind (slower: the kernel scans
 * for a free port) beyond.
 */
function sourceAddress(): string | undefined {
  const block = Math.floor(opened++ / PER_SOURCE);
  if (block === 0) return undefined;
  return `127.${octet}.${block >> 8}.${(block & 255) + 1}`;
}

function open(round: string, to: number = port): Conn {
  const started = performance.now();
  const localAddress = sourceAddress();
  const socket = connect(
    localAddress
      ? { port: to, host: "127.0.0.1", localAddress }
      : { port: to, host: "127.0.0.1" },
  );
  socket.setNoDelay(true);
  socket.write(
    `GET /sse?round=${round} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`,
  );
  const countReady = counter(READY);
  const countTicks = counter(TICK);
  let failure: Error | undefined;
  let waiter:
    | { total: number; resolve(): void; reject(e: Error): void }
    | undefined;
  let onReady!: (ms: number) => void;
  let onReadyFailed!: (e: Error) => void;
  const conn: Conn = {
    socket,
    ticks: 0,
    lastTickAt: 0,
    ready: new Promise((resolve, reject) => {
      onReady = resolve;
      onReadyFailed = reject;
    }),
    waitFor(total) {
      if (conn.ticks >= total) return Promise.resolve();
      if (failure) return Promise.reject(failure);
      return new Promise((resolve, reject) => {
        waiter = { total, resolve, reject };
      });
    },
  };
  conn.ready.catch(() => {});
  const decode = bodyDecoder();
  socket.on("data", (raw: Buffer) => {
    for (const chunk of decode(raw)) {
      if (countReady(chunk) > 0) onReady(performance.now() - started);
      const ticks = countTicks(chunk);
      if (ticks > 0) {
        conn.ticks += ticks;
        conn.lastTickAt = performance.now();
      }
    }
    if (waiter && conn.ticks >= waiter.total) {
      waiter.resolve();
      waiter = undefined;
    }
  });
  const fail = (error?: Error) => {
    failure ??= error ?? new Error("connection closed by the server");
    onReadyFailed(failure);
    waiter?.reject(failure);
  };
  socket.on("error", fail);
  socket.on("close", () => fail());
  return conn;
}

function timeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`timed out after ${ROUND_TIMEOUT_MS} ms: ${what}`)),
        ROUND_TIMEOUT_MS,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A control request on its own connection (no keep-alive reuse races). */
function get(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path, agent: false },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve(body));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** The server's memory (after a full GC) and open streams: `GET /stats`. */
async function serverStats(): Promise<
  { rss: number; heapUsed: number; streams: number }
> {
  return JSON.parse(await get("/stats"));
}

/**
 * Lets the server send to every connection for about `seconds` (at most
 * `maxEvents` each), stops it, checks every stream got exactly what was sent,
 * and returns the events per stream and the seconds from `/go` to the last
 * event's arrival.
 */
async function burst(
  id: string,
  conns: Conn[],
  maxEvents: number,
  seconds: number,
): Promise<{ events: number; seconds: number }> {
  const t0 = performance.now();
  await get(`/go?round=${id}&n=${maxEvents}`);
  const all = Promise.all(conns.map((c) => c.waitFor(maxEvents)));
  all.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    all,
    new Promise((resolve) => timer = setTimeout(resolve, seconds * 1000)),
  ]);
  clearTimeout(timer);
  const events = Number(await get(`/stop?round=${id}`));
  await timeout(
    Promise.all(conns.map((c) => c.waitFor(events))),
    `${conns.length}×${events} events`,
  );
  for (const c of conns) {
    if (c.ticks !== events) {
      throw new Error(`a stream got ${c.ticks} events, expected ${events}`);
    }
  }
  const end = Math.max(...conns.map((c) => c.lastTickAt));
  return { events, seconds: (end - t0) / 1000 };
}

/** One round: connect `clients`, measure idle RSS, then a timed burst. */
async function round(
  index: number,
  clients: number,
  maxEvents: number,
  seconds: number,
) {
  const id = `r${index}`;
  const before = await serverStats();
  // Connect in batches of 100 so the listen backlog never overflows.
  const conns = await openMany(id, clients);
  const idle = await serverStats();
  if (idle.streams < clients) {
    throw new Error(
      `server holds ${idle.streams} streams, expected ${clients}`,
    );
  }
  const result = await burst(id, conns, maxEvents, seconds);
  for (const c of conns) c.socket.destroy();
  return {
    clients,
    events: result.events,
    delivered: clients * result.events,
    seconds: result.seconds,
    eventsPerSecond: (clients * result.events) / result.seconds,
    rssPerIdleConnection: (idle.rss - before.rss) / clients,
  };
}

/**
 * The round of every first-event sample: one, as clients join one broadcast
 * (a round per sample made a server build a broadcast, e.g. an
 * `EventChannel`, per connection, which the floor's `Set` hardly costs).
 */
const TTFE_ROUND = "ttfe";

async function ttfe(samples: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const c = open(TTFE_ROUND);
    times.push(await timeout(c.ready, "first event"));
    c.socket.destroy();
  }
  return median(times);
}

/**
 * First-event times of this server and another one (the floor), measured
 * alternately so that both see the same moments of machine load: medians
 * over `samples` connections each, after 20 warm-up rounds.
 */
async function ttfePair(other: number, samples: number) {
  const mine: number[] = [];
  const theirs: number[] = [];
  for (let i = 0; i < samples + 20; i++) {
    const order: [number, number[]][] = [[port, mine], [other, theirs]];
    if (i % 2 === 1) order.reverse();
    for (const [to, into] of order) {
      const c = open(TTFE_ROUND, to);
      const ms = await timeout(c.ready, "first event");
      c.socket.destroy();
      if (i >= 20) into.push(ms);
    }
  }
  return { ttfeMs: median(mine), pairedTtfeMs: median(theirs) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

/** Least-squares slope of `ys` over `xs`. */
function slope(xs: number[], ys: number[]): number {
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  xs.forEach((x, i) => {
    num += (x - mx) * (ys[i]! - my);
    den += (x - mx) ** 2;
  });
  return num / den;
}

/** Points on the line of open streams against RSS. */
const IDLE_STEPS = 5;

/**
 * RSS per idle stream as the slope of RSS against open streams: the first
 * connections also pay for one-time costs (compiling the handler, the
 * runtime's lazily built structures), which are not per connection, so a
 * fifth of `clients` open first; then `clients` more, in steps, with the RSS
 * read (after GC) at each. A least-squares fit over the steps is steadier
 * than two readings, which the allocator's page granularity moves.
 */
async function idleRss(clients: number) {
  const conns: Conn[] = [];
  const connect = async (count: number) => {
    conns.push(...await openMany("idle", count));
  };
  const rss = async () => (await serverStats()).rss;
  await connect(Math.max(1, Math.round(clients / 5)));
  const counts: number[] = [conns.length];
  const rssAt: number[] = [await rss()];
  for (let step = 1; step <= IDLE_STEPS; step++) {
    const target = counts[0]! + Math.round((clients * step) / IDLE_STEPS);
    await connect(target - conns.length);
    counts.push(conns.length);
    rssAt.push(await rss());
  }
  for (const c of conns) c.socket.destroy();
  return {
    idleClients: clients,
    idleRssPerConnection: slope(counts, rssAt),
    points: counts.map((n, i) => [n, Math.round(rssAt[i]! / 1024)]),
  };
}

/**
 * RSS and JS heap (after GC) each time 100 more idle streams are open, up to
 * `clients`: the allocator's steps, which a slope over a few points hides.
 */
async function idleSteps(clients: number) {
  const conns: Conn[] = [];
  const kib = (bytes: number) => Math.round(bytes / 1024);
  const points: [number, number, number][] = [];
  while (conns.length < clients) {
    conns.push(
      ...await openMany("idle", Math.min(100, clients - conns.length)),
    );
    const stats = await serverStats();
    points.push([conns.length, kib(stats.rss), kib(stats.heapUsed)]);
  }
  for (const c of conns) c.socket.destroy();
  return {
    idleClients: clients,
    columns: ["streams", "rssKiB", "heapKiB"],
    points,
  };
}

/** Opens `count` streams of round `id`, 100 at a time. */
async function openMany(id: string, count: number): Promise<Conn[]> {
  const conns: Conn[] = [];
  for (let i = 0; i < count; i += 100) {
    const batch = Array.from(
      { length: Math.min(100, count - i) },
      () => open(id),
    );
    conns.push(...batch);
    await timeout(
      Promise.all(batch.map((c) => c.ready)),
      `${count} clients connecting`,
    );
  }
  return conns;
}

/** The `q` quantile of `values` (nearest rank). */
function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[
    Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)
  ] ??
    NaN;
}

/**
 * Fan-out latency: with `clients` streams open, asks the server for one
 * event to all of them and times until the last stream has it (its arrival,
 * not when the promise settles), `samples` times after 3 warm-up ones.
 */
async function fanout(clients: number, samples: number) {
  const id = "fanout";
  const conns = await openMany(id, clients);
  const times: number[] = [];
  for (let k = 0; k < samples + 3; k++) {
    const t0 = performance.now();
    await get(`/fanout?round=${id}&i=${k}`);
    await timeout(
      Promise.all(conns.map((c) => c.waitFor(k + 1))),
      `fan-out ${k} to ${clients} streams`,
    );
    let last = 0;
    for (const c of conns) if (c.lastTickAt > last) last = c.lastTickAt;
    if (k >= 3) times.push(last - t0);
    // Let the runtime settle (GC of the last write) between samples.
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  for (const c of conns) c.socket.destroy();
  return {
    fanoutClients: clients,
    samples,
    p50Ms: quantile(times, 0.5),
    p99Ms: quantile(times, 0.99),
  };
}

if (roundsArg.startsWith("fanout:")) {
  console.log(
    JSON.stringify(await fanout(Number(roundsArg.slice(7)), Number(ttfeArg))),
  );
} else if (roundsArg.startsWith("ttfe-pair:")) {
  console.log(
    JSON.stringify(
      await ttfePair(Number(roundsArg.slice(10)), Number(ttfeArg)),
    ),
  );
} else if (roundsArg.startsWith("idle-steps:")) {
  console.log(JSON.stringify(await idleSteps(Number(roundsArg.slice(11)))));
} else if (roundsArg.startsWith("idle:")) {
  console.log(JSON.stringify(await idleRss(Number(roundsArg.slice(5)))));
} else {
  // First events first, on a quiet server: after the bursts, its queues and GC
  // would still be busy. The first connections warm it up. (0 samples: the
  // caller measured them another way, e.g. with ttfe-pair.)
  const samples = Number(ttfeArg);
  if (samples > 0) await ttfe(20);
  const ttfeMs = samples > 0 ? await ttfe(samples) : undefined;
  const rounds = roundsArg.split(",").map((spec) =>
    spec.split(":").map(Number)
  );
  let index = 0;
  for (const [clients = 1, events = 1000] of rounds) {
    console.log(
      JSON.stringify(await round(index++, clients, events, Number(secondsArg))),
    );
    // Let closed sockets settle before the next round's RSS baseline.
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  if (ttfeMs !== undefined) console.log(JSON.stringify({ ttfeMs }));
}
