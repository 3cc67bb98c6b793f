/**
 * An {@linkcode EventChannel} log on Redis Streams, so that several server
 * instances behind a load balancer share one channel: an event published on
 * any instance reaches the clients of all of them, and a client resumes
 * exactly on whichever instance its reconnect lands.
 *
 * This module imports nothing: it talks to Redis through the client you
 * already have, with a one-line adapter (a {@linkcode RedisCommand}):
 *
 * ```ts ignore
 * // node-redis (Node, Deno via npm:redis, Bun):
 * const command = (args: string[]) => client.sendCommand(args);
 * // ioredis:
 * const command = ([name, ...args]: string[]) => client.call(name!, ...args);
 * // Bun's built-in RedisClient:
 * const command = ([name, ...args]: string[]) => client.send(name!, args);
 * ```
 *
 * The blocking read (`XREAD BLOCK`) needs a connection of its own (`reader`):
 * a blocked connection answers nothing else. Turn the clients' offline
 * queues off (node-redis `disableOfflineQueue: true`, ioredis
 * `enableOfflineQueue: false`, Bun `enableOfflineQueue: false`), so that a
 * publish while Redis is unreachable rejects instead of waiting in an
 * unbounded queue.
 *
 * What holds: the SSE id is the stream id; every instance, the publisher
 * included, delivers only what it reads from the stream, so all instances
 * deliver the same ids in the same order; a client resumes from memory when
 * the instance still holds its id, else from the stream, read from its id
 * *inclusive* and checked to start with it (an id that was trimmed away
 * means events are missing: `reset`); an id this instance has not read yet
 * (the client came from a faster instance) is delivered from after it,
 * never twice; a malformed or unknown id gets `reset`; a resume that needs
 * Redis while Redis is unreachable closes the connection so the client
 * retries (never a false `reset`); a reader that loses its connection
 * resumes from its last position, and when that position is gone from the
 * stream (Redis restarted empty), every member gets `reset`.
 *
 * @example
 * ```ts ignore
 * import { createClient } from "redis";
 * import { EventChannel } from "ssekit/channel";
 * import { RedisStreamLog } from "ssekit/redis";
 *
 * const client = await createClient({ disableOfflineQueue: true }).connect();
 * const reader = await client.duplicate().connect();
 * const log = await RedisStreamLog.open({
 *   key: "prices",
 *   command: (args) => client.sendCommand(args),
 *   reader: (args) => reader.sendCommand(args),
 * });
 * const prices = new EventChannel({ log });
 * await prices.publish({ event: "price", data: "1.08" });
 * ```
 *
 * @module
 */

/**
 * Sends one Redis command (`args[0]` is its name) and resolves with the
 * reply as the client returns it (RESP2 or RESP3 shapes, strings or
 * buffers: all are understood).
 */
export type RedisCommand = (args: string[]) => Promise<unknown>;

/** Options for {@linkcode RedisStreamLog.open}. */
export interface RedisStreamLogOptions {
  /** The stream's key. */
  key: string;
  /** Sends commands (appends and reads). */
  command: RedisCommand;
  /**
   * Sends the blocking `XREAD`: a connection used for nothing else.
   */
  reader: RedisCommand;
  /**
   * The stream is trimmed to about this many entries (`MAXLEN ~`): a
   * client away for longer gets `reset`.
   *
   * @default {10000}
   */
  maxLength?: number;
  /**
   * The most recent events this instance keeps in memory to resume clients
   * without asking Redis.
   *
   * @default {1000}
   */
  memory?: number;
  /**
   * How long one blocking read waits, in milliseconds. When it returns
   * empty, the log checks that its position is still in the stream.
   *
   * @default {1000}
   */
  block?: number;
  /**
   * How long to wait before reading again after the reader failed, in
   * milliseconds.
   *
   * @default {200}
   */
  retryDelay?: number;
  /**
   * How long an idempotency key is remembered, in milliseconds.
   *
   * @default {600000}
   */
  keyTtl?: number;
}

/** The sink a channel gives {@linkcode RedisStreamLog.follow}. */
export interface RedisLogSink {
  /** An event read from the stream. */
  event(id: string, topic: string | undefined, text: string): void;
  /** Events may have been lost; start again after `id`. */
  reset(id: string): void;
}

/** What {@linkcode RedisStreamLog.read} answers. */
export type RedisLogRead =
  | {
    readonly kind: "entries";
    readonly entries: readonly {
      id: string;
      topic: string | undefined;
      text: string;
    }[];
  }
  | { readonly kind: "ahead" }
  | { readonly kind: "reset" };

interface Entry {
  id: string;
  topic: string | undefined;
  text: string;
}

const STREAM_ID = /^(\d{1,20})-(\d{1,20})$/;

// Appends once per idempotency key: KEYS[1] the stream, KEYS[2] the key;
// ARGV: maxLength, text, keyTtl, topic (optional).
const IDEMPOTENT_XADD = `local id = redis.call('GET', KEYS[2])
if id then return id end
if ARGV[4] then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'd', ARGV[2], 't', ARGV[4])
else
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'd', ARGV[2])
end
redis.call('SET', KEYS[2], id, 'PX', ARGV[3])
return id`;

/**
 * An event log on one Redis stream, for `new EventChannel({ log })`. Open
 * one per channel and instance with {@linkcode RedisStreamLog.open}, from
 * the client you have and a one-line adapter (see the module docs); entries
 * are `XADD`ed with fields `d` (the encoded event) and `t` (its topic).
 *
 * @example Adapters, and what opening checks
 * ```ts
 * import { type RedisCommand, RedisStreamLog } from "@ssekit/sse/redis";
 * import assert from "node:assert/strict";
 *
 * // node-redis: (args) => client.sendCommand(args)
 * // ioredis:    ([name, ...args]) => client.call(name!, ...args)
 * // Bun:        ([name, ...args]) => client.send(name!, args)
 * const down: RedisCommand = () => Promise.reject(new Error("ECONNREFUSED"));
 * await assert.rejects(
 *   RedisStreamLog.open({ key: "news", command: down, reader: down }),
 *   /ECONNREFUSED/,
 * );
 * await assert.rejects(
 *   RedisStreamLog.open({ key: "", command: down, reader: down }),
 *   /key is "", expected a non-empty string/,
 * );
 * ```
 */
export class RedisStreamLog {
  #key: string;
  #command: RedisCommand;
  #reader: RedisCommand;
  #maxLength: string;
  #memory: number;
  #block: string;
  #retryDelay: number;
  #keyTtl: string;
  /** The id of the newest entry read, `"0-0"` for none. */
  #position: string;
  /** Recent entries, oldest first; `#base` is the id just before them. */
  #window: Entry[] = [];
  #base: string;
  #sinks: RedisLogSink[] = [];
  #running = false;
  #stopped = false;
  #timer: ReturnType<typeof setTimeout> | undefined;

  private constructor(options: RedisStreamLogOptions, position: string) {
    this.#key = options.key;
    this.#command = options.command;
    this.#reader = options.reader;
    this.#maxLength = String(options.maxLength ?? 10_000);
    this.#memory = options.memory ?? 1000;
    this.#block = String(options.block ?? 1000);
    this.#retryDelay = options.retryDelay ?? 200;
    this.#keyTtl = String(options.keyTtl ?? 600_000);
    this.#position = position;
    this.#base = position;
  }

  /**
   * Opens the log at the stream's current end: the channel delivers the
   * events appended from now on. Rejects when Redis cannot be reached.
   */
  static async open(options: RedisStreamLogOptions): Promise<RedisStreamLog> {
    if (typeof options.key !== "string" || options.key === "") {
      throw new TypeError(
        `Cannot open RedisStreamLog: key is ${
          JSON.stringify(options.key)
        }, expected a non-empty string`,
      );
    }
    for (const name of ["command", "reader"] as const) {
      if (typeof options[name] !== "function") {
        throw new TypeError(
          `Cannot open RedisStreamLog: ${name} is ${typeof options[
            name
          ]}, expected a function (args: string[]) => Promise<reply>`,
        );
      }
    }
    for (
      const name of [
        "maxLength",
        "memory",
        "block",
        "retryDelay",
        "keyTtl",
      ] as const
    ) {
      const value = options[name];
      if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
        throw new RangeError(
          `Cannot open RedisStreamLog: ${name} is ${value}, expected an integer >= 0`,
        );
      }
    }
    const last = parseEntries(
      await options.command(["XREVRANGE", options.key, "+", "-", "COUNT", "1"]),
    );
    return new RedisStreamLog(options, last[0]?.id ?? "0-0");
  }

  /**
   * Appends the event with `XADD` (once: a failure is not retried, the
   * promise rejects) and resolves with its stream id. With `key`, at most
   * one event is appended per key within `keyTtl`, and a repeat resolves
   * with the first one's id.
   */
  async append(
    text: string,
    topic: string | undefined,
    key?: string,
  ): Promise<string> {
    let reply: unknown;
    if (key !== undefined) {
      const args = ["EVAL", IDEMPOTENT_XADD, "2", this.#key];
      args.push(`${this.#key}:key:${key}`, this.#maxLength, text, this.#keyTtl);
      if (topic !== undefined) args.push(topic);
      reply = await this.#command(args);
    } else {
      const args = ["XADD", this.#key, "MAXLEN", "~", this.#maxLength, "*"];
      args.push("d", text);
      if (topic !== undefined) args.push("t", topic);
      reply = await this.#command(args);
    }
    const id = str(reply);
    if (!STREAM_ID.test(id)) {
      throw new TypeError(
        `XADD to ${this.#key} replied ${
          JSON.stringify(id)
        }, expected a stream id`,
      );
    }
    return id;
  }

  /** Starts the reader (once) and hands it every event read to `sink`. */
  follow(sink: RedisLogSink): { position: string; stop(): void } {
    this.#sinks.push(sink);
    if (!this.#running) {
      this.#running = true;
      void this.#run();
    }
    return {
      position: this.#position,
      stop: () => {
        this.#sinks = this.#sinks.filter((s) => s !== sink);
        if (this.#sinks.length === 0) this.close();
      },
    };
  }

  /**
   * Stops the reader. Its blocked `XREAD` returns within `block` ms; close
   * the reader connection to end it at once.
   */
  close(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The id of the newest event this instance has read. */
  get position(): string {
    return this.#position;
  }

  /**
   * The events after `after` up to `upTo`: from memory when held, else
   * from the stream, read from `after` inclusive and checked to start with
   * it. Rejects when Redis cannot be reached.
   */
  async read(
    after: string,
    upTo: string,
    options: { topics: ReadonlySet<string> | null; limit: number },
  ): Promise<RedisLogRead> {
    if (!STREAM_ID.test(after) || after === "0-0" && after !== this.#base) {
      return { kind: "reset" };
    }
    if (after === upTo) return { kind: "entries", entries: [] };
    if (compareIds(after, upTo) > 0) {
      // From a faster instance, if the stream has it.
      const found = parseEntries(
        await this.#command(["XRANGE", this.#key, after, after]),
      );
      return found.length === 1 ? { kind: "ahead" } : { kind: "reset" };
    }
    const window = this.#window;
    let from = -1;
    if (after === this.#base) from = 0;
    else {
      for (let i = window.length - 1; i >= 0; i--) {
        if (window[i]!.id === after) {
          from = i + 1;
          break;
        }
        if (compareIds(window[i]!.id, after) < 0) break;
      }
    }
    let entries: Entry[];
    if (from >= 0) {
      entries = [];
      for (let i = from; i < window.length; i++) {
        entries.push(window[i]!);
        if (window[i]!.id === upTo) break;
      }
    } else {
      const count = options.limit + 2;
      const read = parseEntries(
        await this.#command([
          "XRANGE",
          this.#key,
          after,
          upTo,
          "COUNT",
          String(count),
        ]),
      );
      if (read[0]?.id !== after) return { kind: "reset" }; // trimmed away
      if (read.length === count && read.at(-1)!.id !== upTo) {
        return { kind: "reset" }; // more than the limit
      }
      entries = read.slice(1);
    }
    const { topics, limit } = options;
    const out: Entry[] = [];
    for (const entry of entries) {
      const { topic } = entry;
      if (topics === null || topic === undefined || topics.has(topic)) {
        if (out.length === limit) return { kind: "reset" };
        out.push(entry);
      }
    }
    return { kind: "entries", entries: out };
  }

  async #run(): Promise<void> {
    let check = false;
    while (!this.#stopped) {
      try {
        if (check) await this.#check();
        check = false;
        const reply = await this.#reader([
          "XREAD",
          "COUNT",
          "1000",
          "BLOCK",
          this.#block,
          "STREAMS",
          this.#key,
          this.#position,
        ]);
        if (this.#stopped) break;
        const entries = parseRead(reply);
        if (entries.length === 0) {
          check = true; // idle: make sure the position still exists
          continue;
        }
        this.#receive(entries);
      } catch {
        if (this.#stopped) break;
        check = true;
        await new Promise<void>((resolve) => {
          this.#timer = setTimeout(resolve, this.#retryDelay);
        });
        this.#timer = undefined;
      }
    }
  }

  /**
   * After a failure or an idle read: when the stream no longer has this
   * instance's position (Redis restarted empty, or the stream was trimmed
   * past it), events may be lost: every member is reset.
   */
  async #check(): Promise<void> {
    const position = this.#position;
    if (position === "0-0") return;
    const found = parseEntries(
      await this.#command(["XRANGE", this.#key, position, position]),
    );
    if (found.length === 1 || this.#stopped) return;
    const last = parseEntries(
      await this.#command(["XREVRANGE", this.#key, "+", "-", "COUNT", "1"]),
    );
    const id = last[0]?.id ?? "0-0";
    this.#position = id;
    this.#base = id;
    this.#window = [];
    for (const sink of this.#sinks) sink.reset(id);
  }

  #receive(entries: Entry[]): void {
    const window = this.#window;
    for (const entry of entries) {
      if (compareIds(entry.id, this.#position) <= 0) continue;
      this.#position = entry.id;
      window.push(entry);
      for (const sink of this.#sinks) {
        sink.event(entry.id, entry.topic, entry.text);
      }
    }
    const excess = window.length - this.#memory;
    if (excess > 0) {
      this.#base = window[excess - 1]!.id;
      this.#window = window.slice(excess);
    }
  }
}

/** Compares two stream ids (`ms-seq`). */
function compareIds(a: string, b: string): number {
  const [am = "", as = ""] = a.split("-");
  const [bm = "", bs = ""] = b.split("-");
  if (am.length !== bm.length) return am.length - bm.length;
  if (am !== bm) return am < bm ? -1 : 1;
  if (as.length !== bs.length) return as.length - bs.length;
  return as === bs ? 0 : as < bs ? -1 : 1;
}

const textDecoder = new TextDecoder();

/** A reply value as a string (clients may return buffers). */
function str(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) return textDecoder.decode(value);
  if (typeof value === "number") return String(value);
  return String(value);
}

/** Field-value pairs: a flat array, a Map or an object. */
function fields(value: unknown): Map<string, string> {
  const out = new Map<string, string>();
  if (Array.isArray(value)) {
    for (let i = 0; i + 1 < value.length; i += 2) {
      out.set(str(value[i]), str(value[i + 1]));
    }
  } else if (value instanceof Map) {
    for (const [k, v] of value) out.set(str(k), str(v));
  } else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) out.set(k, str(v));
  }
  return out;
}

/** Stream entries from an XRANGE-like reply, in any client's shape. */
function parseEntries(reply: unknown): Entry[] {
  const out: Entry[] = [];
  if (reply === null || reply === undefined) return out;
  const list = Array.isArray(reply)
    ? reply
    : reply instanceof Map
    ? [...reply].map(([id, f]) => [id, f])
    : Object.entries(reply as object);
  for (const item of list) {
    let id: string;
    let values: Map<string, string>;
    if (Array.isArray(item)) {
      id = str(item[0]);
      values = fields(item[1]);
    } else if (item !== null && typeof item === "object" && "id" in item) {
      // node-redis's own transformed shape: { id, message }.
      const record = item as { id: unknown; message?: unknown };
      id = str(record.id);
      values = fields(record.message);
    } else continue;
    const text = values.get("d");
    if (text === undefined) continue; // not one of ours
    out.push({ id, topic: values.get("t"), text: `id:${id}\n${text}` });
  }
  return out;
}

/**
 * Entries from an XREAD reply on one stream: RESP2 `[[key, entries]]`,
 * ioredis's `[key, entries]`, node-redis's `[{ name, messages }]`, or a
 * RESP3 map (`Map` or object) from key to entries.
 */
function parseRead(reply: unknown): Entry[] {
  if (reply === null || reply === undefined) return [];
  if (Array.isArray(reply)) {
    const first = reply[0];
    // RESP2: [[key, entries]]; ioredis's `call`: [key, entries].
    if (Array.isArray(first)) return parseEntries(first[1]);
    if (typeof first === "string" || first instanceof Uint8Array) {
      return parseEntries(reply[1]);
    }
    if (first !== null && typeof first === "object" && "messages" in first) {
      return parseEntries((first as { messages: unknown }).messages);
    }
    return [];
  }
  if (reply instanceof Map) {
    const [entries] = reply.values();
    return parseEntries(entries);
  }
  if (typeof reply === "object") {
    const [entries] = Object.values(reply as object);
    return parseEntries(entries);
  }
  return [];
}
