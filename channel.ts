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
  /** Whether the member is closed; a closed member is never written to. */
  readonly closed: boolean;
  /** Bytes written and not yet taken by the client. */
  readonly bufferedAmount: number;
  /** The member's own high-water mark in bytes, if it has one. */
  readonly highWaterMark?: number;
  /**
   * Queues already-encoded event-stream bytes. The returned promise settles
   * when there is room again or the member failed (its value is not used);
   * a member that is behind is written to again then.
   */
  write(encoded: Uint8Array): Promise<unknown>;
  /**
   * Closes the member. Whoever closes it, it dispatches a `close` event,
   * and the channel lets it go.
   */
  close(): void;
  /**
   * Ends the member's connection now, even when its client does not read
   * ({@linkcode EventEndpoint.abort}); the `"close"` overflow policy uses it
   * when present, else `close()`.
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
   */
  readAfter(
    id: EventId,
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
      this.#lastEvictedId = entry.id;
      return;
    }
    if (this.#count === this.#maxCount) this.#evictOldest();
    const position = this.#appended++;
    const slot = position % this.#maxCount;
    this.#entries[slot] = entry;
    if (this.#maxAge !== Infinity) this.#times[slot] = this.#now();
    this.#count++;
  }

  /** The held events after `id`, or `null` when `id` is unknown or evicted. */
  readAfter(id: EventId): HistoryEntry[] | null {
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
      if (id !== this.#lastEvictedId) return null;
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
    this.#lastEvictedId = entry.id;
    this.#count--;
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

/** What a channel does with a member whose backlog passed its high-water mark. */
export type ChannelOverflowPolicy = "close" | "drop-oldest";

/** Options for {@linkcode EventChannel}. */
export interface EventChannelOptions {
  /**
   * Where published events are kept for clients that reconnect.
   *
   * @default {new MemoryHistoryStore()}
   */
  history?: HistoryStore;
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
   * too. The default is `EventEndpoint`'s own default.
   *
   * @default {1048576}
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
   * Prefix of every id this channel assigns, so ids from an earlier server
   * process (with another prefix) are recognised as foreign.
   *
   * @default {a random prefix per channel}
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
   * @default {endpoint.highWaterMark, else the channel's}
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
}

/** Counters a channel keeps; see {@linkcode EventChannel.stats}. */
export interface ChannelStats {
  /** Members right now. */
  members: number;
  /** Events published since the channel was created. */
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
const ignore = (): void => {};
// How often a member that is behind, with no write of its own in flight,
// checks whether its endpoint has room again.
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

  /** Events `from` to `to` (exclusive); the whole batch is the same object. */
  slice(from: number, to: number): Uint8Array {
    if (from === 0 && to === this.count) return this.bytes;
    return this.bytes.subarray(this.start(from), this.start(to));
  }
}

/** A run of consecutive events of one batch, queued for one member. */
interface Pending {
  batch: Batch;
  from: number;
  to: number;
}

class Member {
  readonly endpoint: ChannelMember;
  readonly highWaterMark: number;
  readonly topics: ReadonlySet<string> | null;
  /** Events up to this sequence number come from history, not live. */
  readonly joinedAtSeq: number;
  onClose: () => void = ignore;
  /** Called when one of this member's writes settles. */
  onSettled: () => void = ignore;
  /** Live events not yet written, oldest at `head`. */
  queue: (Pending | undefined)[] = [];
  head = 0;
  /** Bytes in `queue`: what the overflow policy looks at. */
  queuedBytes = 0;
  /** The replay (or reset event), written before anything queued. */
  preface: Uint8Array | null = null;
  droppedEvents = 0;
  replaying = false;
  gone = false;
  /** Writes whose promise has not settled yet. */
  inFlight = 0;
  timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    endpoint: ChannelMember,
    highWaterMark: number,
    topics: ReadonlySet<string> | null,
    joinedAtSeq: number,
  ) {
    this.endpoint = endpoint;
    this.highWaterMark = highWaterMark;
    this.topics = topics;
    this.joinedAtSeq = joinedAtSeq;
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
 * const channel = new EventChannel({ idPrefix: "doc-" });
 * const live = new Member();
 * channel.join(live);
 * const first = channel.publish({ data: "one" });
 * channel.publish({ data: "two" });
 * await Promise.resolve(); // events published in one tick are written together
 * assert.equal(live.text, "id:doc-1\ndata:one\n\nid:doc-2\ndata:two\n\n");
 *
 * // A client that saw "one" reconnects: it gets "two" at once.
 * const resumed = new Member(first);
 * channel.join(resumed);
 * assert.equal(resumed.text, "id:doc-2\ndata:two\n\n");
 * assert.equal(channel.stats().members, 2);
 * ```
 */
export class EventChannel {
  #history: HistoryStore;
  #overflow: ChannelOverflowPolicy;
  #highWaterMark: number;
  #reset: Omit<ServerSentEventMessage, "id"> | null;
  #dropped: (count: number) => Omit<ServerSentEventMessage, "id">;
  #prefix: string;
  #encoder = new TextEncoder();
  #members = new Map<ChannelMember, Member>();
  #seq = 0;
  #batch: Batch | null = null;
  #membersDropped = 0;
  #eventsDropped = 0;

  /** Creates a channel with no members. */
  constructor(options: EventChannelOptions = {}) {
    const {
      history = new MemoryHistoryStore(),
      overflow = "close",
      highWaterMark = DEFAULT_HIGH_WATER_MARK,
      reset = DEFAULT_RESET,
      dropped = defaultDropped,
      idPrefix = randomPrefix(),
    } = options;
    if (overflow !== "close" && overflow !== "drop-oldest") {
      throw new TypeError(
        `Cannot create EventChannel: overflow is ${
          JSON.stringify(overflow)
        }, expected "close" or "drop-oldest"`,
      );
    }
    checkHighWaterMark("create EventChannel", highWaterMark);
    if (/[\r\n\0]/.test(idPrefix)) {
      throw new TypeError(
        `Cannot create EventChannel: idPrefix ${
          JSON.stringify(idPrefix)
        } contains CR, LF or NUL, expected a prefix that can be an event id`,
      );
    }
    this.#history = history;
    this.#overflow = overflow;
    this.#highWaterMark = highWaterMark;
    this.#reset = reset;
    this.#dropped = dropped;
    this.#prefix = idPrefix;
  }

  /** Number of members. */
  get size(): number {
    return this.#members.size;
  }

  /** The id of the newest published event, or `""` before the first. */
  get lastEventId(): EventId {
    return this.#seq === 0 ? "" : this.#prefix + this.#seq;
  }

  /**
   * Adds a member. When it has a last event id (by default the client's
   * `Last-Event-ID`), the events after that id are written first, or the
   * `reset` event when the history no longer reaches back that far. It then
   * gets every event published after this call. It leaves by itself when
   * it closes. Joining a closed endpoint does nothing.
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
    const highWaterMark = options.highWaterMark ?? member.highWaterMark ??
      this.#highWaterMark;
    checkHighWaterMark("join EventChannel", highWaterMark);
    const topics = options.topics === undefined
      ? null
      : new Set(options.topics);
    const state = new Member(member, highWaterMark, topics, this.#seq);
    state.onClose = () => this.#remove(state);
    state.onSettled = () => {
      state.inFlight--;
      if (state.behind) this.#pump(state);
    };
    member.addEventListener("close", state.onClose);
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
   * Publishes an event to every member (or those of its topic) and records
   * it in the history. The channel assigns the id and returns it; the message
   * must not carry its own. Events published in the same tick are written to
   * each member together, in order, once the tick's synchronous work is done.
   *
   * @example
   * ```ts
   * import { EventChannel } from "@ssekit/sse/channel";
   * import assert from "node:assert/strict";
   *
   * const channel = new EventChannel({ idPrefix: "x" });
   * assert.equal(channel.publish({ event: "price", data: "42" }), "x1");
   * assert.equal(channel.publish({ data: "news" }, { topic: "news" }), "x2");
   * ```
   */
  publish(
    message: ServerSentEventMessage,
    options: PublishOptions = {},
  ): EventId {
    if (message.id !== undefined) {
      throw new TypeError(
        `Cannot publish a message with its own id ${
          JSON.stringify(message.id)
        }: the channel assigns ids, expected no id field`,
      );
    }
    const seq = this.#seq + 1;
    const id = this.#prefix + seq;
    const text = encodeServerSentEvent({ ...message, id });
    this.#seq = seq;
    const topic = options.topic;
    this.#history.append(new ChannelEntry(id, topic, text));
    let batch = this.#batch;
    if (batch === null) {
      batch = this.#batch = new Batch(seq);
      queueMicrotask(this.#flush);
    }
    batch.texts.push(text);
    batch.topics.push(topic);
    if (topic !== undefined) batch.hasTopics = true;
    return id;
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

  #flush = (): void => {
    const batch = this.#batch;
    if (batch === null) return;
    this.#batch = null;
    batch.seal(this.#encoder);
    for (const state of this.#members.values()) this.#deliver(state, batch);
  };

  #deliver(state: Member, batch: Batch): void {
    const count = batch.count;
    // A member that joined mid-tick got the tick's earlier events from history.
    const from = state.joinedAtSeq >= batch.firstSeq
      ? state.joinedAtSeq - batch.firstSeq + 1
      : 0;
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
    const size = batch.size(from, to);
    if (!state.behind && !state.replaying && state.fits(size)) {
      this.#write(state, batch.slice(from, to));
      return;
    }
    state.queue.push({ batch, from, to });
    state.queuedBytes += size;
    if (state.queuedBytes > state.highWaterMark) this.#overflowed(state);
    this.#waitForRoom(state);
  }

  #overflowed(state: Member): void {
    if (this.#overflow === "close") {
      this.#membersDropped++;
      this.#remove(state);
      // A graceful close would wait for a client that does not read.
      const { endpoint } = state;
      if (endpoint.abort) endpoint.abort("the client was too slow");
      else endpoint.close();
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
   * when one of its writes settles, or, with none in flight (the endpoint's
   * buffer holds bytes whose promises the channel does not have, e.g. what
   * node buffers after accepting a write), after a short poll.
   */
  #waitForRoom(state: Member): void {
    if (
      state.gone || state.replaying || state.inFlight > 0 ||
      state.timer !== undefined || !state.behind
    ) return;
    state.timer = setTimeout(() => {
      state.timer = undefined;
      this.#pump(state);
    }, POLL_INTERVAL);
  }

  /** Writes what is queued for a member, as far as its endpoint has room. */
  #pump(state: Member): void {
    if (state.gone || state.replaying) return;
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
      state.queue = [];
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
    written.then(state.onSettled, state.onSettled);
  }

  #resume(state: Member, lastEventId: string): void {
    const upTo = state.joinedAtSeq;
    const lastId = upTo === 0 ? undefined : this.#prefix + upTo;
    let read: ReturnType<HistoryStore["readAfter"]>;
    try {
      read = this.#history.readAfter(lastEventId);
    } catch {
      read = null;
    }
    if (read === null || Array.isArray(read)) {
      this.#replay(state, read as readonly HistoryEntry[] | null, lastId);
      return;
    }
    state.replaying = true;
    (read as Promise<readonly HistoryEntry[] | null>).then(
      (entries) => this.#replay(state, entries, lastId),
      () => this.#replay(state, null, lastId),
    );
  }

  /** Sets the member's preface: the events it missed, or the reset event. */
  #replay(
    state: Member,
    entries: readonly HistoryEntry[] | null,
    lastId: EventId | undefined,
  ): void {
    state.replaying = false;
    if (state.gone) return;
    if (entries === null) {
      if (this.#reset !== null) {
        state.preface = this.#encoder.encode(
          encodeServerSentEvent({ ...this.#reset, id: lastId ?? "" }),
        );
      }
    } else {
      const missed: HistoryEntry[] = [];
      for (const entry of entries) {
        const { topic } = entry;
        if (
          state.topics === null || topic === undefined ||
          state.topics.has(topic)
        ) {
          missed.push(entry);
        }
        // Later events are delivered live.
        if (entry.id === lastId) break;
      }
      if (missed.length > 0) state.preface = this.#join(missed);
    }
    this.#pump(state);
  }

  /** The entries' bytes, in one chunk. */
  #join(entries: readonly HistoryEntry[]): Uint8Array {
    if (entries.every((entry) => entry instanceof ChannelEntry)) {
      const texts = (entries as ChannelEntry[]).map((entry) => entry.text);
      return this.#encoder.encode(texts.join(""));
    }
    let length = 0;
    for (const entry of entries) length += entry.bytes.byteLength;
    const bytes = new Uint8Array(length);
    let offset = 0;
    for (const entry of entries) {
      bytes.set(entry.bytes, offset);
      offset += entry.bytes.byteLength;
    }
    return bytes;
  }

  #remove(state: Member): void {
    if (state.gone) return;
    state.gone = true;
    state.queue = [];
    state.head = 0;
    state.queuedBytes = 0;
    state.preface = null;
    if (state.timer !== undefined) clearTimeout(state.timer);
    state.timer = undefined;
    state.endpoint.removeEventListener("close", state.onClose);
    this.#members.delete(state.endpoint);
  }
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

function randomPrefix(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  let prefix = "";
  for (const byte of bytes) prefix += (byte % 36).toString(36);
  return prefix + "-";
}
