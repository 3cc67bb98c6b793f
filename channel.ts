/**
 * Broadcast with history and resume from `Last-Event-ID`.
 *
 * An {@linkcode EventChannel} fans every published event out to all of its
 * members (usually {@linkcode EventEndpoint}s). Each event is encoded once and
 * the same bytes go to every member; events published in the same tick are
 * written as one chunk. The channel assigns every event an id and keeps a
 * bounded history, so a client that reconnects with `Last-Event-ID` first gets
 * exactly the events it missed, then the live ones. When its id is too old or
 * unknown, it gets a `reset` event instead, so it knows to reload its state.
 *
 * A slow client never delays the others: `publish` never waits for a member.
 * The channel writes to a member while its endpoint buffers less than the
 * member's high-water mark, and queues the rest for it. Once that queue is a
 * high-water mark long too, the channel either closes the member (a browser
 * reconnects and resumes from history) or drops its oldest queued events and
 * sends it a `dropped` event with the count. Since the channel never writes
 * past the mark, endpoints keep their default `overflow: "wait"`.
 *
 * @example Broadcast and resume with `Deno.serve`
 * ```ts
 * import { EventEndpoint } from "@ssekit/sse/server";
 * import { EventConsumer } from "@ssekit/sse/client";
 * import { EventChannel, MemoryHistoryStore } from "@ssekit/sse/channel";
 * import assert from "node:assert/strict";
 *
 * // Keep the last 1000 events, none older than five minutes.
 * const prices = new EventChannel({
 *   history: new MemoryHistoryStore({ maxCount: 1000, maxAge: 5 * 60_000 }),
 * });
 *
 * const server = Deno.serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   (request) => {
 *     const endpoint = new EventEndpoint(request);
 *     // First what this client missed (after its Last-Event-ID), then live
 *     // events. The endpoint leaves the channel when the client goes away.
 *     prices.join(endpoint);
 *     return endpoint.response!;
 *   },
 * );
 *
 * // Every member gets every event, encoded once for all of them.
 * const seen = prices.publish({ event: "price", data: "1.08" });
 * prices.publish({ event: "price", data: "1.09" });
 *
 * // A client that saw the first price reconnects (EventSource sends
 * // Last-Event-ID by itself): it gets the second one first.
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`, {
 *   headers: { "last-event-id": seen },
 * });
 * for await (const event of new EventConsumer(response)) {
 *   assert.equal(event.data, "1.09");
 *   break; // leaving the loop closes the consumer
 * }
 * await server.shutdown();
 * ```
 *
 * The channel delivers what its {@linkcode EventLog} hands it. The default
 * {@linkcode LocalEventLog} keeps one process's events in a
 * {@linkcode HistoryStore}; `RedisStreamLog` from `ssekit/redis` shares one
 * channel between server instances on a Redis stream, so a client resumes
 * exactly on whichever instance its reconnect lands.
 *
 * In the browser, a plain `EventSource` resumes by itself:
 *
 * ```js ignore
 * const source = new EventSource("/prices");
 * source.addEventListener("price", (e) => render(JSON.parse(e.data)));
 * source.addEventListener("reset", () => reloadEverything());
 * ```
 *
 * @module
 */

import { encodeServerSentEvent } from "./sse.ts";
import type { ServerSentEventMessage } from "./sse.ts";

export type { ServerSentEventMessage };

/** An id the channel assigned to an event it published. Opaque to clients. */
export type EventId = string;

/**
 * What a channel needs from a member. {@linkcode EventEndpoint} has all of it;
 * anything else with these members (a test double, a custom transport) works
 * too.
 *
 * @example A member that records what it is sent
 * ```ts
 * import type { ChannelMember } from "@ssekit/sse/channel";
 *
 * class Recorder extends EventTarget implements ChannelMember {
 *   lastEventId = "";
 *   closed = false;
 *   bufferedAmount = 0;
 *   chunks: Uint8Array[] = [];
 *   write(encoded: Uint8Array): Promise<void> {
 *     this.chunks.push(encoded);
 *     return Promise.resolve();
 *   }
 *   close(): void {
 *     this.closed = true;
 *     this.dispatchEvent(new Event("close"));
 *   }
 * }
 * const member: ChannelMember = new Recorder();
 * ```
 */
export interface ChannelMember extends EventTarget {
  /** The `Last-Event-ID` the client sent, or `""`. */
  readonly lastEventId: string;
  /**
   * Whether the member is closed; a closed member is never written to, even
   * before its `close` event fires.
   */
  readonly closed: boolean;
  /** Bytes written and not yet taken by the client. */
  readonly bufferedAmount: number;
  /** The member's own high-water mark in bytes, if it has one. */
  readonly highWaterMark?: number;
  /**
   * Settles once `bufferedAmount` is at most the member's `highWaterMark`
   * (like `WritableStreamDefaultWriter.ready`). A member without
   * {@linkcode ChannelMember.drained | drained} that is behind is written to
   * again then, if its buffer is past its own mark.
   */
  readonly ready?: Promise<unknown>;
  /**
   * Settles once `bufferedAmount` is at most `bytes`, or the member closed
   * (`EventEndpoint.drained` is one). A member that is behind is
   * written to again then: the channel asks for room for its next chunk
   * under the channel's limit, which may be lower than the member's own
   * `highWaterMark`. A member with neither this nor `ready` (or with only
   * `ready` while its buffer is under its own mark) is checked again after
   * each of its writes settles, or every few milliseconds.
   *
   * @param bytes The threshold in bytes (`>= 0`).
   */
  drained?(bytes: number): Promise<unknown>;
  /**
   * Queues already-encoded event-stream bytes. The returned promise settles
   * when the member accepted them (or failed); a member that is behind is
   * written to again then.
   */
  write(encoded: Uint8Array): Promise<unknown>;
  /**
   * Closes the member. Whoever closes it, it dispatches a `close` event,
   * and the channel lets it go.
   */
  close(): void;
  /**
   * Ends the connection at once, dropping what is buffered (a hard close);
   * it dispatches `close` too. The `"close"` overflow policy uses it when
   * present, so a stalled client is disconnected now instead of after it
   * drains; without it, `close()`.
   */
  abort?(reason?: unknown): void;
}

/** One published event as a {@linkcode HistoryStore} keeps it. */
export interface HistoryEntry {
  /** The id the channel assigned. */
  readonly id: EventId;
  /** The topic it was published under, if any. */
  readonly topic: string | undefined;
  /** The encoded event, `id:` line included, exactly as members got it. */
  readonly bytes: Uint8Array;
}

/** What a {@linkcode HistoryStore} holds right now. */
export interface HistoryBounds {
  /** Number of events held. */
  readonly count: number;
  /** Id of the oldest event held, if any. */
  readonly oldestId: EventId | undefined;
  /** Id of the newest event held, if any. */
  readonly newestId: EventId | undefined;
}

/**
 * Where a channel keeps the events a reconnecting client may have missed.
 * {@linkcode MemoryHistoryStore} is the default; a shared backend can
 * implement this to keep history across server instances.
 *
 * `readAfter` may return a promise. It must then still reflect every
 * `append` made before it was called (the channel delivers later events
 * live and drops any the read also returns).
 *
 * @example A store that keeps nothing, so every resume is a reset
 * ```ts
 * import type { HistoryBounds, HistoryEntry, HistoryStore } from "@ssekit/sse/channel";
 *
 * const none: HistoryStore = {
 *   append(_entry: HistoryEntry): void {},
 *   readAfter(_id: string): null {
 *     return null;
 *   },
 *   bounds(): HistoryBounds {
 *     return { count: 0, oldestId: undefined, newestId: undefined };
 *   },
 * };
 * ```
 */
export interface HistoryStore {
  /** Records a published event, newest last. */
  append(entry: HistoryEntry): void;
  /**
   * Every held event published after the event `id`, oldest first: `[]`
   * when `id` is the newest event, and `null` when `id` is unknown or older
   * than the history, i.e. events after it may be missing.
   *
   * `topics` are the reader's topics (`null`: every topic). A store may use
   * them to tell that the events it evicted after `id` were all of other
   * topics, so the reader missed nothing; it may also ignore them (the
   * channel filters what it returns).
   */
  readAfter(
    id: EventId,
    topics?: ReadonlySet<string> | null,
  ): readonly HistoryEntry[] | null | Promise<readonly HistoryEntry[] | null>;
  /** What the store holds right now. */
  bounds(): HistoryBounds;
}

/** Options for {@linkcode MemoryHistoryStore}. */
export interface MemoryHistoryStoreOptions {
  /**
   * The most events kept; older ones are evicted first. `0` keeps none, so
   * only a client that missed nothing can resume.
   *
   * @default {1000}
   */
  maxCount?: number;
  /**
   * The oldest an event may get, in milliseconds, before it is evicted.
   *
   * @default {Infinity}
   */
  maxAge?: number;
  /**
   * The clock, in milliseconds. Inject one to test age bounds without
   * waiting.
   *
   * @default {Date.now}
   */
  now?: () => number;
}

/**
 * The default {@linkcode HistoryStore}: a ring buffer in memory, bounded by
 * count and by age.
 *
 * @example Bounded by count and age
 * ```ts
 * import { MemoryHistoryStore } from "@ssekit/sse/channel";
 * import assert from "node:assert/strict";
 *
 * let now = 0;
 * const store = new MemoryHistoryStore({ maxCount: 2, maxAge: 1000, now: () => now });
 * const bytes = new TextEncoder().encode("data:x\n\n");
 * store.append({ id: "a", topic: undefined, bytes });
 * store.append({ id: "b", topic: undefined, bytes });
 * store.append({ id: "c", topic: undefined, bytes }); // evicts "a"
 * assert.deepEqual(store.readAfter("a")?.map((e) => e.id), ["b", "c"]);
 * now = 2000; // everything is too old now
 * assert.deepEqual(store.readAfter("c"), []);
 * assert.equal(store.readAfter("a"), null);
 * ```
 */
export class MemoryHistoryStore implements HistoryStore {
  #maxCount: number;
  #maxAge: number;
  #now: () => number;
  // Ring buffer: the entry appended n-th lives at slot n % maxCount.
  #entries: (HistoryEntry | undefined)[] = [];
  #times: number[] = [];
  #appended = 0;
  #count = 0;
  // A client whose last event was evicted most recently still missed nothing.
  #lastEvictedId: EventId | undefined;
  // Per topic (`undefined`: no topic), the position of its newest evicted
  // event, so a reader of some topics whose last event was evicted can tell
  // whether anything of its topics was evicted after it. Bounded: the topic
  // evicted longest ago is forgotten first, and a forgotten topic counts as
  // evicted at `#forgottenAt` (a reset, never a silent gap).
  #evictedTopics = new Map<string | undefined, number>();
  // The position of each topic's newest evicted event, by id.
  #evictedIds = new Map<EventId, number>();
  #evictedIdOf = new Map<string | undefined, EventId>();
  #forgottenAt = -1;

  /** Creates an empty store. */
  constructor(options: MemoryHistoryStoreOptions = {}) {
    const { maxCount = 1000, maxAge = Infinity, now = Date.now } = options;
    if (!Number.isSafeInteger(maxCount) || maxCount < 0) {
      throw new RangeError(
        `Cannot create MemoryHistoryStore: maxCount is ${maxCount}, expected an integer >= 0`,
      );
    }
    if (typeof maxAge !== "number" || Number.isNaN(maxAge) || maxAge < 0) {
      throw new RangeError(
        `Cannot create MemoryHistoryStore: maxAge is ${maxAge}, expected a number of milliseconds >= 0`,
      );
    }
    this.#maxCount = maxCount;
    this.#maxAge = maxAge;
    this.#now = now;
  }

  /** Records an event, evicting the oldest one when full. */
  append(entry: HistoryEntry): void {
    this.#evictExpired();
    if (this.#maxCount === 0) {
      this.#evicted(entry, this.#appended++);
      return;
    }
    if (this.#count === this.#maxCount) this.#evictOldest();
    const position = this.#appended++;
    const slot = position % this.#maxCount;
    this.#entries[slot] = entry;
    if (this.#maxAge !== Infinity) this.#times[slot] = this.#now();
    this.#count++;
  }

  /**
   * The held events after `id`, or `null` when `id` is unknown, or evicted
   * along with later events of `topics` (by default: of any topic).
   */
  readAfter(
    id: EventId,
    topics: ReadonlySet<string> | null = null,
  ): HistoryEntry[] | null {
    this.#evictExpired();
    const oldest = this.#appended - this.#count;
    // A scan from the newest end: resumes are usually recent, and no index
    // has to be kept up to date on every append.
    let from = -1;
    for (let p = this.#appended - 1; p >= oldest; p--) {
      if (this.#entries[p % this.#maxCount]!.id === id) {
        from = p + 1;
        break;
      }
    }
    if (from < 0) {
      if (!this.#missedNothingEvicted(id, topics)) return null;
      from = oldest;
    }
    const entries: HistoryEntry[] = new Array(this.#appended - from);
    for (let p = from; p < this.#appended; p++) {
      entries[p - from] = this.#entries[p % this.#maxCount]!;
    }
    return entries;
  }

  /** How many events are held, and the oldest and newest ids. */
  bounds(): HistoryBounds {
    this.#evictExpired();
    if (this.#count === 0) {
      return { count: 0, oldestId: undefined, newestId: undefined };
    }
    const oldest =
      this.#entries[(this.#appended - this.#count) % this.#maxCount];
    const newest = this.#entries[(this.#appended - 1) % this.#maxCount];
    return { count: this.#count, oldestId: oldest!.id, newestId: newest!.id };
  }

  #evictOldest(): void {
    const slot = (this.#appended - this.#count) % this.#maxCount;
    const entry = this.#entries[slot]!;
    this.#entries[slot] = undefined;
    this.#evicted(entry, this.#appended - this.#count);
    this.#count--;
  }

  #evicted(entry: HistoryEntry, position: number): void {
    this.#lastEvictedId = entry.id;
    const topic = entry.topic;
    const topics = this.#evictedTopics;
    const previous = this.#evictedIdOf.get(topic);
    if (previous !== undefined) this.#evictedIds.delete(previous);
    topics.delete(topic); // re-inserted last: the map is oldest first
    topics.set(topic, position);
    this.#evictedIdOf.set(topic, entry.id);
    this.#evictedIds.set(entry.id, position);
    if (topics.size > MAX_EVICTED_TOPICS) {
      const [forgotten, at] = topics.entries().next().value!;
      topics.delete(forgotten);
      this.#evictedIds.delete(this.#evictedIdOf.get(forgotten)!);
      this.#evictedIdOf.delete(forgotten);
      if (at > this.#forgottenAt) this.#forgottenAt = at;
    }
  }

  /** Whether a reader whose last event `id` was evicted missed nothing. */
  #missedNothingEvicted(
    id: EventId,
    topics: ReadonlySet<string> | null,
  ): boolean {
    if (id === this.#lastEvictedId) return true;
    if (topics === null) return false;
    const at = this.#evictedIds.get(id);
    if (at === undefined) return false;
    const evicted = this.#evictedTopics;
    const newest = (topic: string | undefined): number =>
      evicted.get(topic) ?? this.#forgottenAt;
    if (newest(undefined) > at) return false;
    for (const topic of topics) if (newest(topic) > at) return false;
    return true;
  }

  #evictExpired(): void {
    if (this.#maxAge === Infinity) return;
    const limit = this.#now() - this.#maxAge;
    while (
      this.#count > 0 &&
      this.#times[(this.#appended - this.#count) % this.#maxCount]! < limit
    ) {
      this.#evictOldest();
    }
  }
}

/** One event as an {@linkcode EventLog} delivers it. */
export interface LogEntry {
  /** Its id: unique in the log, across restarts too. */
  readonly id: EventId;
  /** The topic it was published under, if any. */
  readonly topic: string | undefined;
  /** The encoded event, its `id:` line included. */
  readonly text: string;
}

/** What an {@linkcode EventLog} tells the channel that follows it. */
export interface LogSink {
  /** An event, in log order, each exactly once. */
  event(id: EventId, topic: string | undefined, text: string): void;
  /**
   * Events may have been lost (the log was emptied, or could not be read
   * from where the channel was): every member gets the `reset` event with
   * id `id`, then the events after `id`.
   */
  reset(id: EventId): void;
}

/**
 * The answer to {@linkcode EventLog.read}: `"entries"` with the events
 * after the id (possibly none); `"ahead"` when the id is a real event the
 * channel has not received yet (the client came from a faster instance: the
 * channel skips live events up to it); `"reset"` when events after the id
 * may be missing, or the id is malformed, foreign, or too far back.
 */
export type LogRead =
  | { readonly kind: "entries"; readonly entries: readonly LogEntry[] }
  | { readonly kind: "ahead" }
  | { readonly kind: "reset" };

/** Options for {@linkcode EventLog.read}. */
export interface LogReadOptions {
  /** The reader's topics; `null` for every topic. */
  readonly topics: ReadonlySet<string> | null;
  /** Read `"reset"` rather than more than this many events. */
  readonly limit: number;
}

/**
 * The engine behind an {@linkcode EventChannel}: an ordered log the channel
 * appends to, follows, and reads ranges from. {@linkcode LocalEventLog} (in
 * memory, or any {@linkcode HistoryStore}) is the default; `ssekit/redis`
 * has one on Redis Streams, shared by several server instances.
 *
 * `Appended` is what `append` (and so `EventChannel.publish`) returns: the
 * id, or a promise of it for a log on another machine.
 *
 * @example A log that forwards to a local one and counts appends
 * ```ts
 * import { EventChannel, LocalEventLog, type EventLog } from "@ssekit/sse/channel";
 * import assert from "node:assert/strict";
 *
 * const local = new LocalEventLog();
 * let appended = 0;
 * const log: EventLog<string> = {
 *   append: (text, topic) => (appended++, local.append(text, topic)),
 *   follow: (sink) => local.follow(sink),
 *   read: (after, upTo, options) => local.read(after, upTo, options),
 * };
 * const channel = new EventChannel({ log });
 * channel.publish({ data: "x" });
 * assert.equal(appended, 1);
 * ```
 */
export interface EventLog<Appended extends EventId | Promise<EventId>> {
  /**
   * Appends an encoded event (without its `id:` line) under `topic`. The
   * channel delivers it when the log hands it to the sink, never before.
   * `key`, when given, makes the append idempotent: a second append with
   * the same key returns the first one's id and appends nothing.
   */
  append(text: string, topic: string | undefined, key?: string): Appended;
  /**
   * Starts handing every event appended from now on (by anyone) to `sink`,
   * in log order. Returns the id of the newest event before them (`""` when
   * there is none), and a function that stops.
   */
  follow(sink: LogSink): { position: EventId; stop(): void };
  /**
   * The events after `after`, up to and including `upTo` (the newest event
   * the channel has received, `""` for none), filtered by topic or not.
   * Rejects when the log cannot be read now (the channel then closes the
   * member's connection so the client retries): never a false `"reset"`.
   */
  read(
    after: EventId,
    upTo: EventId,
    options: LogReadOptions,
  ): LogRead | Promise<LogRead>;
}

/** Options for {@linkcode LocalEventLog}. */
export interface LocalEventLogOptions {
  /**
   * Where the events are kept for clients that reconnect.
   *
   * @default {new MemoryHistoryStore()}
   */
  history?: HistoryStore;
  /**
   * Put before every id. Each log also puts a random epoch in its ids, so
   * an id from an earlier process is never mistaken for one of this one's
   * (unless `history` kept it, e.g. on disk: then it resumes).
   *
   * @default {""}
   */
  idPrefix?: string;
  /**
   * The part of every id that tells this log's ids from another process's.
   * Leave the default (random) in production: a fixed epoch with a fresh
   * history makes a client from before a restart resume at the wrong event.
   * Tests fix it to get predictable ids.
   *
   * @default {8 random characters of [0-9a-z]}
   */
  epoch?: string;
}

/**
 * The default {@linkcode EventLog}: one process, events kept in a
 * {@linkcode HistoryStore}. Ids are `<idPrefix><epoch>-<n>`, with a random
 * epoch per log, so ids stay unique across restarts.
 *
 * @example
 * ```ts
 * import { LocalEventLog } from "@ssekit/sse/channel";
 * import assert from "node:assert/strict";
 *
 * const log = new LocalEventLog({ idPrefix: "doc-" });
 * const id = log.append("data:x\n\n", undefined);
 * assert.match(id, /^doc-[0-9a-z]+-1$/);
 * ```
 */
export class LocalEventLog implements EventLog<EventId> {
  #history: HistoryStore;
  #prefix: string;
  #seq = 0;
  #sinks: LogSink[] = [];

  /** Creates an empty log. */
  constructor(options: LocalEventLogOptions = {}) {
    const {
      history = new MemoryHistoryStore(),
      idPrefix = "",
      epoch = randomEpoch(),
    } = options;
    for (const [name, value] of [["idPrefix", idPrefix], ["epoch", epoch]]) {
      if (typeof value !== "string" || /[\r\n\0]/.test(value)) {
        throw new TypeError(
          `Cannot create EventChannel: ${name} ${
            JSON.stringify(value)
          } contains CR, LF or NUL, expected text that can be part of an event id`,
        );
      }
    }
    this.#history = history;
    this.#prefix = idPrefix + epoch + "-";
  }

  /** Records the event, hands it to the followers now, and returns its id. */
  append(text: string, topic: string | undefined): EventId {
    const id = this.#prefix + ++this.#seq;
    const full = "id:" + id + "\n" + text;
    this.#history.append(new ChannelEntry(id, topic, full));
    for (const sink of this.#sinks) sink.event(id, topic, full);
    return id;
  }

  /** Hands every later event to `sink`. */
  follow(sink: LogSink): { position: EventId; stop(): void } {
    this.#sinks.push(sink);
    return {
      position: this.#seq === 0 ? "" : this.#prefix + this.#seq,
      stop: () => {
        this.#sinks = this.#sinks.filter((s) => s !== sink);
      },
    };
  }

  /** The events after `after` from the history, or `"reset"`. */
  read(
    after: EventId,
    upTo: EventId,
    options: LogReadOptions,
  ): LogRead | Promise<LogRead> {
    if (after === upTo) return { kind: "entries", entries: [] };
    let read: ReturnType<HistoryStore["readAfter"]>;
    try {
      read = this.#history.readAfter(after, options.topics);
    } catch {
      return RESET;
    }
    if (read === null || Array.isArray(read)) {
      return toRead(read as readonly HistoryEntry[] | null, upTo, options);
    }
    return (read as Promise<readonly HistoryEntry[] | null>).then(
      (entries) => toRead(entries, upTo, options),
      () => RESET,
    );
  }
}

const RESET: LogRead = { kind: "reset" };
const historyDecoder = new TextDecoder();

function toRead(
  entries: readonly HistoryEntry[] | null,
  upTo: EventId,
  options: LogReadOptions,
): LogRead {
  if (entries === null) return RESET;
  const { topics, limit } = options;
  const out: LogEntry[] = [];
  for (const entry of entries) {
    const { topic } = entry;
    if (topics === null || topic === undefined || topics.has(topic)) {
      if (out.length === limit) return RESET;
      out.push(
        entry instanceof ChannelEntry ? entry : {
          id: entry.id,
          topic,
          text: historyDecoder.decode(entry.bytes),
        },
      );
    }
    // Later events are delivered live.
    if (entry.id === upTo) break;
  }
  return { kind: "entries", entries: out };
}

function randomEpoch(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  let epoch = "";
  for (const byte of bytes) epoch += (byte % 36).toString(36);
  return epoch;
}

/** What a channel does with a member whose backlog passed its high-water mark. */
export type ChannelOverflowPolicy = "close" | "drop-oldest";

/** Options for {@linkcode EventChannel}. */
export interface EventChannelOptions<
  Appended extends EventId | Promise<EventId> = EventId,
> {
  /**
   * The log the channel appends to and delivers from, for example
   * `RedisStreamLog` from `ssekit/redis` to share a channel between server
   * instances. `history` and `idPrefix` apply only without it.
   *
   * @default {new LocalEventLog({ history, idPrefix })}
   */
  log?: EventLog<Appended>;
  /**
   * Where published events are kept for clients that reconnect (without
   * `log`).
   *
   * @default {new MemoryHistoryStore()}
   */
  history?: HistoryStore;
  /**
   * The most events replayed to one reconnecting client; one that missed
   * more gets the `reset` event instead.
   *
   * @default {10000}
   */
  maxReplay?: number;
  /**
   * What to do once the channel's queue for a member is longer than its
   * high-water mark: `"close"` closes it (a browser then reconnects and
   * resumes from history) and `"drop-oldest"` discards its oldest queued
   * events and sends it the `dropped` event.
   *
   * @default {"close"}
   */
  overflow?: ChannelOverflowPolicy;
  /**
   * A member's high-water mark in bytes, unless it reports its own: the
   * channel writes to it while its endpoint buffers less than this (a tick's
   * events always go to an endpoint with an empty buffer), and queues the
   * rest; the overflow policy applies once the queue is longer than this
   * too. When set, it applies to every member, `EventEndpoint`s included;
   * when not, a member's own high-water mark applies.
   *
   * @default {the member's highWaterMark, else 1048576}
   */
  highWaterMark?: number;
  /**
   * Sent to a client that resumes from an id the history no longer holds (or
   * never did). The channel adds an `id` so the client's next resume works.
   * `null` sends nothing.
   *
   * @default {{ event: "reset", data: "" }}
   */
  reset?: Omit<ServerSentEventMessage, "id"> | null;
  /**
   * Builds the event that tells a member how many events the `"drop-oldest"`
   * policy discarded. It is sent just before the next event it does get.
   *
   * @default {(count) => ({ event: "dropped", data: String(count) })}
   */
  dropped?: (count: number) => Omit<ServerSentEventMessage, "id">;
  /**
   * Put before every id (without `log`). Ids also carry a random epoch per
   * channel, so ids from an earlier server process are recognised as
   * foreign, whatever the prefix.
   *
   * @default {""}
   */
  idPrefix?: string;
}

/** Options for {@linkcode EventChannel.join}. */
export interface JoinOptions {
  /**
   * Resume after this id: replay the events after it first. `""` joins live.
   *
   * @default {endpoint.lastEventId}
   */
  lastEventId?: string;
  /**
   * Only deliver events published under one of these topics (and events
   * published without a topic).
   *
   * @default {every topic}
   */
  topics?: Iterable<string>;
  /**
   * This member's high-water mark in bytes (see
   * {@linkcode EventChannelOptions.highWaterMark}).
   *
   * @default {the channel's, else endpoint.highWaterMark, else 1048576}
   */
  highWaterMark?: number;
}

/** Options for {@linkcode EventChannel.publish}. */
export interface PublishOptions {
  /**
   * Deliver only to members that joined without topics or with this one.
   *
   * @default {undefined (every member)}
   */
  topic?: string;
  /**
   * An idempotency key, for a caller that retries a publish whose outcome
   * it does not know: the log appends at most one event per key (within
   * the time the log remembers keys) and returns that event's id again.
   * Needs a log that supports it (`RedisStreamLog` does; the local log
   * appends synchronously, so there is nothing to retry, and ignores it).
   *
   * @default {undefined}
   */
  key?: string;
}

/** Counters a channel keeps; see {@linkcode EventChannel.stats}. */
export interface ChannelStats {
  /** Members right now. */
  members: number;
  /**
   * Events the channel received from its log since it was created: those
   * published here, and with a shared log those published elsewhere too.
   */
  eventsPublished: number;
  /** Members closed by the `"close"` overflow policy. */
  membersDropped: number;
  /** Events discarded by the `"drop-oldest"` overflow policy. */
  eventsDropped: number;
  /** Bytes queued for all members: the channel's queues plus endpoint buffers. */
  queuedBytes: number;
  /** The largest backlog of any one member, in bytes. */
  maxQueuedBytes: number;
}

const DEFAULT_HIGH_WATER_MARK = 1 << 20;
// Topics whose newest evicted event a MemoryHistoryStore remembers.
const MAX_EVICTED_TOPICS = 10_000;
const DEFAULT_RESET: Omit<ServerSentEventMessage, "id"> = {
  event: "reset",
  data: "",
};
const defaultDropped = (
  count: number,
): Omit<ServerSentEventMessage, "id"> => ({
  event: "dropped",
  data: String(count),
});
// How often a member that is behind, with no write of its own in flight and
// no drain signal (`drained`, or `ready` past its own mark), checks whether
// it has room again.
const POLL_INTERVAL = 5;

const entryEncoder = new TextEncoder();

/**
 * A history entry as the channel makes it: it keeps the text, and encodes it
 * only if a store asks for `bytes` (encoding each event on its own costs more
 * than the rest of `publish`; the channel encodes a tick's events together).
 */
class ChannelEntry implements HistoryEntry {
  readonly id: EventId;
  readonly topic: string | undefined;
  readonly text: string;
  #bytes: Uint8Array | undefined;

  constructor(id: EventId, topic: string | undefined, text: string) {
    this.id = id;
    this.topic = topic;
    this.text = text;
  }

  get bytes(): Uint8Array {
    return this.#bytes ??= entryEncoder.encode(this.text);
  }
}

/**
 * Events published in one tick, written to members as one chunk. The texts
 * are encoded to UTF-8 together, once: one allocation per tick, not per event.
 */
class Batch {
  readonly firstSeq: number;
  ids: EventId[] = [];
  texts: string[] = [];
  topics: (string | undefined)[] = [];
  hasTopics = false;
  count = 0;
  bytes: Uint8Array = new Uint8Array();
  #ascii = true;
  /** `#ends[i]` is the offset in `bytes` just after event i; made on demand. */
  #ends: number[] | null = null;

  constructor(firstSeq: number) {
    this.firstSeq = firstSeq;
  }

  seal(encoder: TextEncoder): void {
    const texts = this.texts;
    const joined = texts.length === 1 ? texts[0]! : texts.join("");
    this.bytes = encoder.encode(joined);
    this.#ascii = this.bytes.byteLength === joined.length;
    this.count = texts.length;
  }

  /** The offset in `bytes` where event `event` (or the end, at `count`) starts. */
  start(event: number): number {
    if (event === 0) return 0;
    if (event === this.count) return this.bytes.byteLength;
    if (this.#ends === null) {
      const ends: number[] = [];
      let offset = 0;
      for (const text of this.texts) {
        ends.push(offset += this.#ascii ? text.length : utf8Length(text));
      }
      this.#ends = ends;
    }
    return this.#ends[event - 1]!;
  }

  /** Bytes of events `from` to `to` (exclusive). */
  size(from: number, to: number): number {
    return this.start(to) - this.start(from);
  }

  /**
   * Events `from` to `to` (exclusive); the whole batch is the same object,
   * a part is a copy (a view would keep the whole batch alive for as long
   * as the member's endpoint holds it, but count only the part).
   */
  slice(from: number, to: number): Uint8Array {
    if (from === 0 && to === this.count) return this.bytes;
    return this.bytes.slice(this.start(from), this.start(to));
  }

  /** A sealed batch of just events `from` to `to` (exclusive). */
  copy(from: number, to: number): Batch {
    const part = new Batch(this.firstSeq + from);
    part.ids = this.ids.slice(from, to);
    part.texts = this.texts.slice(from, to);
    part.topics = this.topics.slice(from, to);
    part.hasTopics = this.hasTopics;
    part.count = to - from;
    part.bytes = this.slice(from, to);
    part.#ascii = this.#ascii;
    return part;
  }
}

/** A run of consecutive events of one batch, queued for one member. */
interface Pending {
  batch: Batch;
  from: number;
  to: number;
}

/**
 * A member's empty queue, shared (never written: only a queue with parts
 * is). An idle member holds no array of its own.
 */
const NO_QUEUE = Object.freeze([]) as unknown as (Pending | undefined)[];

/**
 * How an `EventEndpoint` (sse.ts) takes a member as its one close watcher
 * instead of a registered `close` listener, which costs a few hundred bytes
 * per member on Bun and Node: `endpoint[CLOSE_WATCHER](state, true)` adds,
 * `(state, false)` removes; each returns whether it did. Any other member
 * (or an endpoint that already has a watcher) gets a `close` listener.
 */
const CLOSE_WATCHER = Symbol.for("ssekit.closeWatcher");

/** A member that may take a close watcher (see `CLOSE_WATCHER`). */
type Watchable = ChannelMember & {
  [CLOSE_WATCHER]?: (watcher: Member, add: boolean) => boolean;
};

/**
 * What the channel does when a member's endpoint fires `close` (set once by
 * {@linkcode EventChannel}'s static block: its private `#remove`). The
 * {@linkcode Member} is itself the `close` listener, so a member needs no
 * closure of its own for it.
 */
const channelOf = {} as {
  closed(
    channel: EventChannel<EventId | Promise<EventId>>,
    state: Member,
  ): void;
};

/** A channel's state for one member; the `close` listener of its endpoint. */
class Member {
  readonly channel: EventChannel<EventId | Promise<EventId>>;
  readonly endpoint: ChannelMember;
  readonly highWaterMark: number;
  readonly topics: ReadonlySet<string> | null;
  /** Events up to this sequence number come from the log's read, not live. */
  joinedAtSeq: number;
  /** Skip live events up to and including this id (the client has them). */
  skipThrough: EventId | undefined;
  /** Incremented by a reset of every member: a read under way is stale. */
  generation = 0;
  /**
   * Called when the member may have room again (ready, or a poll); made the
   * first time it waits.
   */
  onRoom: (() => void) | null = null;
  /** Whether `onRoom` is pending. */
  waiting = false;
  /**
   * Called when one of this member's writes settles; made at its first
   * write.
   */
  onSettled: (() => void) | null = null;
  /** Live events not yet written, oldest at `head`. */
  queue: (Pending | undefined)[] = NO_QUEUE;
  head = 0;
  /** Bytes in `queue`: what the overflow policy looks at. */
  queuedBytes = 0;
  /** The replay (or reset event), written before anything queued. */
  preface: Uint8Array | null = null;
  droppedEvents = 0;
  /**
   * `"replaying"` while the log reads what it missed (live events queue);
   * `"gone"` once it left, for good.
   */
  phase: "live" | "replaying" | "gone" = "live";
  /** Writes whose promise has not settled yet. */
  inFlight = 0;
  timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    channel: EventChannel<EventId | Promise<EventId>>,
    endpoint: ChannelMember,
    highWaterMark: number,
    topics: ReadonlySet<string> | null,
    joinedAtSeq: number,
  ) {
    this.channel = channel;
    this.endpoint = endpoint;
    this.highWaterMark = highWaterMark;
    this.topics = topics;
    this.joinedAtSeq = joinedAtSeq;
  }

  /** The endpoint's `close` event: the channel lets the member go. */
  handleEvent(): void {
    channelOf.closed(this.channel, this);
  }

  /** Whether it left the channel (for good). */
  get gone(): boolean {
    return this.phase === "gone";
  }

  get behind(): boolean {
    return this.head < this.queue.length || this.preface !== null;
  }

  /** Whether the endpoint takes `size` more bytes without passing its mark. */
  fits(size: number): boolean {
    const buffered = this.endpoint.bufferedAmount;
    return buffered === 0 || buffered + size <= this.highWaterMark;
  }
}

/**
 * A broadcast channel with history: endpoints join, every published event
 * goes to all of them, and a client that reconnects with `Last-Event-ID`
 * gets what it missed first. See the module documentation for a server.
 *
 * @example Publish to members and resume one
 * ```ts
 * import { EventChannel, type ChannelMember } from "@ssekit/sse/channel";
 * import assert from "node:assert/strict";
 *
 * class Member extends EventTarget implements ChannelMember {
 *   closed = false;
 *   bufferedAmount = 0;
 *   text = "";
 *   lastEventId: string;
 *   constructor(lastEventId = "") {
 *     super();
 *     this.lastEventId = lastEventId;
 *   }
 *   write(encoded: Uint8Array): Promise<void> {
 *     this.text += new TextDecoder().decode(encoded);
 *     return Promise.resolve();
 *   }
 *   close(): void {
 *     this.closed = true;
 *     this.dispatchEvent(new Event("close"));
 *   }
 * }
 *
 * const channel = new EventChannel();
 * const live = new Member();
 * channel.join(live);
 * const first = channel.publish({ data: "one" });
 * const second = channel.publish({ data: "two" });
 * await Promise.resolve(); // events published in one tick are written together
 * assert.equal(live.text, `id:${first}\ndata:one\n\nid:${second}\ndata:two\n\n`);
 *
 * // A client that saw "one" reconnects: it gets "two" at once.
 * const resumed = new Member(first);
 * channel.join(resumed);
 * assert.equal(resumed.text, `id:${second}\ndata:two\n\n`);
 * assert.equal(channel.stats().members, 2);
 * ```
 */
export class EventChannel<
  Appended extends EventId | Promise<EventId> = EventId,
> {
  #log: EventLog<Appended>;
  #overflow: ChannelOverflowPolicy;
  #highWaterMark: number | undefined;
  #maxReplay: number;
  #reset: Omit<ServerSentEventMessage, "id"> | null;
  #dropped: (count: number) => Omit<ServerSentEventMessage, "id">;
  #encoder = new TextEncoder();
  #members = new Map<ChannelMember, Member>();
  /** Events received from the log. */
  #seq = 0;
  /** The id of the newest event received from the log, `""` for none. */
  #position: EventId;
  #batch: Batch | null = null;
  #membersDropped = 0;
  #eventsDropped = 0;

  static {
    channelOf.closed = (channel, state) => channel.#remove(state);
  }

  /** Creates a channel with no members. */
  constructor(options: EventChannelOptions<Appended> = {}) {
    const {
      overflow = "close",
      highWaterMark,
      maxReplay = 10_000,
      reset = DEFAULT_RESET,
      dropped = defaultDropped,
    } = options;
    if (overflow !== "close" && overflow !== "drop-oldest") {
      throw new TypeError(
        `Cannot create EventChannel: overflow is ${
          JSON.stringify(overflow)
        }, expected "close" or "drop-oldest"`,
      );
    }
    if (highWaterMark !== undefined) {
      checkHighWaterMark("create EventChannel", highWaterMark);
    }
    if (!(maxReplay >= 0)) {
      throw new RangeError(
        `Cannot create EventChannel: maxReplay is ${maxReplay}, expected a number of events >= 0`,
      );
    }
    const log = options.log ??
      new LocalEventLog({
        ...(options.history ? { history: options.history } : {}),
        ...(options.idPrefix !== undefined
          ? { idPrefix: options.idPrefix }
          : {}),
      }) as unknown as EventLog<Appended>;
    this.#log = log;
    this.#overflow = overflow;
    this.#highWaterMark = highWaterMark;
    this.#maxReplay = maxReplay;
    this.#reset = reset;
    this.#dropped = dropped;
    this.#position = log.follow({
      event: (id, topic, text) => this.#receive(id, topic, text),
      reset: (id) => this.#resetAll(id),
    }).position;
  }

  /** Number of members. */
  get size(): number {
    return this.#members.size;
  }

  /**
   * The id of the newest event this channel delivered (or is delivering
   * this tick), or `""` before the first.
   */
  get lastEventId(): EventId {
    return this.#position;
  }

  /**
   * Adds a member. When it has a last event id (by default the client's
   * `Last-Event-ID`), the events after that id are written first, or the
   * `reset` event when the log no longer reaches back that far. It then
   * gets every event delivered after this call. It leaves by itself when
   * it closes. Joining a closed endpoint does nothing.
   *
   * When the log cannot be read (a shared log that is unreachable), the
   * member is closed, so the client retries later: no false `reset`.
   *
   * @example Join with a topic
   * ```ts
   * import { EventEndpoint } from "@ssekit/sse/server";
   * import { EventChannel } from "@ssekit/sse/channel";
   * import assert from "node:assert/strict";
   *
   * const channel = new EventChannel();
   * function handler(request: Request): Response {
   *   const endpoint = new EventEndpoint(request, { heartbeat: 0 });
   *   channel.join(endpoint, { topics: ["eur"] });
   *   return endpoint.response!;
   * }
   * const response = handler(new Request("http://localhost/prices"));
   * assert.equal(channel.size, 1);
   * await response.body!.cancel(); // the client goes away: it leaves
   * assert.equal(channel.size, 0);
   * ```
   */
  join(endpoint: ChannelMember, options: JoinOptions = {}): void {
    const member = endpoint;
    if (member.closed || this.#members.has(member)) return;
    const highWaterMark = options.highWaterMark ?? this.#highWaterMark ??
      member.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
    checkHighWaterMark("join EventChannel", highWaterMark);
    const topics = options.topics === undefined
      ? null
      : new Set(options.topics);
    const state = new Member(
      this as EventChannel<EventId | Promise<EventId>>,
      member,
      highWaterMark,
      topics,
      this.#seq,
    );
    if (!(member as Watchable)[CLOSE_WATCHER]?.(state, true)) {
      member.addEventListener("close", state);
    }
    this.#members.set(member, state);
    const lastEventId = options.lastEventId ?? member.lastEventId;
    if (lastEventId !== "") this.#resume(state, lastEventId);
  }

  /**
   * Removes a member without closing it. Returns whether it was a member.
   *
   * @example
   * ```ts
   * import { EventEndpoint } from "@ssekit/sse/server";
   * import { EventChannel } from "@ssekit/sse/channel";
   * import assert from "node:assert/strict";
   *
   * const channel = new EventChannel();
   * const endpoint = new EventEndpoint(new Request("http://localhost/"));
   * channel.join(endpoint);
   * assert.equal(channel.leave(endpoint), true);
   * assert.equal(channel.leave(endpoint), false);
   * assert.equal(endpoint.closed, false);
   * endpoint.close();
   * ```
   */
  leave(endpoint: ChannelMember): boolean {
    const state = this.#members.get(endpoint);
    if (state === undefined) return false;
    this.#remove(state);
    return true;
  }

  /**
   * Publishes an event to every member (or those of its topic) through the
   * log, and returns its id (with a log on another machine, a promise of
   * it, which rejects when the log cannot be reached: nothing is queued and
   * nothing is retried). The message must not carry its own id: the log
   * assigns it. Members get the event when the channel receives it from the
   * log; events received in the same tick are written to each member
   * together, in order, once the tick's synchronous work is done.
   *
   * @example
   * ```ts
   * import { EventChannel } from "@ssekit/sse/channel";
   * import assert from "node:assert/strict";
   *
   * const channel = new EventChannel({ idPrefix: "x" });
   * assert.match(channel.publish({ event: "price", data: "42" }), /^x.+-1$/);
   * assert.match(channel.publish({ data: "news" }, { topic: "news" }), /^x.+-2$/);
   * ```
   */
  publish(
    message: ServerSentEventMessage,
    options: PublishOptions = {},
  ): Appended {
    if (message.id !== undefined) {
      throw new TypeError(
        `Cannot publish a message with its own id ${
          JSON.stringify(message.id)
        }: the channel assigns ids, expected no id field`,
      );
    }
    const { topic, key } = options;
    if (topic !== undefined && typeof topic !== "string") {
      throw new TypeError(
        `Cannot publish: topic is ${typeof topic}, expected a string`,
      );
    }
    const text = encodeServerSentEvent(message);
    return key === undefined
      ? this.#log.append(text, topic)
      : this.#log.append(text, topic, key);
  }

  /**
   * Bytes queued for one member: the channel's queue plus what its endpoint
   * buffers. `undefined` for a non-member.
   *
   * @example
   * ```ts
   * import { EventEndpoint } from "@ssekit/sse/server";
   * import { EventChannel } from "@ssekit/sse/channel";
   * import assert from "node:assert/strict";
   *
   * const channel = new EventChannel();
   * const endpoint = new EventEndpoint(new Request("http://localhost/"), {
   *   heartbeat: 0,
   * });
   * channel.join(endpoint);
   * channel.publish({ data: "nobody reads the response yet" });
   * await Promise.resolve();
   * assert.ok(channel.queuedBytes(endpoint)! > 0);
   * assert.equal(channel.queuedBytes(new EventEndpoint(new Request("http://localhost/"))), undefined);
   * ```
   */
  queuedBytes(endpoint: ChannelMember): number | undefined {
    const state = this.#members.get(endpoint);
    if (state === undefined) return undefined;
    return backlog(state);
  }

  /**
   * Current counters: members, events published, members dropped, events
   * dropped, and bytes queued.
   *
   * @example
   * ```ts
   * import { EventChannel } from "@ssekit/sse/channel";
   * import assert from "node:assert/strict";
   *
   * const channel = new EventChannel();
   * channel.publish({ data: "hello" });
   * assert.deepEqual(channel.stats(), {
   *   members: 0,
   *   eventsPublished: 1,
   *   membersDropped: 0,
   *   eventsDropped: 0,
   *   queuedBytes: 0,
   *   maxQueuedBytes: 0,
   * });
   * ```
   */
  stats(): ChannelStats {
    let queuedBytes = 0;
    let maxQueuedBytes = 0;
    for (const state of this.#members.values()) {
      const bytes = backlog(state);
      queuedBytes += bytes;
      if (bytes > maxQueuedBytes) maxQueuedBytes = bytes;
    }
    return {
      members: this.#members.size,
      eventsPublished: this.#seq,
      membersDropped: this.#membersDropped,
      eventsDropped: this.#eventsDropped,
      queuedBytes,
      maxQueuedBytes,
    };
  }

  /** An event from the log: into this tick's batch. */
  #receive(id: EventId, topic: string | undefined, text: string): void {
    const seq = ++this.#seq;
    this.#position = id;
    let batch = this.#batch;
    if (batch === null) {
      batch = this.#batch = new Batch(seq);
      queueMicrotask(this.#flush);
    }
    batch.ids.push(id);
    batch.texts.push(text);
    batch.topics.push(topic);
    if (topic !== undefined) batch.hasTopics = true;
  }

  /** The log may have lost events: every member starts again after `id`. */
  #resetAll(id: EventId): void {
    this.#flush();
    this.#position = id;
    const preface = this.#reset === null
      ? null
      : this.#encoder.encode(encodeServerSentEvent({ ...this.#reset, id }));
    for (const state of this.#members.values()) {
      state.generation++; // a replay under way is stale now
      state.phase = "live";
      state.skipThrough = undefined;
      state.queue = NO_QUEUE;
      state.head = 0;
      state.queuedBytes = 0;
      state.droppedEvents = 0;
      state.preface = preface;
      state.joinedAtSeq = this.#seq;
      this.#pump(state);
    }
  }

  #flush = (): void => {
    const batch = this.#batch;
    if (batch === null) return;
    this.#batch = null;
    batch.seal(this.#encoder);
    for (const state of this.#members.values()) this.#deliver(state, batch);
  };

  #deliver(state: Member, batch: Batch): void {
    const count = batch.count;
    // A member that joined mid-tick got the tick's earlier events from the log.
    let from = state.joinedAtSeq >= batch.firstSeq
      ? state.joinedAtSeq - batch.firstSeq + 1
      : 0;
    const skipThrough = state.skipThrough;
    if (skipThrough !== undefined) {
      // The client already has the events up to this id (it came from a
      // faster instance): skip them.
      const at = batch.ids.indexOf(skipThrough, from);
      if (at < 0) return;
      state.skipThrough = undefined;
      from = at + 1;
    }
    if (from >= count) return;
    const topics = state.topics;
    if (topics === null || !batch.hasTopics) {
      this.#enqueue(state, batch, from, count);
      return;
    }
    let start = -1;
    for (let i = from; i < count; i++) {
      const topic = batch.topics[i];
      if (topic === undefined || topics.has(topic)) {
        if (start < 0) start = i;
      } else if (start >= 0) {
        this.#enqueue(state, batch, start, i);
        start = -1;
      }
    }
    if (start >= 0) this.#enqueue(state, batch, start, count);
  }

  /** Writes events `from`..`to` of `batch` now, or queues them if behind. */
  #enqueue(state: Member, batch: Batch, from: number, to: number): void {
    if (state.gone) return;
    if (state.endpoint.closed) {
      this.#remove(state);
      return;
    }
    const size = batch.size(from, to);
    if (!state.behind && state.phase === "live" && state.fits(size)) {
      this.#write(state, batch.slice(from, to));
      return;
    }
    // A queued part of a batch is a copy of just its bytes, so what the
    // member counts is what it holds (a view would pin the whole batch).
    const pending: Pending = from === 0 && to === batch.count
      ? { batch, from, to }
      : { batch: batch.copy(from, to), from: 0, to: to - from };
    if (state.queue === NO_QUEUE) state.queue = [pending];
    else state.queue.push(pending);
    state.queuedBytes += size;
    if (state.queuedBytes > state.highWaterMark) this.#overflowed(state);
    this.#waitForRoom(state);
  }

  #overflowed(state: Member): void {
    if (this.#overflow === "close") {
      this.#membersDropped++;
      this.#remove(state);
      const endpoint = state.endpoint;
      // A hard close: a stalled client would never drain a graceful one.
      if (typeof endpoint.abort === "function") {
        endpoint.abort(new Error("The client was too slow for the channel"));
      } else endpoint.close();
      return;
    }
    // Drop whole events, oldest first, until the backlog fits again.
    const queue = state.queue;
    while (state.queuedBytes > state.highWaterMark) {
      const pending = queue[state.head]!;
      const { batch } = pending;
      const excess = state.queuedBytes - state.highWaterMark;
      const start = batch.start(pending.from);
      let from = pending.from + 1;
      while (from < pending.to && batch.start(from) - start < excess) {
        from++;
      }
      state.queuedBytes -= batch.start(from) - start;
      state.droppedEvents += from - pending.from;
      this.#eventsDropped += from - pending.from;
      if (from === pending.to) queue[state.head++] = undefined;
      else pending.from = from;
    }
  }

  /**
   * Makes sure the member is pumped again once its endpoint may have room:
   * when one of its writes settles; with none in flight, when `drained`
   * says there is room for its next chunk under the member's limit; without
   * `drained`, when its `ready` settles (if its buffer is past its own
   * mark); else, for a duck-typed member with neither signal (or only
   * `ready` while under its own mark but over the channel's lower limit),
   * after a short poll.
   */
  #waitForRoom(state: Member): void {
    if (
      state.phase !== "live" || state.inFlight > 0 || state.waiting ||
      !state.behind
    ) return;
    state.waiting = true;
    const endpoint = state.endpoint;
    if (typeof endpoint.drained === "function") {
      // Room for the next chunk: `fits` takes it once the buffer is at most
      // the limit minus its size, or empty.
      const next = state.preface?.byteLength ?? nextSize(state);
      try {
        const onRoom = this.#onRoom(state);
        endpoint.drained(Math.max(0, state.highWaterMark - next))
          .then(onRoom, onRoom);
        return;
      } catch {
        // A member whose `drained` throws is polled instead.
      }
    }
    const ready = endpoint.ready;
    if (
      ready !== undefined && endpoint.highWaterMark !== undefined &&
      endpoint.bufferedAmount > endpoint.highWaterMark
    ) {
      const onRoom = this.#onRoom(state);
      ready.then(onRoom, onRoom);
      return;
    }
    state.timer = setTimeout(this.#onRoom(state), POLL_INTERVAL);
  }

  /** The member's `onRoom`, made the first time it waits. */
  #onRoom(state: Member): () => void {
    return state.onRoom ??= () => {
      state.waiting = false;
      state.timer = undefined;
      this.#pump(state);
    };
  }

  /** Writes what is queued for a member, as far as its endpoint has room. */
  #pump(state: Member): void {
    if (state.phase !== "live") return;
    if (state.endpoint.closed) {
      this.#remove(state);
      return;
    }
    const preface = state.preface;
    if (preface !== null) {
      if (!state.fits(preface.byteLength)) {
        this.#waitForRoom(state);
        return;
      }
      state.preface = null;
      this.#write(state, preface);
    }
    const queue = state.queue;
    while (state.head < queue.length) {
      const { batch, from, to } = queue[state.head]!;
      const size = batch.size(from, to);
      if (!state.fits(size) || state.gone) break;
      queue[state.head++] = undefined;
      state.queuedBytes -= size;
      this.#write(state, batch.slice(from, to));
    }
    if (state.head === queue.length) {
      state.queue = NO_QUEUE;
      state.head = 0;
      return;
    }
    if (state.head > 1024) {
      state.queue = queue.slice(state.head);
      state.head = 0;
    }
    this.#waitForRoom(state);
  }

  #write(state: Member, bytes: Uint8Array): void {
    if (state.gone) return;
    if (state.endpoint.closed) {
      this.#remove(state);
      return;
    }
    if (state.droppedEvents > 0) {
      const notice = this.#dropped(state.droppedEvents);
      state.droppedEvents = 0;
      this.#write(state, this.#encoder.encode(encodeServerSentEvent(notice)));
    }
    let written: Promise<unknown>;
    try {
      written = state.endpoint.write(bytes);
    } catch {
      // A member that cannot be written to is gone.
      this.#remove(state);
      return;
    }
    state.inFlight++;
    const onSettled = state.onSettled ??= () => {
      state.inFlight--;
      if (state.behind) this.#pump(state);
    };
    written.then(onSettled, onSettled);
  }

  #resume(state: Member, lastEventId: string): void {
    const upTo = this.#position;
    const generation = state.generation;
    let read: LogRead | Promise<LogRead>;
    try {
      read = this.#log.read(lastEventId, upTo, {
        topics: state.topics,
        limit: this.#maxReplay,
      });
    } catch {
      read = RESET;
    }
    if (!(read instanceof Promise)) {
      this.#replay(state, read, upTo, lastEventId);
      return;
    }
    state.phase = "replaying";
    read.then(
      (result) => {
        if (state.generation === generation) {
          this.#replay(state, result, upTo, lastEventId);
        }
      },
      () => {
        // The log cannot be read now: the client retries later. Not a reset.
        if (state.generation !== generation || state.gone) return;
        this.#remove(state);
        state.endpoint.close();
      },
    );
  }

  /** Sets the member's preface: the events it missed, or the reset event. */
  #replay(
    state: Member,
    read: LogRead,
    upTo: EventId,
    lastEventId: EventId,
  ): void {
    if (state.gone) return;
    state.phase = "live";
    if (read.kind === "reset") {
      if (this.#reset !== null) {
        state.preface = this.#encoder.encode(
          encodeServerSentEvent({ ...this.#reset, id: upTo }),
        );
      }
    } else if (read.kind === "ahead") {
      // The client already has events this channel has not delivered yet:
      // drop them from what was queued during the read, and skip the rest.
      skipQueued(state, lastEventId);
    } else if (read.entries.length > 0) {
      state.preface = this.#join(read.entries);
    }
    this.#pump(state);
  }

  /** The entries' text, in one chunk. */
  #join(entries: readonly LogEntry[]): Uint8Array {
    let text = "";
    for (const entry of entries) text += entry.text;
    return this.#encoder.encode(text);
  }

  #remove(state: Member): void {
    if (state.gone) return;
    state.phase = "gone";
    state.queue = NO_QUEUE;
    state.head = 0;
    state.queuedBytes = 0;
    state.preface = null;
    if (state.timer !== undefined) clearTimeout(state.timer);
    state.timer = undefined;
    state.waiting = false;
    const endpoint = state.endpoint as Watchable;
    if (!endpoint[CLOSE_WATCHER]?.(state, false)) {
      endpoint.removeEventListener("close", state);
    }
    this.#members.delete(state.endpoint);
  }
}

/** Bytes of the member's oldest queued part. */
function nextSize(state: Member): number {
  const { batch, from, to } = state.queue[state.head]!;
  return batch.size(from, to);
}

/** Drops the member's queued events up to and including `id`. */
function skipQueued(state: Member, id: EventId): void {
  const queue = state.queue;
  for (let q = state.head; q < queue.length; q++) {
    const pending = queue[q]!;
    const at = pending.batch.ids.indexOf(id, pending.from);
    if (at < 0 || at >= pending.to) continue;
    for (let r = state.head; r < q; r++) {
      const { batch, from, to } = queue[r]!;
      state.queuedBytes -= batch.size(from, to);
      queue[r] = undefined;
    }
    state.queuedBytes -= pending.batch.size(pending.from, at + 1);
    pending.from = at + 1;
    state.head = q;
    if (pending.from === pending.to) queue[state.head++] = undefined;
    return;
  }
  state.queue = NO_QUEUE;
  state.head = 0;
  state.queuedBytes = 0;
  state.skipThrough = id;
}

function backlog(state: Member): number {
  return state.queuedBytes + (state.preface?.byteLength ?? 0) +
    state.endpoint.bufferedAmount;
}

/** The length of `text` in UTF-8, lone surrogates counted as U+FFFD. */
function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (
      c >= 0xd800 && c <= 0xdbff && i + 1 < text.length &&
      (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

function checkHighWaterMark(action: string, highWaterMark: number): void {
  if (typeof highWaterMark !== "number" || !(highWaterMark >= 0)) {
    throw new RangeError(
      `Cannot ${action}: highWaterMark is ${highWaterMark}, expected a number of bytes >= 0`,
    );
  }
}
