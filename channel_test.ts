import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as http from "node:http";
import { EventConsumer } from "./client.ts";
import { encodeServerSentEvent, EventEndpoint } from "./sse.ts";
import { listenOnLoopback } from "./_server_test_utils.ts";
import {
  type ChannelMember,
  EventChannel,
  type HistoryEntry,
  type HistoryStore,
  LocalEventLog,
  MemoryHistoryStore,
} from "./channel.ts";

const decoder = new TextDecoder();

interface Parsed {
  id?: string;
  event?: string;
  data?: string;
}

/** Splits event-stream text as the channel writes it (LF line ends only). */
function parse(text: string): Parsed[] {
  const events: Parsed[] = [];
  for (const block of text.split("\n\n")) {
    if (block === "") continue;
    const event: Parsed = {};
    for (const line of block.split("\n")) {
      const colon = line.indexOf(":");
      const field = line.slice(0, colon);
      let value = line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id" || field === "event" || field === "data") {
        event[field] = value;
      }
    }
    events.push(event);
  }
  return events;
}

/**
 * An in-process member. With `stalled`, writes stay buffered (and their
 * promises pending) until `take()`, like a client that stopped reading.
 */
class FakeMember extends EventTarget implements ChannelMember {
  lastEventId: string;
  closed = false;
  highWaterMark?: number;
  stalled: boolean;
  chunks: Uint8Array[] = [];
  #buffered: { bytes: Uint8Array; resolve: () => void }[] = [];
  #bufferedAmount = 0;

  constructor(
    options: {
      lastEventId?: string;
      highWaterMark?: number;
      stalled?: boolean;
    } = {},
  ) {
    super();
    this.lastEventId = options.lastEventId ?? "";
    if (options.highWaterMark !== undefined) {
      this.highWaterMark = options.highWaterMark;
    }
    this.stalled = options.stalled ?? false;
  }

  get bufferedAmount(): number {
    return this.#bufferedAmount;
  }

  write(bytes: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(new TypeError("closed"));
    if (!this.stalled) {
      this.chunks.push(bytes);
      return Promise.resolve();
    }
    this.#bufferedAmount += bytes.byteLength;
    return new Promise((resolve) => this.#buffered.push({ bytes, resolve }));
  }

  /** The client reads everything buffered. */
  take(): void {
    const buffered = this.#buffered;
    this.#buffered = [];
    this.#bufferedAmount = 0;
    for (const { bytes, resolve } of buffered) {
      this.chunks.push(bytes);
      resolve();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#buffered = [];
    this.#bufferedAmount = 0;
    this.dispatchEvent(new Event("close"));
  }

  text(): string {
    return this.chunks.map((c) => decoder.decode(c)).join("");
  }

  events(): Parsed[] {
    return parse(this.text());
  }
}

/** Lets the channel's microtask flush (and any drain callbacks) run. */
async function tick(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

function datas(events: Parsed[]): (string | undefined)[] {
  return events.map((e) => e.data);
}

function range(from: number, to: number): string[] {
  const out: string[] = [];
  for (let i = from; i <= to; i++) out.push(String(i));
  return out;
}

describe("EventChannel: publish", () => {
  test("encodes once and hands the same bytes to every member", async () => {
    const channel = new EventChannel({
      log: new LocalEventLog({ epoch: "p" }),
    });
    const members = [new FakeMember(), new FakeMember(), new FakeMember()];
    for (const m of members) channel.join(m);
    assert.equal(channel.publish({ event: "price", data: "42" }), "p-1");
    await tick();
    const [first] = members[0]!.chunks;
    assert.deepEqual(parse(decoder.decode(first)), [
      { event: "price", id: "p-1", data: "42" },
    ]);
    for (const m of members) {
      assert.equal(m.chunks.length, 1);
      assert.equal(m.chunks[0], first, "the very same Uint8Array");
    }
  });

  test("events published in one tick reach each member as one chunk, in order", async () => {
    const channel = new EventChannel({
      log: new LocalEventLog({ epoch: "p" }),
    });
    const member = new FakeMember();
    channel.join(member);
    for (let i = 1; i <= 100; i++) channel.publish({ data: String(i) });
    await tick();
    assert.equal(member.chunks.length, 1);
    const events = member.events();
    assert.deepEqual(datas(events), range(1, 100));
    assert.deepEqual(
      events.map((e) => e.id),
      range(1, 100).map((n) => `p-${n}`),
    );
  });

  test("a message with its own id is refused", () => {
    const channel = new EventChannel();
    assert.throws(
      () => channel.publish({ id: "7", data: "x" }),
      (e: unknown) =>
        e instanceof TypeError && /the channel assigns ids/.test(e.message),
    );
    assert.equal(channel.stats().eventsPublished, 0);
  });

  test("bad options say what was expected", () => {
    assert.throws(
      // @ts-expect-error: not a policy
      () => new EventChannel({ overflow: "block" }),
      /expected "close" or "drop-oldest"/,
    );
    assert.throws(
      () => new EventChannel({ highWaterMark: -1 }),
      /expected a number of bytes >= 0/,
    );
    assert.throws(
      () => new EventChannel({ idPrefix: "a\nb" }),
      /contains CR, LF or NUL/,
    );
    assert.throws(
      () => new MemoryHistoryStore({ maxCount: 1.5 }),
      /expected an integer >= 0/,
    );
    assert.throws(
      () => new MemoryHistoryStore({ maxAge: -1 }),
      /expected a number of milliseconds >= 0/,
    );
  });

  test("a member gets only events published after it joined", async () => {
    const channel = new EventChannel();
    const early = new FakeMember();
    channel.join(early);
    channel.publish({ data: "1" });
    const late = new FakeMember();
    channel.join(late); // same tick: "1" is not yet flushed
    channel.publish({ data: "2" });
    await tick();
    assert.deepEqual(datas(early.events()), ["1", "2"]);
    assert.deepEqual(datas(late.events()), ["2"]);
  });

  test("topics: members with topics get theirs and untopical events", async () => {
    const channel = new EventChannel();
    const all = new FakeMember();
    const news = new FakeMember();
    const sport = new FakeMember();
    channel.join(all);
    channel.join(news, { topics: ["news"] });
    channel.join(sport, { topics: ["sport"] });
    channel.publish({ data: "n1" }, { topic: "news" });
    channel.publish({ data: "s1" }, { topic: "sport" });
    channel.publish({ data: "everyone" });
    channel.publish({ data: "n2" }, { topic: "news" });
    await tick();
    assert.deepEqual(datas(all.events()), ["n1", "s1", "everyone", "n2"]);
    assert.deepEqual(datas(news.events()), ["n1", "everyone", "n2"]);
    assert.deepEqual(datas(sport.events()), ["s1", "everyone"]);
    // Resuming respects topics too.
    const again = new FakeMember({ lastEventId: all.events()[0]!.id! });
    channel.join(again, { topics: ["news"] });
    assert.deepEqual(datas(again.events()), ["everyone", "n2"]);
  });

  test("topics slice non-ASCII batches at the right bytes", async () => {
    const channel = new EventChannel();
    const even = new FakeMember();
    channel.join(even, { topics: ["even"] });
    const datas_ = ["né", "😀", "\ud800 lone", "ascii", "日本語", "z"];
    datas_.forEach((data, i) =>
      channel.publish({ data }, { topic: i % 2 === 0 ? "even" : "odd" })
    );
    await tick();
    assert.deepEqual(datas(even.events()), ["né", "\ufffd lone", "日本語"]);
  });

  test("members leave on close and by leave()", async () => {
    const channel = new EventChannel();
    const a = new FakeMember();
    const b = new FakeMember();
    channel.join(a);
    channel.join(b);
    channel.join(b); // joining twice is a no-op
    assert.equal(channel.size, 2);
    a.close();
    assert.equal(channel.size, 1);
    assert.equal(channel.leave(b), true);
    assert.equal(channel.leave(b), false);
    assert.equal(b.closed, false, "leave() does not close");
    channel.publish({ data: "x" });
    await tick();
    assert.equal(a.chunks.length + b.chunks.length, 0);
    const closed = new FakeMember();
    closed.close();
    channel.join(closed);
    assert.equal(channel.size, 0);
  });

  test("an EventEndpoint leaves every channel it is in when it closes, also after leave() and joining again", async () => {
    const first = new EventChannel();
    const second = new EventChannel();
    const endpoint = new EventEndpoint(new Request("http://localhost/"), {
      heartbeat: 0,
    });
    const seen: number[] = [];
    // The channel that holds the endpoint's close watcher (the first to join)
    // lets it go before any listener runs.
    endpoint.addEventListener("close", () => seen.push(first.size));
    first.join(endpoint);
    second.join(endpoint);
    assert.equal(first.leave(endpoint), true);
    first.join(endpoint); // joins again
    assert.deepEqual([first.size, second.size], [1, 1]);
    const reader = endpoint.response!.body!.getReader();
    first.publish({ data: "a" });
    second.publish({ data: "b" });
    let text = "";
    while (!text.includes("data:b")) {
      text += decoder.decode((await reader.read()).value);
    }
    assert.match(text, /data:a\n\n[^]*data:b\n\n/);
    await reader.cancel(); // the client goes away
    assert.deepEqual([first.size, second.size], [0, 0]);
    assert.deepEqual(seen, [0]);
    assert.equal(second.leave(endpoint), false);
  });

  test("1000 in-process members receive 10 000 events in order", async () => {
    const channel = new EventChannel({
      history: new MemoryHistoryStore({ maxCount: 100 }),
    });
    const members: FakeMember[] = [];
    for (let i = 0; i < 1000; i++) {
      const member = new FakeMember();
      members.push(member);
      channel.join(member);
    }
    // 100 ticks of 100 events each: 100 chunks per member.
    for (let t = 0; t < 100; t++) {
      for (let i = 1; i <= 100; i++) {
        channel.publish({ data: String(t * 100 + i) });
      }
      await tick();
    }
    // One member is checked event by event; the rest must have exactly the
    // same chunks (the same objects), which implies the same order.
    const reference = members[0]!;
    assert.deepEqual(datas(reference.events()), range(1, 10_000));
    for (const member of members) {
      assert.equal(member.chunks.length, reference.chunks.length);
      for (let c = 0; c < reference.chunks.length; c++) {
        if (member.chunks[c] !== reference.chunks[c]) {
          assert.fail(`member got a different chunk ${c}`);
        }
      }
    }
    const stats = channel.stats();
    assert.equal(stats.members, 1000);
    assert.equal(stats.eventsPublished, 10_000);
  });
});

describe("EventChannel: resume", () => {
  test("a member that reconnects with its Last-Event-ID gets exactly the missed events, then live ones", async () => {
    const channel = new EventChannel();
    const first = new FakeMember();
    channel.join(first);
    for (let i = 1; i <= 5; i++) channel.publish({ data: String(i) });
    await tick();
    const seen = first.events();
    first.close();
    for (let i = 6; i <= 10; i++) channel.publish({ data: String(i) });
    await tick();
    const again = new FakeMember({ lastEventId: seen.at(-1)!.id! });
    channel.join(again);
    channel.publish({ data: "11" });
    await tick();
    assert.deepEqual(datas(again.events()), range(6, 11));
  });

  test("events published in the tick of the join are neither lost nor duplicated", async () => {
    const channel = new EventChannel();
    const a = channel.publish({ data: "1" });
    channel.publish({ data: "2" });
    const member = new FakeMember({ lastEventId: a });
    channel.join(member); // "2" is in history but not yet flushed
    channel.publish({ data: "3" });
    await tick();
    assert.deepEqual(datas(member.events()), ["2", "3"]);
  });

  test("with an asynchronous store, events published during the replay follow it", async () => {
    const memory = new MemoryHistoryStore();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow: HistoryStore = {
      append: (entry: HistoryEntry) => memory.append(entry),
      // Answers late, and by then also holds events appended after the call.
      readAfter: async (id: string) => {
        await gate;
        return memory.readAfter(id);
      },
      bounds: () => memory.bounds(),
    };
    const channel = new EventChannel({ history: slow });
    const a = channel.publish({ data: "1" });
    channel.publish({ data: "2" });
    await tick();
    const member = new FakeMember({ lastEventId: a });
    channel.join(member);
    channel.publish({ data: "3" });
    await tick();
    assert.equal(member.chunks.length, 0, "nothing before the replay");
    channel.publish({ data: "4" });
    release();
    await tick();
    channel.publish({ data: "5" });
    await tick();
    assert.deepEqual(datas(member.events()), ["2", "3", "4", "5"]);
  });

  test("a store that keeps only bytes (its own entries) replays them", async () => {
    const memory = new MemoryHistoryStore();
    const plain: HistoryStore = {
      append: (entry) =>
        memory.append({
          id: entry.id,
          topic: entry.topic,
          bytes: entry.bytes.slice(),
        }),
      readAfter: (id) => memory.readAfter(id),
      bounds: () => memory.bounds(),
    };
    const channel = new EventChannel({ history: plain });
    const first = channel.publish({ data: "1" });
    const second = channel.publish({ event: "note", data: "é\n2" });
    await tick();
    const member = new FakeMember({ lastEventId: first });
    channel.join(member);
    assert.equal(member.text(), `id:${second}\nevent:note\ndata:é\ndata:2\n\n`);
  });

  test("an id the history no longer holds gets a reset event carrying the newest id", () => {
    const channel = new EventChannel({
      history: new MemoryHistoryStore({ maxCount: 3 }),
    });
    const ids = range(1, 10).map((n) => channel.publish({ data: n }));
    // 8, 9 and 10 are held, so a client that saw 6 missed 7.
    const evicted = new FakeMember({ lastEventId: ids[5]! });
    channel.join(evicted);
    assert.deepEqual(evicted.events(), [
      { event: "reset", data: "", id: ids[9] },
    ]);
    // The newest evicted id is still a complete resume point.
    const boundary = new FakeMember({ lastEventId: ids[6]! });
    channel.join(boundary);
    assert.deepEqual(datas(boundary.events()), ["8", "9", "10"]);
    const upToDate = new FakeMember({ lastEventId: ids[9]! });
    channel.join(upToDate);
    assert.equal(upToDate.chunks.length, 0);
  });

  test("an id from another server process gets a reset event", () => {
    const channel = new EventChannel();
    channel.publish({ data: "x" });
    const member = new FakeMember({ lastEventId: "previous-process-17" });
    channel.join(member);
    assert.deepEqual(member.events(), [
      { event: "reset", data: "", id: channel.lastEventId },
    ]);
  });

  test("the reset event is configurable and can be turned off", () => {
    const custom = new EventChannel({
      reset: { event: "resync", data: "all" },
    });
    const a = new FakeMember({ lastEventId: "nope" });
    custom.join(a);
    assert.deepEqual(a.events(), [{ event: "resync", data: "all", id: "" }]);
    const off = new EventChannel({ reset: null });
    const b = new FakeMember({ lastEventId: "nope" });
    off.join(b);
    assert.equal(b.chunks.length, 0);
  });
});

describe("EventChannel: slow members", () => {
  test('"close": a stalled member is closed while the others get everything', async () => {
    const channel = new EventChannel({ highWaterMark: 1000 });
    const stalled = new FakeMember({ stalled: true });
    const others = [new FakeMember(), new FakeMember()];
    channel.join(stalled);
    for (const m of others) channel.join(m);
    for (let t = 0; t < 20; t++) {
      for (let i = 1; i <= 10; i++) channel.publish({ data: "x".repeat(20) });
      await tick();
    }
    assert.equal(stalled.closed, true);
    for (const m of others) assert.equal(m.events().length, 200);
    const stats = channel.stats();
    assert.equal(stats.members, 2);
    assert.equal(stats.membersDropped, 1);
  });

  test('"drop-oldest": a stalled member loses its oldest events and is told how many', async () => {
    const channel = new EventChannel({
      overflow: "drop-oldest",
      highWaterMark: 200,
    });
    const stalled = new FakeMember({ stalled: true });
    const other = new FakeMember();
    channel.join(stalled);
    channel.join(other);
    for (let i = 1; i <= 100; i++) {
      channel.publish({ data: String(i) });
      await tick();
    }
    assert.equal(stalled.closed, false);
    assert.equal(other.events().length, 100, "the others get everything");
    // At most a high-water mark in the endpoint and one in the channel.
    assert.ok(channel.queuedBytes(stalled)! <= 400);
    for (let round = 0; round < 100 && stalled.bufferedAmount > 0; round++) {
      stalled.take();
      await tick();
    }
    const events = stalled.events();
    const notices = events.filter((e) => e.event === "dropped");
    assert.equal(notices.length, 1);
    const at = events.indexOf(notices[0]!);
    const dropped = Number(notices[0]!.data);
    assert.ok(dropped > 0);
    assert.equal(channel.stats().eventsDropped, dropped);
    // The oldest were dropped: what came before the notice is 1..at, and
    // what follows it is the newest, up to 100, without a gap.
    assert.deepEqual(datas(events.slice(0, at)), range(1, at));
    assert.deepEqual(datas(events.slice(at + 1)), range(at + dropped + 1, 100));
  });

  test("a member that catches up gets its queued events in order", async () => {
    const channel = new EventChannel({
      log: new LocalEventLog({ epoch: "s" }),
    });
    // Each event is 15 bytes ("id:s-1\ndata:1\n\n"): three fit in the
    // endpoint's 50, three more in the channel's queue, a seventh is too many.
    const slow = new FakeMember({ stalled: true, highWaterMark: 50 });
    channel.join(slow);
    for (let i = 1; i <= 6; i++) {
      channel.publish({ data: String(i) });
      await tick();
    }
    assert.equal(slow.closed, false);
    assert.equal(slow.bufferedAmount, 45);
    assert.equal(channel.queuedBytes(slow), 90);
    for (let round = 0; round < 100 && slow.bufferedAmount > 0; round++) {
      slow.take();
      await tick();
    }
    assert.deepEqual(datas(slow.events()), range(1, 6));
    assert.equal(channel.queuedBytes(slow), 0);
    for (let i = 7; i <= 13; i++) channel.publish({ data: String(i) });
    await tick();
    assert.equal(slow.closed, false, "one burst is written whole");
    // 17 bytes each from now on: 14 and 15 fit in the queue, 16 does not.
    channel.publish({ data: "14" });
    await tick();
    channel.publish({ data: "15" });
    await tick();
    assert.equal(slow.closed, false);
    channel.publish({ data: "16" });
    await tick();
    assert.equal(slow.closed, true, "then the next is over the mark");
    assert.equal(channel.stats().membersDropped, 1);
  });
});

/**
 * Like an endpoint on node, where a write's promise resolves once
 * `res.write()` accepts it, while `bufferedAmount` still counts what node has
 * not sent yet (`held`, which the test lowers).
 */
class NodeLike extends FakeMember {
  held = 0;
  override get bufferedAmount(): number {
    return this.held;
  }
  override write(bytes: Uint8Array): Promise<void> {
    this.held += bytes.byteLength;
    return super.write(bytes);
  }
}

describe("EventChannel: flow control", () => {
  test("a member whose buffer drains without settling a write is polled, not spun on", async () => {
    const channel = new EventChannel({
      log: new LocalEventLog({ epoch: "n" }),
    });
    const member = new NodeLike({ highWaterMark: 20 });
    channel.join(member);
    channel.publish({ data: "1" }); // 15 bytes: written
    await tick();
    channel.publish({ data: "2" }); // 15 + 15 > 20: queued
    await tick();
    assert.deepEqual(datas(member.events()), ["1"]);
    member.held = 0; // the socket took it; nothing settles
    await until(() => member.events().length === 2, "the queued event");
    assert.deepEqual(datas(member.events()), ["1", "2"]);
    assert.equal(channel.queuedBytes(member), 15);
    member.close();
    assert.equal(channel.size, 0);
  });

  test("a member that leaves while behind is never written to again", async () => {
    const channel = new EventChannel({
      log: new LocalEventLog({ epoch: "n" }),
    });
    const member = new NodeLike({ highWaterMark: 20 });
    channel.join(member);
    channel.publish({ data: "1" });
    await tick();
    channel.publish({ data: "2" });
    await tick();
    assert.equal(channel.queuedBytes(member), 30);
    assert.equal(channel.leave(member), true);
    assert.equal(channel.queuedBytes(member), undefined);
    assert.equal(channel.stats().queuedBytes, 0);
    member.held = 0;
    // Longer than the channel's poll interval (5 ms).
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.deepEqual(datas(member.events()), ["1"]);
  });

  test("join options override the endpoint's id and high-water mark", () => {
    const channel = new EventChannel();
    const first = channel.publish({ data: "1" });
    channel.publish({ data: "2" });
    const live = new FakeMember({ lastEventId: first });
    channel.join(live, { lastEventId: "" });
    assert.equal(live.chunks.length, 0, "joined live: no replay");
    const other = new FakeMember();
    channel.join(other, { lastEventId: first });
    assert.deepEqual(datas(other.events()), ["2"]);
    assert.throws(
      () => channel.join(new FakeMember(), { highWaterMark: Number.NaN }),
      /highWaterMark is NaN, expected a number of bytes >= 0/,
    );
  });
});

describe("MemoryHistoryStore", () => {
  const entry = (id: string): HistoryEntry => ({
    id,
    topic: undefined,
    bytes: new Uint8Array(),
  });

  test("is bounded by count", () => {
    const store = new MemoryHistoryStore({ maxCount: 3 });
    for (const id of ["a", "b", "c", "d", "e"]) store.append(entry(id));
    assert.deepEqual(store.bounds(), {
      count: 3,
      oldestId: "c",
      newestId: "e",
    });
    assert.equal(store.readAfter("a"), null);
    assert.deepEqual(store.readAfter("b")!.map((e) => e.id), ["c", "d", "e"]);
    assert.deepEqual(store.readAfter("d")!.map((e) => e.id), ["e"]);
    assert.deepEqual(store.readAfter("e"), []);
    assert.equal(store.readAfter("zzz"), null);
  });

  test("is bounded by age, with an injected clock", () => {
    let now = 1000;
    const store = new MemoryHistoryStore({ maxAge: 100, now: () => now });
    store.append(entry("a"));
    now = 1050;
    store.append(entry("b"));
    now = 1100; // "a" is exactly 100 old: still held
    assert.deepEqual(store.bounds(), {
      count: 2,
      oldestId: "a",
      newestId: "b",
    });
    now = 1101;
    assert.deepEqual(store.bounds(), {
      count: 1,
      oldestId: "b",
      newestId: "b",
    });
    assert.deepEqual(store.readAfter("a")!.map((e) => e.id), ["b"]);
    now = 2000;
    assert.deepEqual(store.readAfter("b"), []);
    assert.equal(store.readAfter("a"), null);
    store.append(entry("c"));
    assert.deepEqual(store.bounds(), {
      count: 1,
      oldestId: "c",
      newestId: "c",
    });
  });

  test("maxCount 0 keeps nothing but knows the newest id", () => {
    const store = new MemoryHistoryStore({ maxCount: 0 });
    store.append(entry("a"));
    store.append(entry("b"));
    assert.deepEqual(store.readAfter("b"), []);
    assert.equal(store.readAfter("a"), null);
    assert.equal(store.bounds().count, 0);
  });

  test("the ring buffer wraps many times", () => {
    const store = new MemoryHistoryStore({ maxCount: 7 });
    for (let i = 0; i < 1000; i++) store.append(entry(String(i)));
    assert.deepEqual(
      store.readAfter("992")!.map((e) => e.id),
      range(993, 999),
    );
  });

  test("a channel's history obeys both bounds", () => {
    let now = 0;
    const channel = new EventChannel({
      history: new MemoryHistoryStore({
        maxCount: 5,
        maxAge: 10,
        now: () => now,
      }),
    });
    const ids: string[] = [];
    for (let i = 1; i <= 8; i++) {
      now = i;
      ids.push(channel.publish({ data: String(i) }));
    }
    const byCount = new FakeMember({ lastEventId: ids[2]! });
    channel.join(byCount);
    assert.deepEqual(datas(byCount.events()), range(4, 8));
    now = 15; // events 1..4 are older than 10
    const byAge = new FakeMember({ lastEventId: ids[3]! });
    channel.join(byAge);
    assert.deepEqual(datas(byAge.events()), range(5, 8));
    const tooOld = new FakeMember({ lastEventId: ids[2]! });
    channel.join(tooOld);
    assert.equal(tooOld.events()[0]!.event, "reset");
  });
});

// ---------------------------------------------------------------------------
// Real connections on 127.0.0.1: Deno.serve on Deno, Bun.serve on Bun,
// node:http on Node. Many streams are read with node:http's client, which all
// three runtimes have (Bun's fetch runs at most 256 requests at a time).

interface DenoServe {
  serve(
    options: { port: number; hostname: string; onListen(): void },
    handler: (request: Request) => Response,
  ): { addr: { port: number }; shutdown(): Promise<void> };
}
interface BunServe {
  serve(options: {
    port: number;
    hostname: string;
    idleTimeout: number;
    fetch: (request: Request) => Response;
  }): { port: number; stop(force: boolean): Promise<void> | void };
}
const runtimes = globalThis as { Deno?: DenoServe; Bun?: BunServe };

interface Served {
  origin: string;
  /** Every endpoint served, with whether its `close` event fired. */
  endpoints: { endpoint: EventEndpoint; closeFired: boolean }[];
  /** On node:http, the server side's sockets, in request order. */
  sockets: { destroyed: boolean }[];
  close(): Promise<void>;
}

/** Serves `channel`: every request becomes an endpoint that joins it. */
async function serveChannel(channel: EventChannel): Promise<Served> {
  const options = { heartbeat: 0 };
  const endpoints: Served["endpoints"] = [];
  const sockets: Served["sockets"] = [];
  const served = (endpoint: EventEndpoint): EventEndpoint => {
    const entry = { endpoint, closeFired: false };
    endpoint.addEventListener("close", () => (entry.closeFired = true));
    endpoints.push(entry);
    return endpoint;
  };
  const web = (request: Request): Response => {
    const endpoint = served(new EventEndpoint(request, options));
    channel.join(endpoint);
    return endpoint.response!;
  };
  if (runtimes.Deno) {
    const server = runtimes.Deno.serve(
      { port: 0, hostname: "127.0.0.1", onListen() {} },
      web,
    );
    return {
      origin: `http://127.0.0.1:${server.addr.port}`,
      endpoints,
      sockets,
      close: () => server.shutdown(),
    };
  }
  if (runtimes.Bun) {
    const server = runtimes.Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      idleTimeout: 0,
      fetch: web,
    });
    return {
      origin: `http://127.0.0.1:${server.port}`,
      endpoints,
      sockets,
      close: async () => {
        await server.stop(true);
      },
    };
  }
  const server = http.createServer((req, res) => {
    sockets.push(req.socket);
    channel.join(served(new EventEndpoint(req, res, options)));
  });
  return {
    origin: await listenOnLoopback(server),
    endpoints,
    sockets,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A raw event stream read with node:http; `paused` reads nothing yet. */
class RawStream {
  readonly request: http.ClientRequest;
  response: http.IncomingMessage | undefined;
  received = 0;
  ended = false;
  /** The connection closed (ended, or cut by the server). */
  closed = false;
  #onChunk: (chunk: Buffer) => void;

  constructor(
    origin: string,
    agent: http.Agent,
    onChunk: (chunk: Buffer) => void,
    paused = false,
  ) {
    this.#onChunk = onChunk;
    this.request = http.get(origin + "/", { agent }, (response) => {
      this.response = response;
      response.on("end", () => (this.ended = true));
      response.on("error", () => {});
      response.on("close", () => (this.closed = true));
      if (!paused) this.resume();
    });
    this.request.on("error", () => {});
    this.request.on("close", () => (this.closed = true));
  }

  resume(): void {
    this.response!.on("data", (chunk: Buffer) => {
      this.received += chunk.byteLength;
      this.#onChunk(chunk);
    });
  }

  destroy(): void {
    this.request.destroy();
    this.response?.destroy();
  }
}

/** Waits for `condition`, checking every 5 ms, for at most `seconds`. */
async function until(
  condition: () => boolean,
  what: string,
  seconds = 60,
): Promise<void> {
  for (let i = 0; i < seconds * 200; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`Gave up waiting for ${what} after ${seconds} s`);
}

describe("EventChannel over real connections", () => {
  test("1000 members receive 10 000 events in order", async () => {
    const channel = new EventChannel({
      log: new LocalEventLog({ epoch: "r" }),
    });
    const served = await serveChannel(channel);
    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    // What every member must receive, byte for byte: the endpoint's opening
    // comment, then the 10 000 events in order.
    const parts = [":\n"];
    for (let i = 1; i <= 10_000; i++) {
      parts.push(encodeServerSentEvent({ id: `r-${i}`, data: `event ${i}` }));
    }
    const expected = Buffer.from(parts.join(""));
    const offsets: number[] = [];
    let mismatches = 0;
    const streams: RawStream[] = [];
    try {
      for (let m = 0; m < 1000; m++) {
        offsets.push(0);
        streams.push(
          new RawStream(served.origin, agent, (chunk) => {
            const at = offsets[m]!;
            if (!chunk.equals(expected.subarray(at, at + chunk.byteLength))) {
              mismatches++;
            }
            offsets[m] = at + chunk.byteLength;
          }),
        );
      }
      await until(() => channel.size === 1000, "1000 members to join");
      // Bursts of 1000 events, each written to every member as one chunk.
      for (let burst = 0; burst < 10; burst++) {
        for (let i = 1; i <= 1000; i++) {
          channel.publish({ data: `event ${burst * 1000 + i}` });
        }
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      await until(
        () => streams.every((s) => s.received >= expected.byteLength),
        "every member to receive every event",
      );
      assert.equal(mismatches, 0);
      assert.ok(streams.every((s) => s.received === expected.byteLength));
      const stats = channel.stats();
      assert.equal(stats.members, 1000);
      assert.equal(stats.eventsPublished, 10_000);
      assert.equal(stats.membersDropped, 0);
    } finally {
      for (const stream of streams) stream.destroy();
      agent.destroy();
      await served.close();
    }
  });

  test("a client that reconnects with its Last-Event-ID gets exactly the missed events (EventConsumer)", async () => {
    const channel = new EventChannel();
    const served = await serveChannel(channel);
    const consumers: EventConsumer[] = [];
    const received: MessageEvent<string>[][] = [];
    const connect = async (lastEventId?: string): Promise<void> => {
      const headers: Record<string, string> = lastEventId === undefined
        ? {}
        : { "last-event-id": lastEventId };
      const consumer = new EventConsumer(
        await fetch(served.origin + "/", { headers }),
      );
      const events: MessageEvent<string>[] = [];
      consumer.addEventListener("message", (e) => events.push(e));
      consumers.push(consumer);
      received.push(events);
    };
    const publishRange = (from: number, to: number): void => {
      for (let i = from; i <= to; i++) channel.publish({ data: String(i) });
    };
    const has = (events: MessageEvent<string>[], data: string) => () =>
      events.some((e) => e.data === data);
    try {
      await connect();
      await until(() => channel.size === 1, "the client to join");
      publishRange(1, 50);
      await until(has(received[0]!, "20"), "the client to get event 20");
      // The connection drops right after event 20.
      consumers[0]!.close();
      const upTo20 = received[0]!.slice(
        0,
        received[0]!.findIndex((e) => e.data === "20") + 1,
      );
      await until(() => channel.size === 0, "the server to see it leave");
      publishRange(51, 60); // while it is away
      await connect(upTo20.at(-1)!.lastEventId);
      await until(() => channel.size === 1, "the client to rejoin");
      publishRange(61, 70);
      await until(has(received[1]!, "70"), "the client to get event 70");
      assert.deepEqual(
        [...upTo20, ...received[1]!].map((e) => e.data),
        range(1, 70),
      );
    } finally {
      for (const consumer of consumers) consumer.close();
      await served.close();
    }
  });

  for (const overflow of ["close", "drop-oldest"] as const) {
    test(`"${overflow}": a stalled reader is handled while the others keep receiving`, async () => {
      const channel = new EventChannel({ overflow, highWaterMark: 64 * 1024 });
      const served = await serveChannel(channel);
      const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
      const stalledText: string[] = [];
      const stalled = new RawStream(
        served.origin,
        agent,
        (chunk) => stalledText.push(chunk.toString()),
        true,
      );
      const readers = [1, 2, 3].map(() =>
        new RawStream(served.origin, agent, () => {})
      );
      const payload = "x".repeat(1000);
      let published = 2; // the opening comment
      try {
        await until(() => channel.size === 4, "4 members to join");
        // Publish 64 KiB at a time, as fast as the three readers take it,
        // until the stalled one (whose socket buffers fill first) overflows.
        const handled = () => {
          const stats = channel.stats();
          return overflow === "close"
            ? stats.membersDropped > 0
            : stats.eventsDropped > 0;
        };
        for (let burst = 0; burst < 2000 && !handled(); burst++) {
          for (let i = 0; i < 64; i++) {
            const id = channel.publish({ data: payload });
            published += encodeServerSentEvent({ id, data: payload }).length;
          }
          await until(
            () => readers.every((r) => r.received === published),
            "the readers to take the burst",
          );
        }
        assert.ok(handled(), "the stalled member overflowed");
        const stats = channel.stats();
        assert.equal(stats.members, overflow === "close" ? 3 : 4);
        assert.ok(readers.every((r) => !r.ended));
        const hardClose = typeof (EventEndpoint.prototype as {
          abort?: unknown;
        }).abort === "function";
        if (overflow === "close" && hardClose) {
          // The endpoint's hard close, while its client still reads nothing:
          // closed, `close` fired, nothing buffered, and on node:http the
          // server's socket destroyed. (The client itself sees the end only
          // once it reads: TCP delivers the FIN after the data in flight.)
          const dropped = served.endpoints.filter((e) => e.endpoint.closed);
          assert.equal(dropped.length, 1);
          const [{ endpoint }] = dropped as [(typeof dropped)[0]];
          await until(
            () => dropped[0]!.closeFired,
            "the dropped endpoint's close event",
            10,
          );
          assert.equal(endpoint.bufferedAmount, 0);
          if (served.sockets.length > 0) {
            const index = served.endpoints.indexOf(dropped[0]!);
            await until(
              () => served.sockets[index]!.destroyed,
              "the dropped client's socket to be destroyed",
              10,
            );
          }
        }
        // The stalled client reads again.
        const last = channel.publish({ event: "end", data: "" });
        stalled.resume();
        if (overflow === "close") {
          await until(
            () => hardClose ? stalled.closed : stalled.ended,
            "the dropped stream to end",
          );
          // What it got before the cut: whole payload events only.
          const text = stalledText.join("");
          const events = parse(text.slice(0, text.lastIndexOf("\n\n") + 2));
          assert.ok(hardClose || events.length > 0);
          assert.ok(events.every((e) => e.data === payload));
        } else {
          await until(
            () => stalledText.join("").includes(`id:${last}\n`),
            "the stalled client to get the last event",
          );
          const events = parse(stalledText.join(""));
          const notices = events.filter((e) => e.event === "dropped");
          assert.equal(notices.length, 1);
          const dropped = Number(notices[0]!.data);
          assert.equal(dropped, channel.stats().eventsDropped);
          // Every event but the dropped ones arrived, in order.
          const ids = events.filter((e) => e.event !== "dropped").map((e) =>
            Number(e.id!.slice(e.id!.lastIndexOf("-") + 1))
          );
          const at = events.indexOf(notices[0]!);
          assert.deepEqual(
            ids.slice(0, at),
            ids.slice(0, at).map((_, i) => i + 1),
          );
          assert.equal(ids[at], at + dropped + 1);
          assert.ok(
            ids.every((id, i) => i === 0 || i === at || id === ids[i - 1]! + 1),
          );
          assert.equal(ids.length + dropped, channel.stats().eventsPublished);
        }
      } finally {
        stalled.destroy();
        for (const reader of readers) reader.destroy();
        agent.destroy();
        await served.close();
      }
    });
  }
});

// ---------------------------------------------------------------------------
// Defects of the single-process channel (issue 15), each reproduced first.

describe("EventChannel: issue 15 defects", () => {
  test("a topic member whose last event was evicted with only other topics' events after it resumes without a reset", async () => {
    const channel = new EventChannel({
      history: new MemoryHistoryStore({ maxCount: 3 }),
    });
    const rare = channel.publish({ data: "rare 1" }, { topic: "rare" });
    const common: string[] = [];
    for (let i = 1; i <= 5; i++) {
      common.push(
        channel.publish({ data: `common ${i}` }, { topic: "common" }),
      );
    }
    await tick();
    const member = new FakeMember({ lastEventId: rare });
    channel.join(member, { topics: ["rare"] });
    channel.publish({ data: "rare 2" }, { topic: "rare" });
    await tick();
    assert.deepEqual(member.events().map((e) => e.data), ["rare 2"]);
    // The control: a "common" member at common 1 missed common 2 and 3
    // (evicted), so it is reset.
    const behind = new FakeMember({ lastEventId: common[0]! });
    channel.join(behind, { topics: ["common"] });
    assert.equal(behind.events()[0]!.event, "reset");
  });

  test("with a fixed idPrefix, an id from before a restart (fresh store) gets a reset, not a wrong resume", async () => {
    const before = new EventChannel({ idPrefix: "doc-" });
    const ids: string[] = [];
    for (let i = 1; i <= 5; i++) ids.push(before.publish({ data: `old ${i}` }));
    const restarted = new EventChannel({ idPrefix: "doc-" });
    for (let i = 1; i <= 4; i++) restarted.publish({ data: `new ${i}` });
    await tick();
    const member = new FakeMember({ lastEventId: ids[2]! });
    restarted.join(member);
    const events = member.events();
    assert.equal(events.length, 1);
    assert.equal(events[0]!.event, "reset");
  });

  test("the channel's highWaterMark applies to EventEndpoint members", async () => {
    const channel = new EventChannel({ highWaterMark: 4096 });
    const endpoint = new EventEndpoint(new Request("http://localhost/"), {
      heartbeat: 0,
    });
    channel.join(endpoint); // nobody reads the response
    const payload = "x".repeat(1000);
    for (let i = 0; i < 20 && !endpoint.closed; i++) {
      channel.publish({ data: payload });
      await tick();
    }
    assert.equal(channel.stats().membersDropped, 1);
    assert.equal(endpoint.closed, true);
    assert.ok(endpoint.bufferedAmount <= 4096 + 1100);
  });

  test('"close" overflow ends a stalled member with its hard close (abort) when it has one', async () => {
    class Abortable extends FakeMember {
      aborted = 0;
      closedByClose = 0;
      abort(): void {
        this.aborted++;
        super.close();
      }
      override close(): void {
        if (!this.closed) this.closedByClose++;
        super.close();
      }
    }
    const channel = new EventChannel();
    const slow = new Abortable({ stalled: true, highWaterMark: 50 });
    channel.join(slow);
    for (let i = 0; i < 20 && !slow.closed; i++) {
      channel.publish({ data: String(i) });
      await tick();
    }
    assert.equal(slow.aborted, 1);
    assert.equal(slow.closedByClose, 0);
    assert.equal(channel.size, 0);
  });

  test("a member behind its own mark waits for its ready signal instead of being polled", async () => {
    // Like the EventEndpoint contract: a write resolves as soon as it is
    // queued; `ready` settles once the buffer is back under the mark.
    class Ready extends EventTarget implements ChannelMember {
      lastEventId = "";
      closed = false;
      highWaterMark = 100;
      held = 0;
      reads = 0;
      text = "";
      ready: Promise<void> = Promise.resolve();
      #resolve = (): void => {};
      get bufferedAmount(): number {
        this.reads++;
        return this.held;
      }
      write(bytes: Uint8Array): Promise<boolean> {
        this.text += decoder.decode(bytes);
        this.held += bytes.byteLength;
        if (this.held > this.highWaterMark) {
          this.ready = new Promise((resolve) => (this.#resolve = resolve));
        }
        return Promise.resolve(true);
      }
      drain(): void {
        this.held = 0;
        this.#resolve();
      }
      close(): void {
        this.closed = true;
        this.dispatchEvent(new Event("close"));
      }
    }
    const channel = new EventChannel();
    const member = new Ready();
    channel.join(member);
    channel.publish({ data: "1".repeat(150) }); // written: the buffer was empty
    await tick();
    channel.publish({ data: "2" }); // queued: the buffer is past the mark
    await tick();
    assert.equal(parse(member.text).length, 1);
    const reads = member.reads;
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.ok(
      member.reads - reads <= 1,
      `bufferedAmount read ${member.reads - reads} times while waiting`,
    );
    member.drain();
    await tick();
    assert.deepEqual(datas(parse(member.text)), ["1".repeat(150), "2"]);
    member.close();
  });

  test("an EventEndpoint under a channel limit lower than its own catches up on drained(), with no timer", async () => {
    // Every setTimeout made while the member is behind, from anywhere.
    const timers: string[] = [];
    const setTimeout = globalThis.setTimeout;
    const channel = new EventChannel({
      highWaterMark: 200,
      log: new LocalEventLog({ epoch: "n" }),
    });
    const endpoint = new EventEndpoint(new Request("http://localhost/"), {
      heartbeat: 0,
    }); // its own mark: 1 MiB
    channel.join(endpoint);
    const reader = endpoint.response!.body!.getReader();
    let text = "";
    try {
      globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
        timers.push(new Error("setTimeout").stack ?? "");
        return setTimeout(...args);
      }) as typeof setTimeout;
      const data = "x".repeat(40); // 54 bytes with "id:n-k\ndata:" and "\n\n"
      for (let i = 0; i < 6; i++) {
        channel.publish({ data });
        await tick();
      }
      // ":\n" and three events fit under 200 bytes; the client has read
      // nothing, so the other three wait in the channel's queue.
      assert.equal(endpoint.bufferedAmount, 2 + 3 * 54);
      // The backlog counts the endpoint's buffer and the channel's queue.
      assert.equal(channel.queuedBytes(endpoint), 2 + 6 * 54);
      assert.ok(endpoint.bufferedAmount < endpoint.highWaterMark);
      while (parse(text).length < 6) {
        const { value } = await reader.read();
        text += decoder.decode(value);
      }
    } finally {
      globalThis.setTimeout = setTimeout;
    }
    assert.deepEqual(datas(parse(text)), Array(6).fill("x".repeat(40)));
    assert.equal(channel.queuedBytes(endpoint), 0);
    assert.deepEqual(timers, [], "no timer while catching up");
    await reader.cancel();
    assert.equal(channel.size, 0);
  });

  test("a stalled member on a rare topic holds copies of its events, not views into whole ticks", async () => {
    const channel = new EventChannel({ highWaterMark: 1 << 20 });
    const member = new FakeMember({ stalled: true });
    channel.join(member, { topics: ["rare"] });
    const big = "x".repeat(64 * 1024);
    for (let i = 1; i <= 10; i++) {
      channel.publish({ data: big }, { topic: "common" });
      channel.publish({ data: `rare ${i}` }, { topic: "rare" });
      channel.publish({ data: big }, { topic: "common" });
      await tick();
    }
    const queued = channel.queuedBytes(member)!;
    member.take();
    await tick();
    member.take();
    const held = member.chunks.reduce((n, c) => n + c.buffer.byteLength, 0);
    const counted = member.chunks.reduce((n, c) => n + c.byteLength, 0);
    assert.deepEqual(
      datas(member.events()),
      range(1, 10).map((i) => `rare ${i}`),
    );
    assert.equal(queued, counted);
    assert.equal(held, counted, "each chunk is just the member's bytes");
  });

  test("a member that is closed but has not fired close yet is never written to", async () => {
    class Counting extends FakeMember {
      writes = 0;
      override write(bytes: Uint8Array): Promise<void> {
        this.writes++;
        return super.write(bytes);
      }
    }
    const channel = new EventChannel();
    const member = new Counting();
    channel.join(member);
    member.closed = true; // its close event has not fired yet
    channel.publish({ data: "after close" });
    await tick();
    assert.equal(member.writes, 0);
    assert.equal(channel.size, 0);
  });
});
