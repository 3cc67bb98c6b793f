import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import process from "node:process";
import { Buffer } from "node:buffer";
import { EventEmitter } from "node:events";
import fc from "fast-check";
import { Hono } from "hono";
import {
  encodeServerSentEvent,
  EventEndpoint,
  type EventEndpointOptions,
  type NodeRequestLike,
  type ServerSentEventMessage,
  ServerSentEventStream,
} from "./sse.ts";
import {
  EventConsumer,
  type ServerSentEvent,
  ServerSentEventParser,
} from "./client.ts";
import { parse, type Parsed } from "./_client_test_utils.ts";
import { EventChannel } from "./channel.ts";
import {
  allServerKinds,
  type NodeHandler,
  ownServer,
  runtime,
  serverKinds,
  type TestServer,
  waitFor,
  type WebHandler,
} from "./_server_test_utils.ts";

const utf8 = new TextEncoder();
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------
// Encoder: exact bytes
// ---------------------------------------------------------------------------

describe("encodeServerSentEvent", () => {
  const cases: [ServerSentEventMessage, string][] = [
    [{}, ""],
    [{ data: "hello" }, "data:hello\n\n"],
    [{ data: "" }, "data:\n\n"],
    [{ data: " x" }, "data:  x\n\n"],
    [{ data: "  x " }, "data:   x \n\n"],
    [{ data: "a:b: c" }, "data:a:b: c\n\n"],
    [{ data: "a\nb" }, "data:a\ndata:b\n\n"],
    [{ data: "a\rb" }, "data:a\ndata:b\n\n"],
    [{ data: "a\r\nb" }, "data:a\ndata:b\n\n"],
    [{ data: "a\n\rb" }, "data:a\ndata:\ndata:b\n\n"],
    [{ data: "a\r\r\nb" }, "data:a\ndata:\ndata:b\n\n"],
    [{ data: "\n" }, "data:\ndata:\n\n"],
    [{ data: "x\n" }, "data:x\ndata:\n\n"],
    [{ data: "\n x" }, "data:\ndata:  x\n\n"],
    [{ data: "é😀\uFEFF" }, "data:é😀\uFEFF\n\n"],
    [{ event: "update", data: "1" }, "event:update\ndata:1\n\n"],
    [{ id: "7", data: "x" }, "id:7\ndata:x\n\n"],
    [{ event: "e", id: "1", data: "d" }, "event:e\nid:1\ndata:d\n\n"],
    [{ event: " e", id: "1", data: "d" }, "event:  e\nid:1\ndata:d\n\n"],
    [{ event: "e", id: " 1", data: "d" }, "event:e\nid:  1\ndata:d\n\n"],
    [{ id: " 1", data: "d" }, "id:  1\ndata:d\n\n"],
    [{ event: "e", data: " d" }, "event:e\ndata:  d\n\n"],
    [{ event: " spaced" }, "event:  spaced\n\n"],
    [{ event: "" }, "event:\n\n"],
    [{ id: "" }, "id:\n\n"],
    [{ id: "42" }, "id:42\n\n"],
    [{ id: " 1" }, "id:  1\n\n"],
    // Control characters next to CR and LF pass; NUL is refused in id only.
    [{ event: "a\0\t\v\f\x0eb" }, "event:a\0\t\v\f\x0eb\n\n"],
    [{ id: "\t\v\f\x0e" }, "id:\t\v\f\x0e\n\n"],
    [{ comment: "c", data: "d" }, ":c\ndata:d\n\n"],
    [{ retry: 0 }, "retry:0\n"],
    [{ retry: 2 ** 31 - 1 }, "retry:2147483647\n"],
    [{ retry: 1e3 }, "retry:1000\n"],
    [{ comment: "" }, ":\n"],
    [{ comment: " keep-alive" }, ": keep-alive\n"],
    [{ comment: "a\r\nb\rc\nd" }, ":a\n:b\n:c\n:d\n"],
    [{ comment: "x\n" }, ":x\n:\n"],
    [
      { comment: "c", event: "e", id: "i", retry: 5, data: "d" },
      ":c\nevent:e\nid:i\nretry:5\ndata:d\n\n",
    ],
    [
      { data: "d", retry: 5, id: "i", event: "e", comment: "c" },
      ":c\nevent:e\nid:i\nretry:5\ndata:d\n\n",
    ],
    [{ comment: "c", retry: 7 }, ":c\nretry:7\n"],
    [
      {
        data: undefined,
        event: undefined,
      } as unknown as ServerSentEventMessage,
      "",
    ],
  ];
  for (const [message, expected] of cases) {
    test(`${JSON.stringify(message)} → ${JSON.stringify(expected)}`, () => {
      assert.equal(encodeServerSentEvent(message), expected);
    });
  }

  const errors: [string, unknown, string, RegExp][] = [
    ["LF in event", { event: "a\nb" }, "TypeError", /event .*CR or LF/],
    ["CR in event", { event: "a\rb" }, "TypeError", /event .*CR or LF/],
    ["CRLF in id", { id: "a\r\nb" }, "TypeError", /id .*CR or LF/],
    ["LF in id", { id: "\n" }, "TypeError", /id .*CR or LF/],
    ["NUL in id", { id: "a\0b" }, "TypeError", /id .*NUL/],
    [
      "CR ending a long event",
      { event: "e".repeat(99) + "\r" },
      "TypeError",
      /event .*CR or LF/,
    ],
    [
      "LF ending a long id",
      { id: "i".repeat(99) + "\n" },
      "TypeError",
      /id .*CR or LF/,
    ],
    ["NUL and LF in id", { id: "\0\n" }, "TypeError", /id .*CR or LF/],
    [
      "LF in the id of an event with data",
      { event: "e", id: "1\n", data: "d" },
      "TypeError",
      /id .*CR or LF/,
    ],
    [
      "CR in the event of an event with data",
      { event: "e\r", data: "d" },
      "TypeError",
      /event .*CR or LF/,
    ],
    ["negative retry", { retry: -1 }, "RangeError", /retry -1.*integer/],
    ["fractional retry", { retry: 1.5 }, "RangeError", /retry 1\.5/],
    ["retry 2^31", { retry: 2 ** 31 }, "RangeError", /retry 2147483648/],
    ["NaN retry", { retry: NaN }, "RangeError", /retry NaN/],
    ["Infinity retry", { retry: Infinity }, "RangeError", /retry Infinity/],
    ["string retry", { retry: "1000" }, "TypeError", /retry.*got "1000"/],
    ["number data", { data: 5 }, "TypeError", /data: expected a string/],
    ["null comment", { comment: null }, "TypeError", /comment: expected/],
    ["number event", { event: 1 }, "TypeError", /event: expected a string/],
    ["object id", { id: {} }, "TypeError", /id: expected a string/],
    ["null message", null, "TypeError", /message: expected an object/],
    ["string message", "data", "TypeError", /message: expected an object/],
  ];
  for (const [name, message, type, pattern] of errors) {
    test(`rejects ${name} with a ${type} that names the field`, () => {
      assert.throws(
        () => encodeServerSentEvent(message as ServerSentEventMessage),
        (error: Error) => {
          assert.equal(error.name, type);
          assert.match(error.message, pattern);
          return true;
        },
      );
    });
  }
});

// ---------------------------------------------------------------------------
// Encoder → parser round trip
// ---------------------------------------------------------------------------

/** Hostile pieces: line ends, NUL, BOM, colons, spaces, surrogates. */
const hostileUnit = fc.oneof(
  fc.constantFrom(
    "\r",
    "\n",
    "\r\n",
    "\n\r",
    "\0",
    "\uFEFF",
    ":",
    " ",
    "  ",
    "data:",
    "id:",
    "event:",
    "retry:",
    "\uD800",
    "\uDFFF",
    "😀",
    "é",
    "\u2028",
    "\u0085",
  ),
  fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
  fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 3 }),
);
const hostile = fc.string({ unit: hostileUnit, maxLength: 12 });
const singleLine = hostile.map((s) => s.replace(/[\r\n]/g, "_"));
const message: fc.Arbitrary<ServerSentEventMessage> = fc.record({
  comment: hostile,
  event: singleLine,
  id: singleLine.map((s) => s.replaceAll("\0", "_")),
  retry: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  data: hostile,
}, { requiredKeys: [] });

/** Parses bytes with the project's parser, fed in the given pieces. */
function parseCut(bytes: Uint8Array, cuts: number[] = []): Parsed {
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    const end = Math.min(cut, bytes.length);
    if (end > start) chunks.push(bytes.subarray(start, end));
    start = Math.max(start, end);
  }
  chunks.push(bytes.subarray(start));
  return parse(chunks);
}

/** What a spec-conforming client must see for a sequence of messages. */
function expected(messages: ServerSentEventMessage[]): Parsed {
  const wf = (s: string) => s.toWellFormed();
  const out: Parsed = {
    events: [],
    retries: [],
    comments: [],
    lastEventId: "",
  };
  for (const m of messages) {
    if (m.comment !== undefined) {
      out.comments.push(...wf(m.comment).split(/\r\n|\r|\n/));
    }
    if (m.retry !== undefined) out.retries.push(m.retry);
    if (m.id !== undefined) out.lastEventId = wf(m.id);
    if (m.data !== undefined) {
      out.events.push({
        type: wf(m.event ?? "") || "message",
        // Line ends in data arrive as LF, whatever they were.
        data: wf(m.data).replace(/\r\n|\r/g, "\n"),
        lastEventId: out.lastEventId,
      });
    }
  }
  return out;
}

describe("encoder → parser round trip", () => {
  test("any sequence of hostile messages parses back to exactly what was encoded", () => {
    fc.assert(
      fc.property(
        fc.array(message, { maxLength: 6 }),
        fc.array(fc.nat(400), { maxLength: 8 }),
        (messages, cuts) => {
          const text = messages.map(encodeServerSentEvent).join("");
          const parsed = parseCut(utf8.encode(text), cuts);
          const want = expected(messages);
          // The parser drops one space after the colon of a comment too.
          want.comments = want.comments.map((c) =>
            c.startsWith(" ") ? c.slice(1) : c
          );
          assert.deepEqual(parsed, want);
        },
      ),
      { numRuns: 2000 },
    );
  });

  test("event and id are rejected exactly when they could inject", () => {
    fc.assert(
      fc.property(hostile, (value) => {
        const breaks = /[\r\n]/.test(value);
        assert.equal(
          throwsTypeError(() => encodeServerSentEvent({ event: value })),
          breaks,
        );
        assert.equal(
          throwsTypeError(() => encodeServerSentEvent({ id: value })),
          breaks || value.includes("\0"),
        );
      }),
      { numRuns: 2000 },
    );
  });

  test("every line of the output is a field line, a comment or the final blank line", () => {
    fc.assert(
      fc.property(message, (m) => {
        const text = encodeServerSentEvent(m);
        if (text === "") return;
        assert.ok(text.endsWith("\n"));
        assert.ok(!text.includes("\r"));
        const lines = text.slice(0, -1).split("\n");
        const dispatches = m.data !== undefined || m.event !== undefined ||
          m.id !== undefined;
        if (dispatches) assert.equal(lines.pop(), "");
        for (const line of lines) {
          assert.match(line, /^(?::|(?:event|id|retry|data):)/);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

function throwsTypeError(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch (error) {
    assert.ok(error instanceof TypeError, String(error));
    return true;
  }
}

describe("the WHATWG rules the encoder relies on (project parser)", () => {
  const run = (...messages: ServerSentEventMessage[]) =>
    parseCut(utf8.encode(messages.map(encodeServerSentEvent).join("")));

  test('data "" dispatches an event with empty data (the buffer is "\\n")', () => {
    assert.deepEqual(run({ data: "" }).events, [
      { type: "message", data: "", lastEventId: "" },
    ]);
  });

  test('id "" resets the last event id', () => {
    const parsed = run({ id: "1", data: "a" }, { id: "", data: "b" });
    assert.deepEqual(parsed.events.map((e) => e.lastEventId), ["1", ""]);
  });

  test("an event without data dispatches nothing and its type does not leak", () => {
    const parsed = run({ event: "x" }, { data: "a" });
    assert.deepEqual(parsed.events, [
      { type: "message", data: "a", lastEventId: "" },
    ]);
  });

  test("an id without data still sets the last event id", () => {
    const parsed = run({ id: "7" }, { data: "a" });
    assert.equal(parsed.events[0]!.lastEventId, "7");
    assert.equal(run({ id: "7" }).lastEventId, "7");
  });

  test("retry and comments need no blank line and do not split a block", () => {
    const parsed = run({ event: "e", id: "1" }, { retry: 5 }, { data: "x" });
    assert.deepEqual(parsed.events, [
      { type: "message", data: "x", lastEventId: "1" },
    ]);
    assert.deepEqual(parsed.retries, [5]);
  });
});

describe("ServerSentEventStream", () => {
  test("encodes each message to UTF-8 bytes", async () => {
    const messages: ServerSentEventMessage[] = [
      { retry: 100 },
      { id: "1", data: "é\r\nx" },
      {},
      { event: "end", data: "" },
    ];
    const body = ReadableStream.from(messages).pipeThrough(
      new ServerSentEventStream(),
    );
    const chunks = await Array.fromAsync(body);
    assert.ok(chunks.every((c) => c instanceof Uint8Array && c.length > 0));
    assert.equal(chunks.length, 3);
    assert.equal(
      await new Response(ReadableStream.from(chunks)).text(),
      "retry:100\nid:1\ndata:é\ndata:x\n\nevent:end\ndata:\n\n",
    );
  });

  test("errors the stream on an invalid message", async () => {
    const body = ReadableStream.from<ServerSentEventMessage>([
      { data: "ok" },
      { id: "x\ny", data: "injected" },
    ]).pipeThrough(new ServerSentEventStream());
    await assert.rejects(Array.fromAsync(body), TypeError);
  });
});

// ---------------------------------------------------------------------------
// EventEndpoint without a server (web Request/Response in memory)
// ---------------------------------------------------------------------------

const decoder = new TextDecoder();
const nextTick = () => new Promise((resolve) => setTimeout(resolve, 0));

function endpoint(
  options: EventEndpointOptions = {},
  init: RequestInit = {},
): EventEndpoint {
  return new EventEndpoint(new Request("http://127.0.0.1/events", init), {
    heartbeat: 0,
    ...options,
  });
}

async function readText(
  reader: ReadableStreamDefaultReader<Uint8Array>,
): Promise<string | null> {
  const { done, value } = await reader.read();
  return done ? null : decoder.decode(value);
}

function onClose(target: EventEndpoint): Promise<CloseEvent> {
  return new Promise((resolve) =>
    target.addEventListener("close", (e) => resolve(e), { once: true })
  );
}

describe("EventEndpoint (in memory)", () => {
  test("counts and sends exactly the UTF-8 bytes of mixed string and byte writes", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(hostile, hostile.map((s) => utf8.encode(s))), {
          maxLength: 8,
        }),
        async (parts) => {
          const e = endpoint();
          const reader = e.response!.body!.getReader();
          assert.equal(await readText(reader), ":\n");
          // The pull that tells the endpoint a chunk was read may come a
          // little after the read (on Deno).
          await nextTick();
          const expected = parts.map((p) =>
            typeof p === "string" ? utf8.encode(p) : p
          );
          const size = expected.reduce((n, b) => n + b.length, 0);
          const writes = parts.map((p) => e.write(p));
          assert.equal(e.bufferedAmount, size);
          if (size > 0) {
            const { value } = await reader.read();
            assert.deepEqual(value, new Uint8Array(Buffer.concat(expected)));
          }
          await Promise.all(writes);
          assert.equal(e.bufferedAmount, 0);
          await reader.cancel();
        },
      ),
      { numRuns: 300 },
    );
  });

  test("decodes a UTF-8 Last-Event-ID that arrives as Latin-1 bytes", () => {
    const latin1 = String.fromCharCode(...utf8.encode("é😀"));
    const e = endpoint({}, { headers: { "Last-Event-ID": latin1 } });
    assert.equal(e.lastEventId, "é😀");
    // Not valid UTF-8: left as it came.
    const raw = endpoint({}, { headers: { "Last-Event-ID": "\u00e9" } });
    assert.equal(raw.lastEventId, "é");
    e.close();
    raw.close();
  });

  test("works as a Hono handler's response", async () => {
    const app = new Hono();
    app.get("/events", (c) => {
      const e = new EventEndpoint(c.req.raw, { heartbeat: 0 });
      e.sendEvent("hello", c.req.header("last-event-id") ?? "none", "1");
      e.close();
      return e.response!;
    });
    const response = await app.request("/events", {
      headers: { "Last-Event-ID": "0" },
    });
    assert.deepEqual(await collect(new EventConsumer(response)), [
      { type: "hello", data: "0", lastEventId: "1" },
    ]);
  });

  test("node: a response already torn down closes the endpoint at once", async () => {
    const res = Object.assign(new EventEmitter(), {
      destroyed: true,
      writeHead: () => res,
      write: () => true,
      end: () => res,
      destroy: () => res,
    });
    const req = { headers: {}, httpVersionMajor: 1, httpVersionMinor: 1 };
    const e = new EventEndpoint(req, res, { heartbeat: 10 });
    const event = await onClose(e);
    assert.equal(event.wasClean, false);
    assert.equal(e.closed, true);
    assert.equal(res.listenerCount("close"), 0);
    assert.equal(await e.send("x"), false);
  });

  test("responds 200 with the event-stream headers and no hop-by-hop header", () => {
    const e = endpoint({ headers: { "Access-Control-Allow-Origin": "*" } });
    const r = e.response!;
    assert.equal(r.status, 200);
    assert.equal(
      r.headers.get("content-type"),
      "text/event-stream; charset=utf-8",
    );
    assert.equal(r.headers.get("cache-control"), "no-cache, no-transform");
    assert.equal(r.headers.get("x-accel-buffering"), "no");
    assert.equal(r.headers.get("access-control-allow-origin"), "*");
    assert.equal(r.headers.get("connection"), null);
    assert.equal(r.headers.get("transfer-encoding"), null);
    e.close();
    return r.body!.cancel();
  });

  test("sends reconnectionTime once at the start, then events, then ends", async () => {
    const e = endpoint({ reconnectionTime: 3000 });
    e.send("a");
    e.sendEvent("tick", "b\nc", "7");
    e.close();
    e.send("late");
    assert.equal(
      await e.response!.text(),
      "retry:3000\ndata:a\n\nevent:tick\nid:7\ndata:b\ndata:c\n\n",
    );
  });

  test("coalesces the writes of one tick into one chunk", async () => {
    const e = endpoint();
    const reader = e.response!.body!.getReader();
    assert.equal(await readText(reader), ":\n");
    e.send("a");
    e.sendEvent("x", "b");
    e.write(utf8.encode("data:c\n\n"));
    e.write("data:é\n\n");
    assert.equal(
      await readText(reader),
      "data:a\n\nevent:x\ndata:b\n\ndata:c\n\ndata:é\n\n",
    );
    e.send("next");
    assert.equal(await readText(reader), "data:next\n\n");
    await reader.cancel();
  });

  test("send() resolves true at once within highWaterMark, past it when the body drains", async () => {
    const e = endpoint({ highWaterMark: 12 });
    // ":\n" plus "data:é\n\n" (é is 2 bytes in UTF-8): within the mark,
    // although nobody has read the body yet.
    assert.equal(await e.send("é"), true);
    assert.equal(e.bufferedAmount, 2 + 9);
    assert.equal(e.ready, e.ready); // already resolved, the same promise
    let past = false;
    const sent = e.send("more").then((ok) => (past = ok));
    const ready = e.ready.then(() => "ready");
    await nextTick();
    assert.equal(past, false);
    assert.equal(e.bufferedAmount, 2 + 9 + 11);
    const reader = e.response!.body!.getReader();
    assert.equal(await readText(reader), ":\ndata:é\n\n");
    assert.equal(await readText(reader), "data:more\n\n");
    assert.equal(await sent, true);
    assert.equal(await ready, "ready");
    assert.equal(e.bufferedAmount, 0);
    await reader.cancel();
  });

  test("close() ends the stream cleanly and later writes resolve false", async () => {
    const e = endpoint();
    const closed = onClose(e);
    e.send("bye");
    assert.equal(e.signal.aborted, false);
    e.close();
    assert.equal(e.closed, true);
    assert.equal(e.signal.aborted, true);
    assert.equal(await e.send("x"), false);
    assert.equal(await e.write("data:x\n\n"), false);
    assert.equal(await e.response!.text(), ":\ndata:bye\n\n");
    const event = await closed;
    assert.equal(event.wasClean, true);
    e.close(); // idempotent
  });

  test("dispatchEvent(MessageEvent) sends it; other events dispatch normally", async () => {
    const e = endpoint();
    assert.equal(
      e.dispatchEvent(
        new MessageEvent("message", { data: "a", lastEventId: "1" }),
      ),
      true,
    );
    e.dispatchEvent(new MessageEvent("custom", { data: "b" }));
    e.dispatchEvent(
      new MessageEvent("custom", { data: "c", lastEventId: "2" }),
    );
    assert.throws(
      () => e.dispatchEvent(new MessageEvent("message", { data: 5 })),
      { name: "TypeError", message: /MessageEvent data: expected a string/ },
    );
    let seen = 0;
    e.addEventListener("other", () => seen++);
    e.dispatchEvent(new Event("other"));
    assert.equal(seen, 1);
    assert.equal(e.lastEventId, "2");
    e.close();
    assert.equal(
      await e.response!.text(),
      ":\nid:1\ndata:a\n\nevent:custom\ndata:b\n\nevent:custom\nid:2\ndata:c\n\n",
    );
  });

  test("lastEventId comes from Last-Event-ID and follows sent ids", async () => {
    const e = endpoint({}, { headers: { "Last-Event-ID": "41" } });
    assert.equal(e.lastEventId, "41");
    e.send("x", "42");
    assert.equal(e.lastEventId, "42");
    e.send("y", "");
    assert.equal(e.lastEventId, "");
    assert.throws(() => e.send("z", "bad\nid"), TypeError);
    assert.equal(e.lastEventId, "");
    e.close();
    assert.equal(
      await e.response!.text(),
      ":\nid:42\ndata:x\n\nid:\ndata:y\n\n",
    );
  });

  test("close(true) marks the last event id; that id gets a 204", async () => {
    const e = endpoint({}, { headers: { "Last-Event-ID": "6" } });
    e.send("x", "7");
    e.close(true);
    assert.equal(
      await e.response!.text(),
      ":\nid:7\ndata:x\n\nid:ssekit:closed:7\n\n",
    );

    const again = endpoint(
      { headers: { "Access-Control-Allow-Origin": "*" } },
      { headers: { "Last-Event-ID": "ssekit:closed:7" } },
    );
    // `close` fires for it too (in a microtask), so cleanup on `close` runs.
    const closedAgain = onClose(again);
    assert.equal(again.response!.status, 204);
    assert.equal(again.response!.body, null);
    assert.equal(
      again.response!.headers.get("access-control-allow-origin"),
      "*",
    );
    assert.equal(again.closed, true);
    assert.equal(again.lastEventId, "7");
    assert.equal(await again.send("x"), false);
    assert.equal(again.signal.aborted, true);
    const event = await closedAgain;
    assert.equal(event.wasClean, true);
    assert.match(event.reason, /204/);
  });

  test("rejects invalid options with errors that name them", () => {
    const make = (options: EventEndpointOptions) => () => endpoint(options);
    assert.throws(make({ reconnectionTime: -1 }), {
      name: "RangeError",
      message: /reconnectionTime -1/,
    });
    assert.throws(make({ reconnectionTime: 0.5 }), RangeError);
    assert.equal(endpoint({ highWaterMark: 10 }).highWaterMark, 10);
    assert.equal(endpoint().highWaterMark, 1024 * 1024);
    assert.throws(make({ heartbeat: -5 }), {
      name: "RangeError",
      message: /heartbeat/,
    });
    assert.throws(make({ highWaterMark: NaN }), {
      name: "RangeError",
      message: /highWaterMark/,
    });
    assert.throws(
      make({ overflow: "block" as "wait" }),
      {
        name: "TypeError",
        message: /overflow "block": expected "wait", "drop" or "close"/,
      },
    );
  });

  test("write() throws for what is not a string or bytes", async () => {
    const e = endpoint();
    assert.throws(() => e.write(5 as unknown as string), {
      name: "TypeError",
      message: /encoded: expected a string or Uint8Array, got 5/,
    });
    e.close();
    assert.equal(await e.response!.text(), ":\n");
  });

  test('"drop" discards whole messages past highWaterMark', async () => {
    const e = endpoint({ highWaterMark: 100, overflow: "drop" });
    const results: Promise<boolean>[] = [];
    for (let i = 0; i < 10; i++) {
      // 48 bytes each
      results.push(e.send("x".repeat(40)));
      assert.ok(e.bufferedAmount <= 100, `${e.bufferedAmount} > 100`);
    }
    assert.equal(e.droppedCount, 8);
    // A dropped message's id never reached the client.
    assert.equal(await e.send("y", "dropped"), false);
    assert.equal(e.droppedCount, 9);
    assert.equal(e.lastEventId, "");
    e.close();
    const text = await e.response!.text();
    assert.equal(text, ":\n" + `data:${"x".repeat(40)}\n\n`.repeat(2));
    assert.deepEqual(await Promise.all(results), [
      true,
      true,
      ...Array(8).fill(false),
    ]);
  });

  test('"close" aborts a slow client and releases its buffer', async () => {
    const e = endpoint({ highWaterMark: 100, overflow: "close" });
    const closed = onClose(e);
    assert.equal(await e.send("x".repeat(40)), true);
    assert.equal(await e.send("y".repeat(40)), true);
    assert.equal(await e.send("z".repeat(40)), false);
    const event = await closed;
    assert.equal(event.wasClean, false);
    assert.match(event.reason, /too slow/);
    assert.equal(e.closed, true);
    assert.equal(e.bufferedAmount, 0);
    assert.equal(e.signal.aborted, true);
    await assert.rejects(e.response!.text());
  });

  test('"wait" queues past highWaterMark and resolves as the client reads', async () => {
    const e = endpoint({ highWaterMark: 10 });
    const sends = [e.send("a".repeat(20)), e.send("b".repeat(20))];
    assert.equal(e.bufferedAmount, 2 + 2 * 27);
    e.close();
    const text = await e.response!.text();
    assert.equal(text.length, 2 + 2 * 27);
    assert.deepEqual(await Promise.all(sends), [true, true]);
  });

  test("a cancelled body is a disconnect: close event, signal, false, no heartbeat", async () => {
    const e = endpoint({ heartbeat: 10, highWaterMark: 0 });
    const closed = onClose(e);
    const reader = e.response!.body!.getReader();
    assert.equal(await readText(reader), ":\n");
    const pending = e.send("never read"); // past the mark: waits
    const ready = e.ready;
    await nextTick();
    await reader.cancel();
    assert.equal(await pending, false);
    await ready;
    const event = await closed;
    assert.equal(event.wasClean, false);
    assert.match(event.reason, /client disconnected/);
    assert.equal(e.closed, true);
    assert.equal(e.signal.aborted, true);
    assert.equal(await e.send("x"), false);
  });

  test("a message sent to many endpoints in one tick reaches each exactly", async () => {
    const endpoints = [endpoint(), endpoint(), endpoint()];
    const readers = endpoints.map((e) => e.response!.body!.getReader());
    for (const reader of readers) assert.equal(await readText(reader), ":\n");
    for (const e of endpoints) {
      e.send("same", "1");
      e.sendEvent("tick", "same", "1"); // same data and id, another event
      e.send("same", "2"); // same data, another id
      e.send("é\r\nnext");
    }
    assert.throws(() => endpoints[0]!.send("x", "bad\nid"), TypeError);
    assert.throws(() => endpoints[1]!.send("x", "bad\nid"), TypeError);
    const expected = "id:1\ndata:same\n\n" + "event:tick\nid:1\ndata:same\n\n" +
      "id:2\ndata:same\n\n" + "data:é\ndata:next\n\n";
    for (const [i, reader] of readers.entries()) {
      assert.equal(await readText(reader), expected);
      assert.equal(endpoints[i]!.lastEventId, "2");
      await reader.cancel();
    }
  });

  test("sends left un-awaited when the client goes away are no unhandled rejections", async () => {
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", record);
    try {
      const e = endpoint();
      const reader = e.response!.body!.getReader();
      assert.equal(await readText(reader), ":\n");
      // Fire and forget, as a timer or a broadcast loop does: one pending
      // when the client leaves, one after.
      e.send("pending when the client leaves");
      await nextTick();
      await reader.cancel();
      e.send("after the client left");
      e.write("after the client left\n\n");
      for (let i = 0; i < 5; i++) await nextTick();
      assert.deepEqual(unhandled, []);
      // Awaiting tells the caller, without throwing into its loop.
      assert.equal(await e.send("x"), false);
      // An invalid message is a bug in the caller: it throws.
      assert.throws(() => e.send("x", "a\nb"), TypeError);
    } finally {
      process.off("unhandledRejection", record);
    }
  });

  test("an aborted request.signal is a disconnect", {
    skip: runtime === "deno"
      ? "not watched on Deno (Deno.serve warns when it is read)"
      : runtime === "bun"
      ? "not watched on Bun (it costs about 0.8 KiB per connection; Bun.serve cancels the body)"
      : undefined,
  }, async () => {
    const controller = new AbortController();
    const e = endpoint({ heartbeat: 10 }, { signal: controller.signal });
    const closed = onClose(e);
    const reader = e.response!.body!.getReader();
    assert.equal(await readText(reader), ":\n");
    controller.abort();
    assert.equal((await closed).wasClean, false);
    await assert.rejects(reader.read());
  });

  test("sends a heartbeat comment after the heartbeat interval without writes", async () => {
    // The heartbeat timer is unref'd (it must not keep a process alive), and
    // nothing else here would keep the event loop running.
    const keepAlive = setInterval(() => {}, 1000);
    try {
      const e = endpoint({ heartbeat: 20 });
      const reader = e.response!.body!.getReader();
      assert.equal(await readText(reader), ":\n");
      assert.equal(await readText(reader), ":\n");
      e.send("x");
      assert.equal(await readText(reader), "data:x\n\n");
      assert.equal(await readText(reader), ":\n");
      e.close();
      assert.equal(await readText(reader), null);
    } finally {
      clearInterval(keepAlive);
    }
  });

  test("endpoints with one heartbeat interval share one timer, gone with the last", async () => {
    const timers = watchIntervals();
    try {
      const endpoints = Array.from(
        { length: 50 },
        () => endpoint({ heartbeat: 60_000 }),
      );
      // A response nobody reads holds no timer.
      await nextTick();
      assert.equal(timers.live(), 0);
      const readers = endpoints.map((e) => e.response!.body!.getReader());
      for (const reader of readers) {
        assert.equal(await readText(reader), ":\n");
      }
      // The first chunk was read; the next pull starts the heartbeat.
      await nextTick();
      assert.equal(timers.live(), 1);
      assert.equal(timers.created(), 1);
      for (const e of endpoints.slice(1)) e.close();
      assert.equal(timers.live(), 1);
      endpoints[0]!.close();
      assert.equal(timers.live(), 0);
      for (const reader of readers) await reader.cancel();
    } finally {
      timers.restore();
    }
  });
});

// ---------------------------------------------------------------------------
// EventEndpoint on real servers
// ---------------------------------------------------------------------------

interface Scenario {
  options?: EventEndpointOptions;
  run(endpoint: EventEndpoint): void;
}

/** Scenarios by request path; every server kind serves all of them. */
const scenarios = new Map<string, Scenario>();
/** The endpoints created per path, newest last. */
const endpoints = new Map<string, EventEndpoint[]>();

function created(path: string, endpoint: EventEndpoint): void {
  const list = endpoints.get(path) ?? [];
  list.push(endpoint);
  endpoints.set(path, list);
}

const web: WebHandler = (request) => {
  const path = new URL(request.url).pathname;
  const scenario = scenarios.get(path);
  if (!scenario) return new Response("no such scenario", { status: 404 });
  const e = new EventEndpoint(request, scenario.options);
  created(path, e);
  if (!e.closed) scenario.run(e);
  return e.response!;
};

const node: NodeHandler = (req, res) => {
  const path = req.url ?? "/";
  const scenario = scenarios.get(path);
  if (!scenario) {
    res.statusCode = 404;
    res.end();
    return;
  }
  const e = new EventEndpoint(req, res, scenario.options);
  created(path, e);
  if (!e.closed) scenario.run(e);
};

function only(path: string): EventEndpoint {
  const list = endpoints.get(path) ?? [];
  assert.equal(list.length, 1, `endpoints for ${path}`);
  return list[0]!;
}

const PIECE = "x".repeat(64 * 1024 - 8); // "data:" + piece + "\n\n" = 64 KiB - 1

scenarios.set("/basic", {
  options: {
    reconnectionTime: 1500,
    headers: { "Access-Control-Allow-Origin": "*" },
  },
  run(e) {
    e.send("last:" + e.lastEventId, "1");
    e.sendEvent("custom", "b\r\nc", "2");
    e.dispatchEvent(
      new MessageEvent("message", { data: " d", lastEventId: "3" }),
    );
    e.dispatchEvent(new MessageEvent("ping", { data: "" }));
    e.close();
  },
});

scenarios.set("/stop", {
  options: { headers: { "Access-Control-Allow-Origin": "*" } },
  run(e) {
    e.send("only once", "42").then(() => e.close(true));
  },
});

scenarios.set("/echo", {
  options: { heartbeat: 0 },
  run(e) {
    e.send(e.lastEventId);
    e.close();
  },
});

scenarios.set("/hold", {
  options: { heartbeat: 20 },
  run(e) {
    e.send("ready");
  },
});

/** Awaits every send: the producer a reader that stops reading must stall. */
const flood = {
  sent: 0,
  maxBuffered: 0,
  rejected: 0,
  total: 100 * MiB,
  /** Resolved by the test once the client has read the first event. */
  go: Promise.resolve(),
};
scenarios.set("/flood-wait", {
  options: { heartbeat: 0 },
  async run(e) {
    while (flood.sent < flood.total) {
      const sending = e.send(PIECE);
      flood.maxBuffered = Math.max(flood.maxBuffered, e.bufferedAmount);
      if (!await sending) {
        flood.rejected++;
        break;
      }
      flood.sent += PIECE.length + 8;
    }
  },
});

/** Does not await: only the overflow policy bounds memory. */
for (const policy of ["drop", "close"] as const) {
  scenarios.set(`/flood-${policy}`, {
    options: { heartbeat: 0, highWaterMark: 256 * 1024, overflow: policy },
    async run(e) {
      // Headers and a first event reach the client before the flood.
      await e.send("hello");
      await flood.go;
      for (let i = 0; flood.sent < flood.total && !e.closed; i++) {
        e.send(PIECE).then((ok) => ok || flood.rejected++);
        flood.sent += PIECE.length + 8;
        flood.maxBuffered = Math.max(flood.maxBuffered, e.bufferedAmount);
        // Let the runtime take bytes now and then, as a real producer would.
        if (i % 16 === 15) await nextTick();
      }
    },
  });
}

/** Counts the intervals set (and not yet cleared) until `restore()`. */
function watchIntervals(): {
  live(): number;
  created(): number;
  restore(): void;
} {
  const { setInterval: set, clearInterval: clear } = globalThis;
  const live = new Set<unknown>();
  let created = 0;
  globalThis.setInterval = ((...args: Parameters<typeof set>) => {
    const timer = set(...args);
    live.add(timer);
    created++;
    return timer;
  }) as typeof set;
  globalThis.clearInterval = ((timer: Parameters<typeof clear>[0]) => {
    live.delete(timer);
    clear(timer);
  }) as typeof clear;
  return {
    live: () => live.size,
    created: () => created,
    restore() {
      globalThis.setInterval = set;
      globalThis.clearInterval = clear;
    },
  };
}

function activeTimeouts(): number {
  const info = (process as { getActiveResourcesInfo?: () => string[] })
    .getActiveResourcesInfo?.();
  return info ? info.filter((name) => name === "Timeout").length : 0;
}

async function collect(consumer: EventConsumer): Promise<ServerSentEvent[]> {
  const events: ServerSentEvent[] = [];
  for await (const e of consumer) {
    events.push({ type: e.type, data: e.data, lastEventId: e.lastEventId });
  }
  return events;
}

/** The response head for a raw HTTP/1.x request. */
function rawHead(
  origin: string,
  path: string,
  version: string,
): Promise<string> {
  const url = new URL(origin);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(`GET ${path} HTTP/${version}\r\nHost: ${url.host}\r\n\r\n`);
    });
    let text = "";
    socket.on("error", reject);
    socket.on("data", (chunk) => {
      text += chunk;
      const end = text.indexOf("\r\n\r\n");
      if (end !== -1) {
        socket.destroy();
        resolve(text.slice(0, end));
      }
    });
    socket.on("close", () => resolve(text));
  });
}

for (const kind of serverKinds) {
  describe(`EventEndpoint on ${kind.name}`, { skip: kind.skip }, () => {
    let server: TestServer;
    before(async () => {
      endpoints.clear();
      server = await kind.start({ web, node });
    });
    after(() => server?.close());

    test("events, ids, custom types, retry, Last-Event-ID and headers", async () => {
      const response = await server.fetch("/basic", {
        headers: { "last-event-id": "0" },
      });
      assert.equal(response.status, 200);
      assert.equal(
        response.headers.get("content-type"),
        "text/event-stream; charset=utf-8",
      );
      assert.equal(
        response.headers.get("cache-control"),
        "no-cache, no-transform",
      );
      assert.equal(response.headers.get("x-accel-buffering"), "no");
      assert.equal(response.headers.get("access-control-allow-origin"), "*");
      if (server.http2) assert.equal(response.headers.get("connection"), null);
      const consumer = new EventConsumer(response);
      const events = await collect(consumer);
      assert.deepEqual(events, [
        { type: "message", data: "last:0", lastEventId: "1" },
        { type: "custom", data: "b\nc", lastEventId: "2" },
        { type: "message", data: " d", lastEventId: "3" },
        { type: "ping", data: "", lastEventId: "3" },
      ]);
      assert.equal(consumer.retry, 1500);
      const e = only("/basic");
      assert.equal(e.lastEventId, "3");
      await waitFor(() => e.closed, "the endpoint to close");
    });

    test("Connection: keep-alive on HTTP/1.1 only (raw socket)", {
      skip: kind.name.startsWith("node:http2") ? "HTTP/2 only" : undefined,
    }, async () => {
      const h11 = await rawHead(server.origin, "/basic", "1.1");
      const h10 = await rawHead(server.origin, "/basic", "1.0");
      assert.match(h11, /^HTTP\/1\.1 200/);
      assert.match(h11, /^content-type: text\/event-stream; charset=utf-8$/im);
      if (kind.name === "node:http") {
        assert.match(h11, /^connection: keep-alive$/im);
        assert.doesNotMatch(h10, /^connection: keep-alive$/im);
      } else {
        // Web responses carry none: a Request does not tell its HTTP version.
        assert.doesNotMatch(h11, /^connection:/im);
      }
    });

    test("a non-ASCII Last-Event-ID (sent UTF-8 encoded) arrives intact", async () => {
      const latin1 = String.fromCharCode(...utf8.encode("é😀 ✓"));
      const response = await server.fetch("/echo", {
        headers: { "last-event-id": latin1 },
      });
      const events = await collect(new EventConsumer(response));
      assert.deepEqual(events.map((e) => e.data), ["é😀 ✓"]);
    });

    test("close(true): the reconnecting client gets 204 No Content", async () => {
      const first = new EventConsumer(await server.fetch("/stop"));
      const events = await collect(first);
      assert.deepEqual(events, [{
        type: "message",
        data: "only once",
        lastEventId: "42",
      }]);
      assert.equal(first.lastEventId, "ssekit:closed:42");
      const again = await server.fetch("/stop", {
        headers: { "last-event-id": first.lastEventId },
      });
      assert.equal(again.status, 204);
      assert.equal(again.headers.get("access-control-allow-origin"), "*");
      await again.body?.cancel();
      const [, second] = endpoints.get("/stop")!;
      assert.equal(second!.closed, true);
      assert.equal(second!.lastEventId, "42");
    });

    test("a client that goes away: close event, sends false, heartbeat cleared", async () => {
      const timeoutsBefore = activeTimeouts();
      const controller = new AbortController();
      const response = await server.fetch("/hold", {
        signal: controller.signal,
      });
      const consumer = new EventConsumer(response);
      const e = only("/hold");
      const closed = onClose(e);
      for await (const event of consumer) {
        assert.equal(event.data, "ready");
        break;
      }
      controller.abort();
      consumer.close();
      const event = await closed;
      assert.equal(event.wasClean, false);
      assert.equal(e.closed, true);
      assert.equal(e.signal.aborted, true);
      assert.equal(await e.send("late"), false);
      if (runtime === "node") assert.ok(activeTimeouts() <= timeoutsBefore);
    });

    test("a reader that stops reading while the server sends 100 MiB: the producer stalls", async () => {
      Object.assign(flood, { sent: 0, maxBuffered: 0, rejected: 0 });
      const rss = process.memoryUsage().rss;
      const response = await server.fetch("/flood-wait");
      const reader = response.body!.getReader();
      await reader.read();
      await stalled();
      const e = only("/flood-wait");
      assert.ok(flood.sent < flood.total / 2, `sent ${flood.sent} bytes`);
      // Within the mark, plus the one write that went past it.
      const bound = 1 * MiB + PIECE.length + 8;
      assert.ok(flood.maxBuffered <= bound, `buffered ${flood.maxBuffered}`);
      assert.ok(e.bufferedAmount <= bound, `buffered ${e.bufferedAmount}`);
      const grown = process.memoryUsage().rss - rss;
      assert.ok(grown < 80 * MiB, `rss grew by ${grown} bytes`);
      const closed = onClose(e);
      await reader.cancel();
      assert.equal((await closed).wasClean, false);
      await waitFor(() => flood.rejected === 1, "the stalled send to settle");
    });

    test('overflow "drop": buffered bytes never pass highWaterMark', async () => {
      Object.assign(flood, { sent: 0, maxBuffered: 0, rejected: 0 });
      const response = await server.fetch("/flood-drop");
      const reader = response.body!.getReader();
      await reader.read();
      await waitFor(() => flood.sent >= flood.total, "the producer to finish");
      const e = only("/flood-drop");
      // On node, bufferedAmount includes res.writableLength, which counts
      // HTTP/1.1 chunk framing: a few bytes per chunk past the mark.
      assert.ok(
        flood.maxBuffered <= 256 * 1024 + 1024,
        `buffered ${flood.maxBuffered}`,
      );
      assert.ok(e.droppedCount > 0, "some messages were dropped");
      assert.equal(e.closed, false);
      const closed = onClose(e);
      await reader.cancel();
      assert.equal((await closed).wasClean, false);
    });

    test('overflow "close": the slow client is disconnected', async () => {
      let go!: () => void;
      const ready = new Promise<void>((resolve) => (go = resolve));
      Object.assign(flood, { sent: 0, maxBuffered: 0, rejected: 0, go: ready });
      const response = await server.fetch("/flood-close");
      const reader = response.body!.getReader();
      await reader.read();
      go();
      const e = only("/flood-close");
      const event = e.closed ? null : await onClose(e);
      assert.equal(e.closed, true);
      if (event) assert.equal(event.wasClean, false);
      // On node, bufferedAmount includes res.writableLength, which counts
      // HTTP/1.1 chunk framing: a few bytes per chunk past the mark.
      assert.ok(
        flood.maxBuffered <= 256 * 1024 + 1024,
        `buffered ${flood.maxBuffered}`,
      );
      assert.ok(flood.sent < flood.total, `sent ${flood.sent}`);
      await waitFor(() => flood.rejected > 0, "writes to reject");
      await reader.cancel().catch(() => {});
    });
  });
}

/** Waits until `flood.sent` has not changed for 50 polls (the producer stalled). */
async function stalled(): Promise<void> {
  let last = -1;
  let same = 0;
  await waitFor(
    () => {
      same = flood.sent === last ? same + 1 : 0;
      last = flood.sent;
      return same >= 50 || flood.sent >= flood.total;
    },
    "the producer to stall",
    3000,
  );
}

describe("EventEndpoint on Bun.serve with the default idleTimeout (10 s)", {
  skip: runtime === "bun" ? undefined : "Bun only",
}, () => {
  let server: TestServer;
  before(async () => {
    scenarios.set("/quiet", {
      async run(e) {
        await e.send("first");
        const timer = setTimeout(() => e.send("second"), 25_000);
        e.addEventListener("close", () => clearTimeout(timer));
      },
    });
    server = await serverKinds[0]!.start({ web, node });
  });
  after(() => server?.close());

  test(
    "a stream quiet for 25 s stays open (heartbeats) and delivers the next event",
    {
      timeout: 40_000,
    },
    async () => {
      const response = await server.fetch("/quiet");
      const events: string[] = [];
      let comments = 0;
      const parser = new ServerSentEventParser({
        onEvent: (e) => events.push(e.data),
        onComment: () => comments++,
      });
      const reader = response.body!.getReader();
      while (events.length < 2) {
        const { done, value } = await reader.read();
        assert.equal(done, false, "the stream ended early");
        parser.push(value!);
      }
      assert.deepEqual(events, ["first", "second"]);
      // 25 s at the 5 s default: at least 4 heartbeats, plus the opening ":".
      assert.ok(comments >= 5, `${comments} comments`);
      await reader.cancel();
    },
  );
});

// ---------------------------------------------------------------------------
// Lifecycle: a client leaving is normal (issue 13), on every server kind
// ---------------------------------------------------------------------------

/** What the handlers of this section did. */
const life = {
  made: new Map<string, EventEndpoint[]>(),
  loopsEnded: 0,
  upstreamStopped: 0,
  stallSent: 0,
  channel: new EventChannel({ overflow: "close", highWaterMark: 64 * 1024 }),
};

/** A model streaming tokens until the signal it was given aborts. */
async function* model(signal: AbortSignal): AsyncGenerator<string> {
  try {
    for (let i = 0; !signal.aborted; i++) {
      yield `token ${i}`;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  } finally {
    life.upstreamStopped++;
  }
}

/** The documented LLM pattern, verbatim. */
async function streamTokens(endpoint: EventEndpoint): Promise<void> {
  for await (const token of model(endpoint.signal)) {
    if (!await endpoint.send(token)) break;
  }
  endpoint.close();
  life.loopsEnded++;
}

const H2_FORBIDDEN: [string, string][] = [
  ["connection", "keep-alive"],
  ["keep-alive", "timeout=5"],
  ["proxy-connection", "keep-alive"],
  ["transfer-encoding", "chunked"],
  ["upgrade", "websocket"],
  ["te", "gzip"],
  ["http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"],
];

function lifeOptions(path: string): EventEndpointOptions {
  const options: EventEndpointOptions = { heartbeat: 0 };
  if (path === "/stall") options.highWaterMark = 64 * 1024;
  if (path === "/cookies") {
    options.headers = [["set-cookie", "a=1"], ["set-cookie", "b=2"], [
      "connection",
      "close",
    ]];
  }
  if (path === "/h2-headers") {
    options.headers = [
      ["set-cookie", "a=1"],
      ["set-cookie", "b=2"],
      ...H2_FORBIDDEN,
    ];
  }
  if (path === "/channel") options.highWaterMark = 64 * 1024;
  return options;
}

/** Runs the scenario of `path`; web handlers await it before responding. */
async function lifeScenario(path: string, e: EventEndpoint): Promise<void> {
  const list = life.made.get(path) ?? [];
  list.push(e);
  life.made.set(path, list);
  if (path === "/llm") {
    void streamTokens(e);
  } else if (path === "/await-first") {
    // Awaited before the web handler returns the response.
    assert.equal(await e.send("first"), true);
    assert.equal(await e.sendEvent("second", "2", "2"), true);
    e.close();
  } else if (path === "/stall") {
    void (async () => {
      while (await e.send(PIECE)) life.stallSent++;
      life.loopsEnded++;
    })();
  } else if (path === "/channel") {
    await e.send("joined");
    life.channel.join(e);
  } else {
    e.send("ok");
    e.close();
  }
}

const lifeWeb: WebHandler = async (request) => {
  const path = new URL(request.url).pathname;
  const e = new EventEndpoint(request, lifeOptions(path));
  await lifeScenario(path, e);
  return e.response!;
};

const lifeNode: NodeHandler = (req, res) => {
  const path = req.url ?? "/";
  const e = new EventEndpoint(req, res, lifeOptions(path));
  void lifeScenario(path, e);
};

function lastMade(path: string): EventEndpoint {
  const list = life.made.get(path) ?? [];
  assert.ok(list.length > 0, `an endpoint for ${path}`);
  return list.at(-1)!;
}

/** `server.fetch(path)`, failing instead of hanging when no response comes in 20 s. */
async function fetchOrFail(
  server: TestServer,
  path: string,
): Promise<Response> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 20_000);
  try {
    return await server.fetch(path, { signal: controller.signal });
  } catch (error) {
    throw controller.signal.aborted
      ? new Error(`no response for ${path} in 20 s (the handler hangs)`)
      : error;
  } finally {
    clearTimeout(timer);
  }
}

/** Reads events until `count`, or to the end; at most 20 s. */
async function firstEvents(
  response: Response,
  count: number,
): Promise<ServerSentEvent[]> {
  const events: ServerSentEvent[] = [];
  const consumer = new EventConsumer(response);
  const deadline = setTimeout(() => consumer.close(), 20_000);
  try {
    for await (const e of consumer) {
      events.push({ type: e.type, data: e.data, lastEventId: e.lastEventId });
      if (events.length === count) break; // leaving the loop cancels the body
    }
  } finally {
    clearTimeout(deadline);
  }
  return events;
}

for (const kind of allServerKinds) {
  describe(`EventEndpoint lifecycle on ${kind.name}`, {
    skip: kind.skip,
  }, () => {
    let server: TestServer;
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    before(async () => {
      process.on("unhandledRejection", record);
      server = await kind.start({ web: lifeWeb, node: lifeNode });
    });
    after(async () => {
      process.off("unhandledRejection", record);
      await server?.close();
    });

    /** The server still serves a new stream to its end. */
    async function stillServing(): Promise<void> {
      const events = await firstEvents(
        await fetchOrFail(server, "/await-first"),
        3,
      );
      assert.deepEqual(events.map((e) => e.data), ["first", "2"]);
    }

    test("the LLM pattern: a client that leaves after 3 events ends the loop and the upstream", async () => {
      const ended = life.loopsEnded;
      const stopped = life.upstreamStopped;
      const events = await firstEvents(await fetchOrFail(server, "/llm"), 3);
      assert.deepEqual(events.map((e) => e.data), [
        "token 0",
        "token 1",
        "token 2",
      ]);
      const e = lastMade("/llm");
      await waitFor(() => life.loopsEnded === ended + 1, "the loop to end");
      await waitFor(
        () => life.upstreamStopped === stopped + 1,
        "the upstream to stop",
      );
      assert.equal(e.closed, true);
      assert.equal(e.signal.aborted, true);
      assert.equal(e.bufferedAmount, 0);
      assert.deepEqual(unhandled, []);
      await stillServing();
    });

    test("await send() before the response is returned does not hang", async () => {
      await stillServing();
      assert.deepEqual(unhandled, []);
    });

    test("abort() disconnects a stalled client: close fires once, the buffer is released", async () => {
      const ended = life.loopsEnded;
      const response = await fetchOrFail(server, "/stall");
      const reader = response.body!.getReader();
      await reader.read(); // then it stops reading
      const e = lastMade("/stall");
      let closes = 0;
      let clean: boolean | undefined;
      e.addEventListener("close", (event) => {
        closes++;
        clean = event.wasClean;
      });
      // Stalled: no send settled for 50 polls, and the buffer is past the mark.
      let last = -1;
      let same = 0;
      await waitFor(() => {
        same = life.stallSent === last ? same + 1 : 0;
        last = life.stallSent;
        return same >= 50 && e.bufferedAmount > e.highWaterMark;
      }, "the producer to stall past highWaterMark");
      let ready = false;
      e.ready.then(() => (ready = true));
      await nextTick();
      assert.equal(ready, false);
      e.abort(new Error("stalled"));
      assert.equal(closes, 1);
      assert.equal(clean, false);
      assert.equal(e.bufferedAmount, 0);
      assert.equal(e.signal.aborted, true);
      e.abort();
      e.close();
      await waitFor(() => life.loopsEnded === ended + 1, "the loop to end");
      await nextTick();
      assert.equal(ready, true);
      assert.equal(closes, 1);
      // The client learns: its stream ends or errors.
      for (;;) {
        const result = await reader.read().catch(() => ({ done: true }));
        if (result.done) break;
      }
      await stillServing();
    });

    test('a channel\'s "close" overflow disconnects a client that stopped reading', async () => {
      const dropped = life.channel.stats().membersDropped;
      const response = await fetchOrFail(server, "/channel");
      const reader = response.body!.getReader();
      await reader.read(); // then it stops reading
      const e = lastMade("/channel");
      let closeEvent: CloseEvent | undefined;
      e.addEventListener("close", (event) => (closeEvent = event));
      for (
        let i = 0;
        life.channel.stats().membersDropped === dropped && i < 10_000;
        i++
      ) {
        life.channel.publish({ data: PIECE });
        await nextTick();
      }
      assert.equal(life.channel.stats().membersDropped, dropped + 1);
      await waitFor(() => closeEvent !== undefined, "the close event");
      assert.equal(closeEvent!.wasClean, false);
      assert.equal(e.closed, true);
      assert.equal(e.bufferedAmount, 0);
      assert.equal(life.channel.size, 0);
      await reader.cancel().catch(() => {});
      await stillServing();
    });

    test("headers: repeated Set-Cookie kept; HTTP/2 forbidden ones left out; the app's own Connection kept", async () => {
      const path = server.http2 ? "/h2-headers" : "/cookies";
      const response = await fetchOrFail(server, path);
      assert.equal(response.status, 200);
      assert.deepEqual(response.headers.getSetCookie(), ["a=1", "b=2"]);
      if (server.http2) {
        for (const [name] of H2_FORBIDDEN) {
          assert.equal(response.headers.get(name), null, name);
        }
      }
      const events = await firstEvents(response, 1);
      assert.deepEqual(events.map((e) => e.data), ["ok"]);
      if (kind.name === "node:http") {
        const head = await rawHead(server.origin, "/cookies", "1.1");
        assert.match(head, /^connection: close$/im);
        assert.doesNotMatch(head, /keep-alive/i);
        assert.equal(head.match(/^set-cookie:/gim)?.length, 2);
      }
      assert.deepEqual(unhandled, []);
    });
  });
}

describe("EventEndpoint.drained(bytes)", () => {
  /** Whether `promise` has settled after the pending microtasks ran. */
  async function settled(promise: Promise<unknown>): Promise<boolean> {
    let done = false;
    promise.then(() => (done = true));
    await nextTick();
    return done;
  }

  test("web: resolves once the runtime has taken bytes down to the threshold", async () => {
    const e = endpoint();
    assert.equal(await e.send("é"), true); // ":\n" + "data:é\n\n": 11 bytes
    assert.equal(await e.send("more"), true); // 11 more, queued behind it
    assert.equal(e.bufferedAmount, 22);
    assert.equal(await settled(e.drained(22)), true); // already there
    const eleven = e.drained(11);
    const zero = e.drained();
    assert.equal(e.drained(11), eleven); // one waiter per threshold
    assert.equal(await settled(eleven), false);
    assert.equal(await settled(zero), false);
    const reader = e.response!.body!.getReader();
    assert.equal(await readText(reader), ":\ndata:é\n\n");
    assert.equal(await settled(eleven), true);
    assert.equal(e.bufferedAmount, 11);
    assert.equal(await settled(zero), false);
    assert.equal(e.drained(0), zero);
    assert.equal(await readText(reader), "data:more\n\n");
    assert.equal(await settled(zero), true);
    assert.equal(e.bufferedAmount, 0);
    // The resolved waiter is gone: a new wait gets a new promise.
    assert.equal(await e.send("again"), true);
    const again = e.drained(0);
    assert.notEqual(again, zero);
    assert.equal(await settled(again), false);
    assert.equal(await readText(reader), "data:again\n\n");
    assert.equal(await settled(again), true);
    await reader.cancel();
  });

  test("node: resolves on drain, when res.writableLength is down to the threshold", async () => {
    const res = Object.assign(new EventEmitter(), {
      destroyed: false,
      writableLength: 0,
      writeHead: () => res,
      write: (bytes: Uint8Array) => {
        res.writableLength += bytes.byteLength;
        return false; // the socket is full: wait for drain
      },
      end: () => res,
      destroy: () => res,
    });
    const req = { headers: {}, httpVersionMajor: 1, httpVersionMinor: 1 };
    const e = new EventEndpoint(req, res, { heartbeat: 0 });
    await nextTick();
    assert.equal(e.bufferedAmount, 2); // ":\n", waiting for drain
    const zero = e.drained(0);
    assert.equal(await settled(zero), false);
    res.writableLength = 0;
    res.emit("drain");
    assert.equal(await settled(zero), true);
    e.abort();
  });

  test("resolves when the endpoint is aborted, closes or the client leaves", async () => {
    const aborted = endpoint();
    await aborted.send("x");
    const onAbort = aborted.drained(0);
    aborted.abort();
    assert.equal(await settled(onAbort), true);

    const left = endpoint();
    await left.send("x");
    const onLeave = left.drained(0);
    const reader = left.response!.body!.getReader();
    await reader.cancel();
    assert.equal(left.closed, true);
    assert.equal(await settled(onLeave), true);

    const closing = endpoint();
    await closing.send("x");
    const onClosed = closing.drained(0);
    closing.close();
    assert.equal(await settled(onClosed), false); // the client reads nothing
    closing.abort();
    assert.equal(await settled(onClosed), true);
    // Closed: bufferedAmount is 0, so every threshold is reached at once.
    assert.equal(await settled(closing.drained(0)), true);
  });

  test("rejects a threshold that is not a finite number >= 0", () => {
    const e = endpoint();
    for (const bad of [-1, Number.NaN, Infinity, "1"]) {
      assert.throws(
        () => e.drained(bad as number),
        (error) =>
          error instanceof RangeError && /^Invalid bytes /.test(error.message),
      );
    }
    e.abort();
  });
});

describe("EventEndpoint: bad input throws at once, before anything is queued", () => {
  test("send, sendEvent, write and dispatchEvent throw a TypeError naming the field", async () => {
    const e = endpoint();
    const cases: [() => unknown, RegExp][] = [
      [
        () => e.send(undefined as unknown as string),
        /data: expected a string, got undefined/,
      ],
      [() => e.send(5 as unknown as string), /data: expected a string, got 5/],
      [
        () => e.sendEvent("ev", undefined as unknown as string),
        /data: expected a string, got undefined/,
      ],
      [
        () => e.sendEvent(undefined as unknown as string, "x"),
        /event: expected a string, got undefined/,
      ],
      [
        () => e.sendEvent("a\nb", "x"),
        /event "a\\nb": expected a string without CR or LF/,
      ],
      [
        () => e.send("x", "bad\nid"),
        /id "bad\\nid": expected a string without CR or LF/,
      ],
      [
        () => e.send("x", "a\0b"),
        /id "a\\u0000b": expected a string without NUL/,
      ],
      [
        () => e.send("x", 7 as unknown as string),
        /id: expected a string, got 7/,
      ],
      [
        () => e.write(undefined as unknown as string),
        /encoded: expected a string or Uint8Array, got undefined/,
      ],
      [
        () => e.dispatchEvent(new MessageEvent("bad\nname", { data: "x" })),
        /event "bad\\nname"/,
      ],
      [
        () =>
          e.dispatchEvent(
            new MessageEvent("message", { data: "x", lastEventId: "a\rb" }),
          ),
        /id "a\\rb"/,
      ],
    ];
    for (const [call, message] of cases) {
      assert.throws(call, { name: "TypeError", message });
      assert.equal(e.bufferedAmount, 2, `nothing queued after ${message}`);
    }
    assert.equal(e.lastEventId, "");
    e.close();
    assert.equal(await e.response!.text(), ":\n");
  });

  test("the constructor throws a clear TypeError for what is not a request", () => {
    assert.throws(() => new EventEndpoint({} as Request), {
      name: "TypeError",
      message:
        /Invalid request: expected a web Request, or a node request and its response, got an object/,
    });
    assert.throws(() => new EventEndpoint(undefined as unknown as Request), {
      name: "TypeError",
      message: /got undefined/,
    });
    const res = Object.assign(new EventEmitter(), {
      writeHead: () => res,
      write: () => true,
      end: () => res,
      destroy: () => res,
    });
    assert.throws(() => new EventEndpoint({} as NodeRequestLike, res), {
      name: "TypeError",
      message:
        /Invalid req: expected a node:http or node:http2 request with headers/,
    });
    assert.throws(
      () =>
        new EventEndpoint(
          new Request("http://127.0.0.1/"),
          5 as EventEndpointOptions,
        ),
      {
        name: "TypeError",
        message: /Invalid options: expected an object, got 5/,
      },
    );
  });

  for (
    const [version, headers, message] of [
      [2, { te: "gzip", "x-bad": "a\u0001b" }, /"x-bad"/],
      [1, { "bad name": "x" }, /Invalid headers/],
      [1, { "x-ok": "1" }, /Invalid heartbeat/],
    ] as const
  ) {
    test(`an invalid option leaves nothing half-built (HTTP/${version}, ${message.source})`, async () => {
      const calls: string[] = [];
      const res = Object.assign(new EventEmitter(), {
        writeHead: (status: number, head: Record<string, unknown>) => {
          if (version === 2 && "te" in head) {
            throw new TypeError("ERR_HTTP2_INVALID_CONNECTION_HEADERS");
          }
          calls.push(`writeHead ${status}`);
          return res;
        },
        write: () => (calls.push("write"), true),
        end: () => (calls.push("end"), res),
        destroy: () => (calls.push("destroy"), res),
      });
      const req = {
        headers: {},
        httpVersionMajor: version,
        httpVersionMinor: 0,
      };
      const options: EventEndpointOptions = { headers };
      if (message.source.includes("heartbeat")) options.heartbeat = -1;
      assert.throws(() => new EventEndpoint(req, res, options), { message });
      await nextTick();
      assert.deepEqual(calls, []);
      assert.deepEqual(res.eventNames(), []);
    });
  }

  test("node:http2 drops te (other than trailers) and the other connection headers before writeHead", () => {
    let head: Record<string, unknown> = {};
    const res = Object.assign(new EventEmitter(), {
      writeHead: (_: number, h: Record<string, unknown>) => ((head = h), res),
      write: () => true,
      end: () => res,
      destroy: () => res,
    });
    const req = { headers: {}, httpVersionMajor: 2, httpVersionMinor: 0 };
    const e = new EventEndpoint(req, res, {
      heartbeat: 0,
      headers: [["te", "gzip"], ["connection", "x"], ["set-cookie", "a=1"], [
        "set-cookie",
        "b=2",
      ]],
    });
    assert.equal(head["te"], undefined);
    assert.equal(head["connection"], undefined);
    assert.deepEqual(head["set-cookie"], ["a=1", "b=2"]);
    const trailers = new EventEndpoint(req, res, {
      heartbeat: 0,
      headers: { te: "trailers" },
    });
    assert.equal(head["te"], "trailers");
    e.abort();
    trailers.abort();
  });
});

/** Runs a full garbage collection when the runtime lets a test do so. */
async function collectGarbage(): Promise<boolean> {
  const g = globalThis as {
    gc?: () => void;
    Bun?: { gc(force: boolean): void };
  };
  if (g.Bun) {
    g.Bun.gc(true);
    return true;
  }
  if (typeof g.gc !== "function") {
    try {
      const v8 = await import("node:v8");
      const vm = await import("node:vm");
      v8.setFlagsFromString("--expose-gc");
      g.gc = vm.runInNewContext("gc");
    } catch {
      return false;
    }
  }
  if (typeof g.gc !== "function") return false;
  g.gc();
  return true;
}

describe(`EventEndpoint churn on ${ownServer.name}`, () => {
  const CYCLES = 10_000;
  const CONCURRENCY = 50;

  test(
    `${CYCLES} connect → one event → disconnect cycles, by the client and by abort(): nothing left`,
    {
      timeout: 600_000,
    },
    async () => {
      const timers = watchIntervals();
      const open = new Set<EventEndpoint>();
      const sample: WeakRef<EventEndpoint>[] = [];
      let made = 0;
      let closes = 0;
      let listenersLeft = 0;
      const start = (e: EventEndpoint, abort: boolean) => {
        open.add(e);
        if (made++ % 100 === 0) sample.push(new WeakRef(e));
        e.addEventListener("close", () => {
          closes++;
          open.delete(e);
        });
        void (async () => {
          // highWaterMark 0: resolves once the runtime has taken the event;
          // node then flushes it on the next tick.
          if (await e.send("hi") && abort) setTimeout(() => e.abort(), 0);
        })();
      };
      const options = { heartbeat: 60_000, highWaterMark: 0 };
      const ours = ["drain", "finish", "close"];
      let server: TestServer | undefined;
      try {
        server = await ownServer.start({
          web(request) {
            const e = new EventEndpoint(request, options);
            start(e, new URL(request.url).pathname === "/abort");
            return e.response!;
          },
          node(req, res) {
            const count = () =>
              ours.reduce((n, name) => n + res.listenerCount(name), 0);
            const before = count();
            const e = new EventEndpoint(req, res, options);
            e.addEventListener("close", () => {
              queueMicrotask(() => {
                if (count() > before) listenersLeft++;
              });
            });
            start(e, req.url === "/abort");
          },
        });
        const s = server;
        const received = { client: 0, abort: 0 };
        const cycle = async (path: "/client" | "/abort") => {
          let response: Response;
          try {
            response = await s.fetch(path);
          } catch (error) {
            // abort() may end the connection before the head is flushed.
            if (path === "/abort") return;
            throw error;
          }
          const reader = response.body!.getReader();
          let text = "";
          try {
            while (!text.includes("data:hi\n\n")) {
              const { done, value } = await reader.read();
              if (done) break;
              text += decoder.decode(value, { stream: true });
            }
            if (path === "/abort") {
              // The server ends it: the stream ends or errors.
              while (!(await reader.read()).done);
            }
          } catch {
            // Aborted by the server.
          }
          if (text.includes("data:hi\n\n")) {
            received[path.slice(1) as "client"]++;
          }
          await reader.cancel().catch(() => {});
        };
        const run = async (path: "/client" | "/abort", cycles: number) => {
          let next = 0;
          await Promise.all(
            Array.from({ length: CONCURRENCY }, async () => {
              while (next++ < cycles) await cycle(path);
            }),
          );
        };
        /** Memory after a full collection (when the runtime allows one). */
        const settle = async () => {
          await waitFor(() => open.size === 0, "every endpoint to close", 3000);
          let gc = false;
          for (let i = 0; i < 5; i++) {
            gc = await collectGarbage();
            await nextTick();
          }
          const { rss, heapUsed } = process.memoryUsage();
          return { gc, rss, heapUsed };
        };
        // Two halves: the first warms up (pools, V8's heap size), the
        // second must not grow: a leak would grow with the cycles.
        await run("/client", CYCLES / 2);
        await run("/abort", CYCLES / 2);
        const half = await settle();
        await run("/client", CYCLES / 2);
        await run("/abort", CYCLES / 2);
        const end = await settle();
        const grown = end.rss - half.rss;
        const heapGrown = end.heapUsed - half.heapUsed;
        const alive = sample.filter((ref) => ref.deref() !== undefined).length;
        console.log(
          `churn on ${ownServer.name}: ${made} endpoints; over the last ${CYCLES} cycles rss ${
            (grown / MiB).toFixed(1)
          } MiB (${(half.rss / MiB).toFixed(0)} → ${
            (end.rss / MiB).toFixed(0)
          }), heap after gc ${
            (heapGrown / MiB).toFixed(1)
          } MiB (gc ${end.gc}); ${alive}/${sample.length} sampled endpoints reachable; events received: ${received.client} (client leaves), ${received.abort} (abort)`,
        );
        assert.equal(made, 2 * CYCLES);
        assert.equal(received.client, CYCLES);
        assert.ok(received.abort > 0, "some events arrive before abort()");
        assert.equal(closes, made, "one close event per endpoint");
        assert.equal(listenersLeft, 0, "listeners left on node responses");
        assert.equal(timers.live(), 0, "heartbeat timers left");
        if (end.gc) {
          assert.equal(alive, 0, "endpoints still reachable");
          assert.ok(heapGrown < 8 * MiB, `heap grew by ${heapGrown} bytes`);
        }
        assert.ok(grown < 64 * MiB, `rss grew by ${grown} bytes`);
      } finally {
        timers.restore();
        await server?.close();
      }
    },
  );
});
