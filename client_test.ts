import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  EventConsumer,
  EventSource,
  EventStreamErrorEvent,
  type ParsedEventStreamChunk,
  type ScheduledReconnection,
  type ServerSentEvent,
  ServerSentEventParser,
  ServerSentEventParserStream,
} from "./client.ts";
import {
  assertNoUnhandledRejections,
  deferred,
  headerAsUtf8,
  nextEvent,
  parse,
  type Parsed,
  serve,
  trapUnhandledRejections,
} from "./_client_test_utils.ts";

// Anything the client leaves unhandled fails this file (see the last test).
trapUnhandledRejections();

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

const encoder = new TextEncoder();

/** A small seeded PRNG (mulberry32), so random chunkings are reproducible. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Chunking = (bytes: Uint8Array) => Uint8Array[];

const chunkings: [string, Chunking][] = [
  ["whole", (bytes) => [bytes]],
  [
    "byte by byte",
    (bytes) => Array.from(bytes, (_, i) => bytes.subarray(i, i + 1)),
  ],
  ...[1, 2, 3].map((seed): [string, Chunking] => [
    `random chunks (seed ${seed})`,
    (bytes) => {
      const next = random(seed);
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < bytes.length;) {
        const size = 1 + Math.floor(next() * 7);
        chunks.push(bytes.subarray(i, i + size));
        i += size;
      }
      return chunks;
    },
  ]),
];

function message(
  data: string,
  lastEventId = "",
  type = "message",
): ServerSentEvent {
  return { type, data, lastEventId };
}

interface Case {
  input: string | Uint8Array;
  events: ServerSentEvent[];
  retries?: number[];
  comments?: string[];
  lastEventId?: string;
}

/** One test per chunking, each checking the whole outcome of the parse. */
function rule(name: string, c: Case): void {
  describe(name, () => {
    const bytes = typeof c.input === "string"
      ? encoder.encode(c.input)
      : c.input;
    for (const [chunkingName, chunk] of chunkings) {
      test(chunkingName, () => {
        const parsed = parse(chunk(bytes));
        assert.deepEqual(parsed.events, c.events, "events");
        assert.deepEqual(parsed.retries, c.retries ?? [], "retries");
        if (c.comments) {
          assert.deepEqual(parsed.comments, c.comments, "comments");
        }
        assert.equal(parsed.lastEventId, c.lastEventId ?? "", "lastEventId");
      });
    }
  });
}

function bytesOf(...parts: (string | number[])[]): Uint8Array {
  const arrays = parts.map((p) =>
    typeof p === "string" ? encoder.encode(p) : new Uint8Array(p)
  );
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let offset = 0;
  for (const a of arrays) {
    out.set(a, offset);
    offset += a.length;
  }
  return out;
}

describe("ServerSentEventParser: the WHATWG rules", () => {
  rule("a data line and a blank line dispatch a message", {
    input: "data: hello\n\n",
    events: [message("hello")],
  });
  rule("several data lines are joined with LF", {
    input: "data: a\ndata: b\ndata: c\n\n",
    events: [message("a\nb\nc")],
  });
  rule("LF, CR and CRLF all end lines", {
    input:
      "data: lf\n\ndata: cr\r\rdata: crlf\r\n\r\ndata: a\rdata: b\ndata: c\r\n\n",
    events: [message("lf"), message("cr"), message("crlf"), message("a\nb\nc")],
  });
  rule("CRLF is one line end, not two (no dispatch between the lines)", {
    input: "data: a\r\ndata: b\r\n\r\n",
    events: [message("a\nb")],
  });
  rule("LF CR is two line ends", {
    input: "data: a\n\rdata: b\n\n",
    events: [message("a"), message("b")],
  });
  rule("comments are ignored and reported without one leading space", {
    input: ":first\n: second\n:  third\ndata: x\n:\n\n",
    events: [message("x")],
    comments: ["first", "second", " third", ""],
  });
  rule("a comment-only block dispatches nothing", {
    input: ": keep-alive\n\n",
    events: [],
    comments: ["keep-alive"],
  });
  rule("a field without a colon has an empty value", {
    input: "data\n\ndata\ndata\n\n",
    events: [message(""), message("\n")],
  });
  rule("exactly one space after the colon is removed, nothing trimmed", {
    input:
      "data:no space\n\ndata:  two spaces\n\ndata: trailing \t \n\ndata:\ttab\n\n",
    events: [
      message("no space"),
      message(" two spaces"),
      message("trailing \t "),
      message("\ttab"),
    ],
  });
  rule("only the first colon separates name and value", {
    input: "data: a:b: c\n\n",
    events: [message("a:b: c")],
  });
  rule("unknown fields and differently-cased names are ignored", {
    input:
      "foo: bar\nData: x\nDATA: y\ndatax: z\ndata : w\nEvent: e\nID: 9\nRetry: 5\ndata: kept\n\n",
    events: [message("kept")],
  });
  rule("event sets the type, which resets after each dispatch", {
    input: "event: add\ndata: 1\n\ndata: 2\n\nevent: a\nevent: b\ndata: 3\n\n",
    events: [message("1", "", "add"), message("2"), message("3", "", "b")],
  });
  rule("an empty event type means message", {
    input: "event:\ndata: x\n\nevent\ndata: y\n\n",
    events: [message("x"), message("y")],
  });
  rule("the event type resets even when nothing is dispatched", {
    input: "event: add\n\ndata: x\n\n",
    events: [message("x")],
  });
  rule("event type values are not trimmed", {
    input: "event:  spaced \ndata: x\n\n",
    events: [message("x", "", " spaced ")],
  });
  rule("an empty data buffer dispatches nothing", {
    input: "\n\n\nevent: x\n\nid\n\n",
    events: [],
  });
  rule("only the data buffer's last LF is removed", {
    input: "data: a\ndata:\n\ndata:\ndata:\n\n",
    events: [message("a\n"), message("\n")],
  });
  rule("an empty data field dispatches an empty message", {
    input: "data:\n\n",
    events: [message("")],
  });
  rule("the last event id persists across events", {
    input: "id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\ndata: d\n\n",
    events: [
      message("a", "1"),
      message("b", "1"),
      message("c", "2"),
      message("d", "2"),
    ],
    lastEventId: "2",
  });
  rule("an empty id resets the last event id", {
    input:
      "id: 1\ndata: a\n\nid\ndata: b\n\nid: 3\ndata: c\n\nid:\ndata: d\n\n",
    events: [
      message("a", "1"),
      message("b", ""),
      message("c", "3"),
      message("d", ""),
    ],
  });
  rule("an id containing U+0000 is ignored", {
    input: "id: 1\ndata: a\n\nid: 2\u00003\ndata: b\n\n",
    events: [message("a", "1"), message("b", "1")],
    lastEventId: "1",
  });
  rule("id values keep spaces beyond the first", {
    input: "id:  x \ndata: a\n\n",
    events: [message("a", " x ")],
    lastEventId: " x ",
  });
  rule("an id-only block updates the last event id without dispatching", {
    input: "id: 5\n\ndata: a\n\n",
    events: [message("a", "5")],
    lastEventId: "5",
  });
  rule("an id-only block at the end still updates the last event id", {
    input: "data: a\n\nid: 7\n\n",
    events: [message("a")],
    lastEventId: "7",
  });
  rule("an id in an unterminated block is not committed", {
    input: "data: a\n\nid: 9\ndata: b\n",
    events: [message("a")],
    lastEventId: "",
  });
  rule("the last id of a block wins", {
    input: "id: 1\nid: 2\ndata: a\n\n",
    events: [message("a", "2")],
    lastEventId: "2",
  });
  rule("retry with only ASCII digits sets the reconnection time at once", {
    input: "retry: 1000\nretry:0\nretry: 9999999999\ndata: x",
    events: [],
    retries: [1000, 0, 9999999999],
  });
  rule("retry that is not all ASCII digits is ignored", {
    input:
      "retry: 1000x\nretry: -1\nretry: 1.5\nretry:\nretry\nretry:  100\nretry: 1 \nretry: +5\nretry: \u0661\n\n",
    events: [],
    retries: [],
  });
  rule("an unterminated event at the end is discarded", {
    input: "data: a\n\ndata: b\n",
    events: [message("a")],
  });
  rule("an unterminated line at the end is discarded", {
    input: "data: a\n\ndata: b",
    events: [message("a")],
  });
  rule("a CR at the very end still ends the line (but not the event)", {
    input: "data: a\r\rdata: b\r",
    events: [message("a")],
  });
  rule("U+0000 in data is kept", {
    input: "data:\u0000\n\n",
    events: [message("\u0000")],
  });
  rule("one leading BOM is stripped", {
    input: "\uFEFFdata: a\n\n",
    events: [message("a")],
  });
  rule("a second BOM is part of the first line (WPT format-bom-2)", {
    input: "\uFEFF\uFEFFdata: 1\n\ndata: 2\n\n",
    events: [message("2")],
  });
  rule("a BOM after the start is data", {
    input: "data: a\n\n\uFEFFdata: b\n\ndata: \uFEFFc\n\n",
    events: [message("a"), message("\uFEFFc")],
  });
  rule("multi-byte UTF-8 survives any split", {
    input: "data: héllo ✓ 😀 中文\nevent: ✓\nid: ид\n\n",
    events: [message("héllo ✓ 😀 中文", "ид", "✓")],
    lastEventId: "ид",
  });
  rule("invalid UTF-8 becomes U+FFFD", {
    input: bytesOf(
      "data: a",
      [0xff],
      "b",
      [0xc3],
      "\ndata: ",
      [0xed, 0xa0, 0x80],
      "\n\n",
    ),
    events: [message("a\uFFFDb\uFFFD\n\uFFFD\uFFFD\uFFFD")],
  });
  rule("a truncated UTF-8 sequence at the end is flushed and discarded", {
    input: bytesOf("data: a\n\ndata: ", [0xe2, 0x82]),
    events: [message("a")],
  });
  rule("a truncated UTF-8 sequence before a line end becomes U+FFFD", {
    input: bytesOf("data: ", [0xe2, 0x82], "\n\n"),
    events: [message("\uFFFD")],
  });
  rule("a long line made of many pieces is kept whole", {
    input: `data: ${"x".repeat(5000)}\ndata: ${"y".repeat(3000)}\n\n`,
    events: [message(`${"x".repeat(5000)}\n${"y".repeat(3000)}`)],
  });
});

describe("ServerSentEventParser: chunk boundaries", () => {
  function parseChunks(...chunks: (string | number[])[]): Parsed {
    return parse(chunks.map((c) => bytesOf(c)));
  }
  test("a data line split after its colon or its space keeps the spec's value", () => {
    // The parser keeps only the value of a pending data line: whether the
    // first space is removed must not depend on where the chunks split.
    assert.deepEqual(parseChunks("data:", " x\n\n").events, [message("x")]);
    assert.deepEqual(parseChunks("data: ", " x\n\n").events, [message(" x")]);
    assert.deepEqual(parseChunks("data:  ", "x\n\n").events, [message(" x")]);
    assert.deepEqual(parseChunks("dat", "a: x\n\n").events, [message("x")]);
    assert.deepEqual(
      parseChunks("data: a", "b", "c\r", "\ndata:d", "e\r\n\r\n").events,
      [message("abc\nde")],
    );
    assert.deepEqual(
      parseChunks("data: a", "b\n", "event: t", "y\n\n").events,
      [{ type: "ty", data: "ab", lastEventId: "" }],
    );
  });
  test("a CR ending one chunk and an LF starting the next are one line end", () => {
    const parsed = parseChunks("data: a\r", "\ndata: b\r", "\n\r", "\n");
    assert.deepEqual(parsed.events, [message("a\nb")]);
  });
  test("a CR ending a chunk before an empty chunk still pairs with the LF", () => {
    const parsed = parseChunks(
      "data: a\r",
      "",
      "\ndata: b\r\n",
      "\r",
      [],
      "\n",
    );
    assert.deepEqual(parsed.events, [message("a\nb")]);
  });
  test("a CR ending a chunk and a CR starting the next are two line ends", () => {
    const parsed = parseChunks("data: a\r", "\r");
    assert.deepEqual(parsed.events, [message("a")]);
  });
  test("a BOM split across three chunks is stripped", () => {
    const parsed = parseChunks([0xef], [0xbb], [0xbf], "data: a\n\n");
    assert.deepEqual(parsed.events, [message("a")]);
  });
  test("a BOM split across chunks after an empty chunk is stripped, a second one is not", () => {
    const parsed = parseChunks(
      [],
      [0xef, 0xbb],
      [0xbf, 0xef],
      [0xbb, 0xbf],
      "data: 1\n\ndata: 2\n\n",
    );
    assert.deepEqual(parsed.events, [message("2")]);
  });
  test("a BOM-like sequence at the start of a later chunk is kept", () => {
    const parsed = parseChunks("data: a", [0xef, 0xbb, 0xbf], "\n\n");
    assert.deepEqual(parsed.events, [message("a\uFEFF")]);
  });
  test("a 1 MiB single-line event in 1 KiB chunks", () => {
    const payload = "z".repeat(1024 * 1024);
    const bytes = encoder.encode(`data: ${payload}\n\n`);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += 1024) {
      chunks.push(bytes.subarray(i, i + 1024));
    }
    const parsed = parse(chunks);
    assert.equal(parsed.events.length, 1);
    assert.equal(parsed.events[0]!.data, payload);
  });
});

describe("ServerSentEventParser: state and options", () => {
  test("lastEventId starts from the option and is committed on dispatch", () => {
    const events: ServerSentEvent[] = [];
    const parser = new ServerSentEventParser({
      onEvent: (e) => events.push(e),
      lastEventId: "41",
    });
    assert.equal(parser.lastEventId, "41");
    parser.push(encoder.encode("data: a\n\nid: 42\n"));
    assert.equal(
      parser.lastEventId,
      "41",
      "an id is committed by the blank line",
    );
    parser.push(encoder.encode("\n"));
    assert.equal(parser.lastEventId, "42");
    assert.deepEqual(events, [message("a", "41")]);
  });
  test("end() discards the pending block and the parser reads a new stream", () => {
    const events: ServerSentEvent[] = [];
    const parser = new ServerSentEventParser({
      onEvent: (e) => events.push(e),
    });
    parser.push(encoder.encode("id: 1\ndata: a\n\nid: 2\nevent: x\ndata: b\n"));
    parser.end();
    parser.push(encoder.encode("\uFEFFdata: c\n\n"));
    parser.end();
    assert.deepEqual(events, [message("a", "1"), message("c", "1")]);
  });
  test("onRetry and onComment are optional", () => {
    const events: ServerSentEvent[] = [];
    const parser = new ServerSentEventParser({
      onEvent: (e) => events.push(e),
    });
    parser.push(encoder.encode(": hi\nretry: 5\ndata: a\n\n"));
    assert.deepEqual(events, [message("a")]);
  });
  test("maxEventSize must be positive", () => {
    assert.throws(
      () => new ServerSentEventParser({ onEvent() {}, maxEventSize: 0 }),
      RangeError,
    );
    assert.throws(
      () =>
        new ServerSentEventParser({ onEvent() {}, maxEventSize: Number.NaN }),
      RangeError,
    );
  });
});

describe("ServerSentEventParser: maxEventSize", () => {
  const tooLarge = (error: unknown) =>
    error instanceof RangeError && /maxEventSize \(10\)/.test(error.message);
  test("an event of exactly the limit passes", () => {
    const events: ServerSentEvent[] = [];
    const parser = new ServerSentEventParser({
      onEvent: (e) => events.push(e),
      maxEventSize: 10,
    });
    parser.push(
      encoder.encode("data: 0123456789\n\ndata: 01234\ndata: 0123\n\n"),
    );
    assert.deepEqual(events, [message("0123456789"), message("01234\n0123")]);
  });
  for (const [name, chunking] of chunkings) {
    test(`an unterminated line over the limit throws a RangeError (${name})`, () => {
      const parser = new ServerSentEventParser({
        onEvent() {},
        maxEventSize: 10,
      });
      assert.throws(() => {
        for (
          const chunk of chunking(encoder.encode("data: 0123456789abcdef"))
        ) parser.push(chunk);
      }, tooLarge);
    });
    test(`a one-line event over the limit throws a RangeError (${name})`, () => {
      const events: ServerSentEvent[] = [];
      const parser = new ServerSentEventParser({
        onEvent: (e) => events.push(e),
        maxEventSize: 10,
      });
      assert.throws(() => {
        for (const chunk of chunking(encoder.encode("data: 0123456789a\n\n"))) {
          parser.push(chunk);
        }
      }, tooLarge);
      assert.deepEqual(events, []);
    });
    test(`data lines over the limit throw a RangeError (${name})`, () => {
      const events: ServerSentEvent[] = [];
      const parser = new ServerSentEventParser({
        onEvent: (e) => events.push(e),
        maxEventSize: 10,
      });
      assert.throws(() => {
        for (
          const chunk of chunking(
            encoder.encode("data: ok\n\ndata: 012345\ndata: 6789\n\n"),
          )
        ) {
          parser.push(chunk);
        }
      }, tooLarge);
      assert.deepEqual(events, [message("ok")]);
    });
  }
  test("after the error every push() and end() throws it again", () => {
    const parser = new ServerSentEventParser({
      onEvent() {},
      maxEventSize: 10,
    });
    assert.throws(
      () => parser.push(encoder.encode("data: 0123456789abcdef")),
      tooLarge,
    );
    assert.throws(() => parser.push(encoder.encode("\n\n")), tooLarge);
    assert.throws(() => parser.end(), tooLarge);
  });
  test("long comments and unknown fields in one chunk do not count", () => {
    const events: ServerSentEvent[] = [];
    const parser = new ServerSentEventParser({
      onEvent: (e) => events.push(e),
      maxEventSize: 10,
    });
    parser.push(
      encoder.encode(
        `: ${"c".repeat(50)}\nfoo: ${"f".repeat(50)}\ndata: a\n\n`,
      ),
    );
    assert.deepEqual(events, [message("a")]);
  });
});

describe("ServerSentEventParserStream", () => {
  async function collect(
    chunks: Uint8Array[],
    options?: ConstructorParameters<typeof ServerSentEventParserStream>[0],
  ): Promise<ParsedEventStreamChunk[]> {
    const out: ParsedEventStreamChunk[] = [];
    const readable = ReadableStream.from(chunks).pipeThrough(
      new ServerSentEventParserStream(options),
    );
    for await (const chunk of readable) out.push(chunk);
    return out;
  }
  for (const [name, chunking] of chunkings) {
    test(`events and retry changes in stream order (${name})`, async () => {
      const bytes = encoder.encode(
        "\uFEFFretry: 10\nid: 1\ndata: a\n\nevent: e\ndata: b\nretry: 20\n\ndata: cut",
      );
      assert.deepEqual(await collect(chunking(bytes)), [
        { retry: 10 },
        message("a", "1"),
        { retry: 20 },
        message("b", "1", "e"),
      ]);
    });
  }
  test("starts from the lastEventId option", async () => {
    assert.deepEqual(
      await collect([encoder.encode("data: a\n\n")], { lastEventId: "x" }),
      [
        message("a", "x"),
      ],
    );
  });
  test("an event over maxEventSize errors the stream with a RangeError", async () => {
    await assert.rejects(
      collect([
        encoder.encode("data: a\n\n"),
        encoder.encode("data: 0123456789"),
      ], { maxEventSize: 8 }),
      (error) =>
        error instanceof RangeError && /maxEventSize/.test(error.message),
    );
  });
});

// ---------------------------------------------------------------------------
// EventConsumer
// ---------------------------------------------------------------------------

function eventStreamResponse(
  body: BodyInit | null,
  init: { status?: number; contentType?: string | null; url?: string } = {},
): Response {
  const headers = new Headers();
  const contentType = init.contentType === undefined
    ? "text/event-stream"
    : init.contentType;
  if (contentType !== null) headers.set("content-type", contentType);
  const response = new Response(body, { status: init.status ?? 200, headers });
  if (init.url) Object.defineProperty(response, "url", { value: init.url });
  return response;
}

/** A body stream we control chunk by chunk. */
function controlledBody(): {
  body: ReadableStream<Uint8Array>;
  send(text: string): void;
  end(): void;
  fail(error: unknown): void;
  cancelled: Promise<unknown>;
} {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const cancelled = deferred<unknown>();
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel(reason) {
      cancelled.resolve(reason);
    },
  });
  return {
    body,
    send: (text) => controller.enqueue(encoder.encode(text)),
    end: () => controller.close(),
    fail: (error) => controller.error(error),
    cancelled: cancelled.promise,
  };
}

describe("EventConsumer: validation", () => {
  const rejects = (response: Response, pattern: RegExp) =>
    assert.throws(
      () => new EventConsumer(response),
      (error) => error instanceof TypeError && pattern.test(error.message),
    );
  test("a non-2xx status is a TypeError", () => {
    rejects(eventStreamResponse("data: a\n\n", { status: 500 }), /status 500/);
    rejects(eventStreamResponse("data: a\n\n", { status: 404 }), /status 404/);
  });
  test("a missing body is a TypeError", () => {
    rejects(eventStreamResponse(null), /without a body/);
  });
  test("a used or locked body is a TypeError", async () => {
    const used = eventStreamResponse("data: a\n\n");
    await used.text();
    rejects(used, /already used or locked/);
    const locked = eventStreamResponse("data: a\n\n");
    locked.body!.getReader();
    rejects(locked, /already used or locked/);
  });
  test("a content type other than text/event-stream is a TypeError", () => {
    rejects(
      eventStreamResponse("x", { contentType: "text/html" }),
      /"text\/html".*expected "text\/event-stream"/,
    );
    rejects(
      eventStreamResponse(encoder.encode("x"), { contentType: null }),
      /\(none\)/,
    );
    rejects(
      eventStreamResponse("x", { contentType: "text/event-streams" }),
      /expected/,
    );
    rejects(
      eventStreamResponse("x", {
        contentType: "text/plain; x=text/event-stream",
      }),
      /expected/,
    );
  });
  test("the MIME essence is matched case-insensitively, with parameters", async () => {
    for (
      const contentType of [
        "Text/Event-Stream",
        "text/event-stream; charset=utf-8",
        " text/event-stream ;x=1",
      ]
    ) {
      const consumer = new EventConsumer(
        eventStreamResponse("", { contentType }),
      );
      await nextEvent(consumer, "close");
    }
  });
});

describe("EventConsumer: events", () => {
  test("dispatches MessageEvents by type, then close (clean)", async () => {
    const consumer = new EventConsumer(
      eventStreamResponse(
        "retry: 1500\nid: 1\ndata: a\n\nevent: add\ndata: b\n\nid: 2\n\ndata: cut",
        {
          url: "https://example.com:8443/path?q",
        },
      ),
    );
    const messages: MessageEvent[] = [];
    const adds: MessageEvent[] = [];
    consumer.addEventListener("message", (e) => messages.push(e));
    consumer.addEventListener("add", (e) => adds.push(e));
    assert.equal(consumer.closed, false);
    const close = await nextEvent<CloseEvent>(consumer, "close");
    assert.equal(close.wasClean, true);
    assert.equal(close.reason, "");
    assert.equal(messages.length, 1);
    assert.ok(messages[0] instanceof MessageEvent);
    assert.equal(messages[0].type, "message");
    assert.equal(messages[0].data, "a");
    assert.equal(messages[0].lastEventId, "1");
    assert.equal(messages[0].origin, "https://example.com:8443");
    assert.equal(adds.length, 1);
    assert.equal(adds[0]!.data, "b");
    assert.equal(adds[0]!.lastEventId, "1");
    assert.equal(consumer.lastEventId, "2", "the id-only block committed 2");
    assert.equal(consumer.retry, 1500);
    assert.equal(consumer.closed, true);
  });
  test("a failing body dispatches error, then close (not clean)", async () => {
    const source = controlledBody();
    const consumer = new EventConsumer(eventStreamResponse(source.body));
    const order: string[] = [];
    consumer.addEventListener(
      "message",
      (e) => order.push(`message ${e.data}`),
    );
    consumer.addEventListener(
      "error",
      (e) => order.push(`error ${(e.error as Error).message}`),
    );
    const closed = nextEvent<CloseEvent>(consumer, "close");
    source.send("data: a\n\n");
    await new Promise((resolve) => setTimeout(resolve, 0));
    source.fail(new Error("connection reset"));
    const close = await closed;
    assert.deepEqual(order, ["message a", "error connection reset"]);
    assert.equal(close.wasClean, false);
    assert.equal(close.reason, "connection reset");
    assert.equal(consumer.closed, true);
  });
  test("an event over maxEventSize fails the consumer and cancels the body", async () => {
    const source = controlledBody();
    const consumer = new EventConsumer(eventStreamResponse(source.body), {
      maxEventSize: 4,
    });
    const error = nextEvent<EventStreamErrorEvent>(consumer, "error");
    source.send("data: 0123456789");
    assert.ok((await error).error instanceof RangeError);
    assert.ok(/maxEventSize/.test(String(await source.cancelled)));
    assert.equal(consumer.closed, true);
  });
  test("close() cancels the body and dispatches a clean close once", async () => {
    const source = controlledBody();
    const consumer = new EventConsumer(eventStreamResponse(source.body));
    const closes: CloseEvent[] = [];
    consumer.addEventListener("close", (e) => closes.push(e));
    const messages: string[] = [];
    consumer.addEventListener("message", (e) => messages.push(e.data));
    consumer.close();
    consumer.close();
    await source.cancelled;
    assert.equal(consumer.closed, true);
    assert.equal(closes.length, 1);
    assert.equal(closes[0]!.wasClean, true);
    assert.deepEqual(messages, []);
  });
});

describe("EventConsumer: async iteration", () => {
  test("yields every event, whatever its type, and ends with the stream", async () => {
    const consumer = new EventConsumer(
      eventStreamResponse("data: a\n\nevent: x\ndata: b\n\n"),
    );
    const seen: string[] = [];
    for await (const event of consumer) {
      seen.push(`${event.type}:${event.data}`);
    }
    assert.deepEqual(seen, ["message:a", "x:b"]);
  });
  test("throws the error when the stream fails", async () => {
    const source = controlledBody();
    const consumer = new EventConsumer(eventStreamResponse(source.body));
    const seen: string[] = [];
    source.send("data: a\n\n");
    await assert.rejects(
      (async () => {
        for await (const event of consumer) {
          seen.push(event.data);
          source.fail(new Error("gone"));
        }
      })(),
      /gone/,
    );
    assert.deepEqual(seen, ["a"]);
  });
  test("ends cleanly when close() is called", async () => {
    const source = controlledBody();
    const consumer = new EventConsumer(eventStreamResponse(source.body));
    source.send("data: a\n\ndata: b\n\n");
    const seen: string[] = [];
    for await (const event of consumer) {
      seen.push(event.data);
      consumer.close();
    }
    assert.deepEqual(seen, ["a"]);
    await source.cancelled;
  });
  test("a slow loop pauses reading and still gets every event in order", async () => {
    const count = 500;
    let text = "";
    for (let i = 0; i < count; i++) text += `data: ${i}\n\n`;
    const consumer = new EventConsumer(eventStreamResponse(text));
    let expected = 0;
    for await (const event of consumer) {
      assert.equal(event.data, String(expected++));
      if (expected % 50 === 0) {
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    }
    assert.equal(expected, count);
  });
  test("break closes the consumer and cancels the body", async () => {
    const source = controlledBody();
    const consumer = new EventConsumer(eventStreamResponse(source.body));
    const closes: boolean[] = [];
    consumer.addEventListener("close", (event) => closes.push(event.wasClean));
    source.send("data: a\n\n");
    for await (const _ of consumer) break;
    assert.equal(consumer.closed, true);
    assert.deepEqual(closes, [true]);
    await source.cancelled;
  });
  test("next() called again before the last one settled: events in order, then done", async () => {
    const source = controlledBody();
    const consumer = new EventConsumer(eventStreamResponse(source.body));
    const iterator = consumer[Symbol.asyncIterator]();
    const pending = [iterator.next(), iterator.next(), iterator.next()];
    source.send("data: a\n\ndata: b\n\n");
    source.end();
    const results = await Promise.all(pending);
    assert.deepEqual(
      results.map((r) => (r.done ? "done" : r.value.data)),
      ["a", "b", "done"],
    );
    assert.deepEqual(await iterator.next(), { done: true, value: undefined });
  });
  test("a failed stream rejects one next(); the ones after are done", async () => {
    const source = controlledBody();
    const consumer = new EventConsumer(eventStreamResponse(source.body));
    const iterator = consumer[Symbol.asyncIterator]();
    const first = iterator.next();
    source.fail(new Error("gone"));
    await assert.rejects(first, /gone/);
    assert.deepEqual(await iterator.next(), { done: true, value: undefined });
  });
  test("loops and listeners each get every event they cover", async () => {
    const consumer = new EventConsumer(
      eventStreamResponse("data: a\n\nevent: x\ndata: b\n\ndata: c\n\n"),
    );
    const heard: string[] = [];
    consumer.addEventListener("x", (e) => heard.push(`x:${e.data}`));
    const loop = async (name: string): Promise<string[]> => {
      const seen: string[] = [];
      for await (const event of consumer) seen.push(`${name}:${event.data}`);
      return seen;
    };
    const [one, two] = await Promise.all([loop("1"), loop("2")]);
    assert.deepEqual(one, ["1:a", "1:b", "1:c"]);
    assert.deepEqual(two, ["2:a", "2:b", "2:c"]);
    assert.deepEqual(heard, ["x:b"]);
  });
  test("a listener of one type and none of another: the other is still counted in lastEventId", async () => {
    const consumer = new EventConsumer(
      eventStreamResponse("id: 1\nevent: x\ndata: a\n\nid: 2\ndata: b\n\n"),
    );
    const heard: string[] = [];
    consumer.addEventListener("x", (e) => heard.push(e.data));
    await new Promise((resolve) => consumer.addEventListener("close", resolve));
    assert.deepEqual(heard, ["a"]);
    assert.equal(consumer.lastEventId, "2");
  });
  test("return() ends the loop, closes the consumer, and drops what it had not taken", async () => {
    const consumer = new EventConsumer(
      eventStreamResponse("data: a\n\ndata: b\n\n"),
    );
    const iterator = consumer[Symbol.asyncIterator]();
    assert.equal((await iterator.next()).value?.data, "a");
    assert.deepEqual(await iterator.return!(), {
      done: true,
      value: undefined,
    });
    assert.equal(consumer.closed, true);
    assert.deepEqual(await iterator.next(), { done: true, value: undefined });
  });
});

// ---------------------------------------------------------------------------
// EventSource
// ---------------------------------------------------------------------------

describe("EventSource: interface", () => {
  test("constants on the class and on instances", () => {
    assert.equal(EventSource.CONNECTING, 0);
    assert.equal(EventSource.OPEN, 1);
    assert.equal(EventSource.CLOSED, 2);
    const source = new EventSource("http://127.0.0.1:1/", {
      signal: AbortSignal.abort(),
    });
    assert.equal(source.CONNECTING, 0);
    assert.equal(source.OPEN, 1);
    assert.equal(source.CLOSED, 2);
    assert.ok(source instanceof EventTarget);
  });
  test("an invalid URL throws a SyntaxError DOMException", () => {
    assert.throws(
      () => new EventSource("http://[::1"),
      (error) => error instanceof DOMException && error.name === "SyntaxError",
    );
  });
  test("a body with GET is a TypeError", () => {
    assert.throws(
      () => new EventSource("http://127.0.0.1:1/", { body: "x" }),
      (error) =>
        error instanceof TypeError && /method option/.test(error.message),
    );
  });
  test("an open listener's close() stops before reading", async () => {
    const { fetch } = scriptedFetch([ok("data: a\n\n")]);
    const source = new EventSource("https://api.example/stream", { fetch });
    const events: string[] = [];
    source.addEventListener("message", () => events.push("message"));
    source.addEventListener("error", () => events.push("error"));
    await new Promise<void>((resolve) => {
      source.onopen = () => {
        source.close();
        resolve();
      };
    });
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(events, []);
    assert.equal(source.readyState, EventSource.CLOSED);
  });
  test("url and withCredentials reflect the arguments", () => {
    const source = new EventSource(new URL("http://127.0.0.1:1/a b"), {
      withCredentials: true,
      signal: AbortSignal.abort(),
    });
    assert.equal(source.url, "http://127.0.0.1:1/a%20b");
    assert.equal(source.withCredentials, true);
    assert.equal(
      new EventSource("http://127.0.0.1:1/", { signal: AbortSignal.abort() })
        .withCredentials,
      false,
    );
  });
});

/** A fetch double that answers from a list, then never again. */
function scriptedFetch(
  replies: ((init: RequestInit) => Promise<Response>)[],
): {
  fetch: (input: URL, init: RequestInit) => Promise<Response>;
  calls: RequestInit[];
} {
  const calls: RequestInit[] = [];
  return {
    calls,
    fetch: (_input, init) => {
      calls.push(init);
      const reply = replies.shift();
      assert.ok(reply, "no more fetches expected");
      return reply(init);
    },
  };
}

const ok = (text: string) => () =>
  Promise.resolve(
    eventStreamResponse(text, { url: "https://api.example/stream" }),
  );
const networkError = () => Promise.reject(new TypeError("fetch failed"));

describe("EventSource: reconnect policy (fetch double)", () => {
  test("consecutive failures back off exponentially; an open resets them", async () => {
    const reconnections: ScheduledReconnection[] = [];
    const { fetch } = scriptedFetch([
      networkError,
      networkError,
      ok("data: a\n\n"),
      networkError,
      ok(""),
    ]);
    const done = deferred();
    const stop = new AbortController();
    new EventSource("https://api.example/stream", {
      fetch,
      signal: stop.signal,
      reconnect: { initialDelay: 1, jitter: 0 },
      onReconnect: (r) => {
        reconnections.push(r);
        if (reconnections.length === 5) {
          stop.abort();
          done.resolve();
        }
      },
    });
    await done.promise;
    assert.deepEqual(reconnections.map((r) => [r.failures, r.delay]), [
      [1, 2],
      [2, 4],
      [0, 1],
      [1, 2],
      [0, 1],
    ]);
    assert.ok(reconnections[0]!.reason instanceof TypeError);
  });
  test("jitter keeps delays between the floor and the backoff", async () => {
    const reconnections: ScheduledReconnection[] = [];
    const { fetch } = scriptedFetch(
      Array.from({ length: 6 }, () => networkError),
    );
    const done = deferred();
    const stop = new AbortController();
    new EventSource("https://api.example/stream", {
      fetch,
      signal: stop.signal,
      reconnect: { initialDelay: 2, jitter: 1, maxDelay: 40 },
      onReconnect: (r) => {
        reconnections.push(r);
        if (reconnections.length === 6) {
          stop.abort();
          done.resolve();
        }
      },
    });
    await done.promise;
    for (const { failures, delay } of reconnections) {
      assert.ok(
        delay >= 2 && delay <= Math.min(40, 2 * 2 ** failures),
        `delay ${delay} after ${failures} failures`,
      );
    }
  });
  test("maxAttempts consecutive failures close the source with an error", async () => {
    const { fetch, calls } = scriptedFetch([
      networkError,
      networkError,
      networkError,
    ]);
    const errors: number[] = [];
    const source = new EventSource("https://api.example/stream", {
      fetch,
      reconnect: { initialDelay: 1, maxAttempts: 3 },
    });
    const closed = deferred();
    source.onerror = () => {
      errors.push(source.readyState);
      if (source.readyState === EventSource.CLOSED) closed.resolve();
    };
    await closed.promise;
    assert.deepEqual(errors, [
      EventSource.CONNECTING,
      EventSource.CONNECTING,
      EventSource.CLOSED,
    ]);
    assert.equal(calls.length, 3);
  });
  test("a headers function that throws counts as a failed attempt", async () => {
    const reconnections: ScheduledReconnection[] = [];
    const { fetch, calls } = scriptedFetch([ok("data: a\n\n")]);
    const stop = new AbortController();
    const source = new EventSource("https://api.example/stream", {
      fetch,
      signal: stop.signal,
      lastEventId: "resume-from-here",
      headers: ({ attempt }) => {
        if (attempt === 1) throw new Error("token refresh failed");
        return { authorization: "Bearer t" };
      },
      reconnect: { initialDelay: 1, jitter: 0 },
      onReconnect: (r) => reconnections.push(r),
    });
    const firstError = await nextEvent<EventStreamErrorEvent>(source, "error");
    assert.equal(firstError.message, "token refresh failed");
    assert.equal(source.readyState, EventSource.CONNECTING);
    const message = await nextEvent<MessageEvent>(source, "message");
    assert.equal(message.lastEventId, "resume-from-here");
    stop.abort();
    assert.equal(source.readyState, EventSource.CLOSED);
    const [first] = reconnections;
    assert.deepEqual([first!.failures, first!.delay], [1, 2]);
    assert.equal(calls.length, 1);
    const headers = new Headers(calls[0]!.headers);
    assert.equal(headers.get("last-event-id"), "resume-from-here");
    assert.equal(headers.get("authorization"), "Bearer t");
    assert.equal(headers.get("accept"), "text/event-stream");
    assert.equal(calls[0]!.cache, "no-store");
    assert.equal(calls[0]!.credentials, "same-origin");
  });

  test("the server's retry is the floor of every delay, even above maxDelay", async () => {
    const reconnections: ScheduledReconnection[] = [];
    const { fetch } = scriptedFetch([
      ok("retry: 20\n"),
      networkError,
      ok("retry: 9999999999\n"),
    ]);
    const done = deferred();
    const stop = new AbortController();
    new EventSource("https://api.example/stream", {
      fetch,
      signal: stop.signal,
      reconnect: { maxDelay: 1, initialDelay: 1 },
      onReconnect: (r) => {
        reconnections.push(r);
        if (reconnections.length === 3) {
          stop.abort();
          done.resolve();
        }
      },
    });
    await done.promise;
    assert.deepEqual(reconnections.map((r) => [r.failures, r.delay]), [
      [0, 20],
      [1, 20],
      [0, 2 ** 31 - 1],
    ]);
  });
});

/**
 * Records the timers set while it is installed, so a test can check that
 * none is left pending (Deno does not sanitize node:test tests).
 */
function trackTimers(): { pendingDelays(): number[]; restore(): void } {
  const originalSet = globalThis.setTimeout;
  const originalClear = globalThis.clearTimeout;
  const pending = new Map<unknown, number>();
  globalThis.setTimeout = ((
    callback: (...args: unknown[]) => void,
    delay?: number,
    ...args: unknown[]
  ) => {
    const id = originalSet(() => {
      pending.delete(id);
      callback(...args);
    }, delay);
    pending.set(id, delay ?? 0);
    return id;
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((id?: Parameters<typeof clearTimeout>[0]) => {
    pending.delete(id);
    originalClear(id);
  }) as typeof clearTimeout;
  return {
    pendingDelays: () => [...pending.values()],
    restore: () => {
      globalThis.setTimeout = originalSet;
      globalThis.clearTimeout = originalClear;
    },
  };
}

/** Wraps the global fetch, recording the signal of every request. */
function recordingFetch(): {
  fetch: (input: URL, init: RequestInit) => Promise<Response>;
  signals: AbortSignal[];
} {
  const signals: AbortSignal[] = [];
  return {
    signals,
    fetch: (input, init) => {
      signals.push(init.signal!);
      return fetch(input, init);
    },
  };
}

describe("EventSource: against a real server", () => {
  test("opens, dispatches, reconnects with Last-Event-ID after retry, and 204 stops it", async () => {
    const server = await serve((_request, index) =>
      index === 0
        ? {
          body:
            "retry: 5\nid: 1\ndata: a\n\nevent: custom\nid: é✓\ndata: b\n\ndata: c\n\n",
        }
        : { status: 204 }
    );
    const log: string[] = [];
    const reconnections: ScheduledReconnection[] = [];
    const source = new EventSource(`${server.origin}/events?x=1`, {
      reconnect: { initialDelay: 60_000 },
      onReconnect: (r) => reconnections.push(r),
    });
    const states: number[] = [source.readyState];
    source.onopen = () => log.push("open");
    source.onmessage = (e) => {
      log.push(`message ${e.data} ${e.lastEventId}`);
      assert.equal(e.origin, server.origin);
    };
    source.addEventListener(
      "custom",
      (e) => log.push(`custom ${e.data} ${e.lastEventId}`),
    );
    const closed = deferred();
    source.onerror = () => {
      states.push(source.readyState);
      log.push("error");
      if (source.readyState === EventSource.CLOSED) closed.resolve();
    };
    await closed.promise;
    assert.deepEqual(log, [
      "open",
      "message a 1",
      "custom b é✓",
      "message c é✓",
      "error",
      "error",
    ]);
    assert.deepEqual(states, [
      EventSource.CONNECTING,
      EventSource.CONNECTING,
      EventSource.CLOSED,
    ]);
    assert.deepEqual(
      reconnections.map((r) => r.delay),
      [5],
      "the server's retry replaced 60 s",
    );
    assert.equal(server.requests.length, 2);
    const [first, second] = server.requests;
    assert.equal(first!.path, "/events?x=1");
    assert.equal(first!.method, "GET");
    assert.equal(first!.headers["accept"], "text/event-stream");
    assert.equal(first!.headers["last-event-id"], undefined);
    assert.equal(headerAsUtf8(second!.headers["last-event-id"]), "é✓");
    assert.equal(source.lastEventId, "é✓");
    await server.close();
  });

  test("a non-200 status fails the connection: CLOSED, error, no reconnect", async () => {
    for (const status of [500, 404, 201]) {
      const server = await serve(() => ({ status, body: "data: a\n\n" }));
      let reconnects = 0;
      const source = new EventSource(server.origin, {
        reconnect: { initialDelay: 1 },
        onReconnect: () => reconnects++,
      });
      let opened = false;
      source.onopen = () => (opened = true);
      const error = await nextEvent<EventStreamErrorEvent>(source, "error");
      assert.equal(source.readyState, EventSource.CLOSED, `status ${status}`);
      assert.match(error.message, new RegExp(`status ${status}`));
      assert.equal(opened, false);
      assert.equal(reconnects, 0);
      assert.equal(server.requests.length, 1);
      await server.close();
    }
  });

  test("a wrong content type fails the connection", async () => {
    const server = await serve(() => ({
      headers: { "content-type": "text/plain" },
      body: "data: a\n\n",
    }));
    let reconnects = 0;
    const source = new EventSource(server.origin, {
      onReconnect: () => reconnects++,
    });
    const messages: string[] = [];
    source.onmessage = (e) => messages.push(e.data);
    const error = await nextEvent<EventStreamErrorEvent>(source, "error");
    assert.equal(source.readyState, EventSource.CLOSED);
    assert.match(error.message, /"text\/plain".*expected "text\/event-stream"/);
    assert.deepEqual(messages, []);
    assert.equal(reconnects, 0);
    await server.close();
  });

  test("close() while connecting aborts the request and fires nothing", async () => {
    const arrived = deferred();
    const release = deferred();
    const server = await serve(async () => {
      arrived.resolve();
      await release.promise;
      return { body: "data: late\n\n" };
    });
    const source = new EventSource(server.origin);
    const events: string[] = [];
    for (const type of ["open", "message", "error"]) {
      source.addEventListener(type, () => events.push(type));
    }
    await arrived.promise;
    assert.equal(source.readyState, EventSource.CONNECTING);
    source.close();
    assert.equal(source.readyState, EventSource.CLOSED);
    release.resolve();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(events, []);
    await server.close();
  });

  test("close() while open aborts the body; close() while waiting cancels the timer", async () => {
    const server = await serve((_request, index) =>
      index === 0 ? { body: "data: a\n\n", hold: true } : { body: "" }
    );
    const timers = trackTimers();
    try {
      const recording = recordingFetch();
      const reconnected = deferred<ScheduledReconnection>();
      const source = new EventSource(server.origin, {
        fetch: recording.fetch,
        reconnect: { initialDelay: 60_000 },
        onReconnect: reconnected.resolve,
      });
      await nextEvent(source, "message");
      assert.equal(source.readyState, EventSource.OPEN);
      source.close();
      assert.equal(source.readyState, EventSource.CLOSED);
      assert.equal(recording.signals.length, 1);
      assert.equal(
        recording.signals[0]!.aborted,
        true,
        "the request is aborted",
      );

      // Now a source that is waiting to reconnect: its timer must go.
      const waiting = new EventSource(`${server.origin}/second`, {
        reconnect: { initialDelay: 60_000 },
        onReconnect: reconnected.resolve,
      });
      assert.equal((await reconnected.promise).delay, 60_000);
      assert.equal(waiting.readyState, EventSource.CONNECTING);
      assert.ok(timers.pendingDelays().includes(60_000));
      waiting.close();
      assert.equal(waiting.readyState, EventSource.CLOSED);
      // (fetch and the server may keep short timers of their own)
      assert.ok(!timers.pendingDelays().includes(60_000), "no timer left");
      assert.equal(server.requests.length, 2);
    } finally {
      timers.restore();
      await server.close();
    }
  });

  test("a huge retry is clamped to 2^31-1 ms and does not storm the server", async () => {
    const server = await serve(() => ({
      body: "retry: 9999999999\ndata: x\n\n",
    }));
    const timers = trackTimers();
    try {
      const reconnected = deferred<ScheduledReconnection>();
      const source = new EventSource(server.origin, {
        onReconnect: reconnected.resolve,
      });
      assert.equal((await reconnected.promise).delay, 2 ** 31 - 1);
      assert.ok(timers.pendingDelays().includes(2 ** 31 - 1));
      // Had setTimeout turned the delay into 1 ms, a second request would
      // arrive within this window.
      await new Promise((resolve) => setTimeout(resolve, 30));
      assert.equal(server.requests.length, 1);
      assert.equal(source.readyState, EventSource.CONNECTING);
      source.close();
      assert.ok(!timers.pendingDelays().includes(2 ** 31 - 1), "no timer left");
    } finally {
      timers.restore();
      await server.close();
    }
  });

  test("a headers function is called for every attempt; POST body is sent each time", async () => {
    const server = await serve((_request, index) =>
      index === 0 ? { body: "id: 7\ndata: a\n\n" } : { status: 204 }
    );
    const attempts: [number, string][] = [];
    const source = new EventSource(server.origin, {
      method: "POST",
      body: JSON.stringify({ prompt: "hi" }),
      headers: async ({ attempt, lastEventId }) => {
        attempts.push([attempt, lastEventId]);
        await Promise.resolve();
        return {
          authorization: `Bearer token-${attempt}`,
          "content-type": "application/json",
        };
      },
      reconnect: { initialDelay: 1 },
    });
    const closed = deferred();
    source.onerror = () =>
      source.readyState === EventSource.CLOSED && closed.resolve();
    await closed.promise;
    assert.deepEqual(attempts, [[1, ""], [2, "7"]]);
    assert.deepEqual(server.requests.map((r) => r.headers["authorization"]), [
      "Bearer token-1",
      "Bearer token-2",
    ]);
    for (const request of server.requests) {
      assert.equal(request.method, "POST");
      assert.equal(request.body, '{"prompt":"hi"}');
      assert.equal(request.headers["content-type"], "application/json");
    }
    await server.close();
  });

  test("the stream ending reconnects; a network error reconnects with backoff", async () => {
    const server = await serve((_request, index) =>
      index === 0 ? { body: "data: a\n\n" } : { status: 204 }
    );
    const reconnections: ScheduledReconnection[] = [];
    const source = new EventSource(server.origin, {
      reconnect: { initialDelay: 1, jitter: 0 },
      onReconnect: (r) => reconnections.push(r),
    });
    const closed = deferred();
    source.onerror = () =>
      source.readyState === EventSource.CLOSED && closed.resolve();
    await closed.promise;
    assert.deepEqual(reconnections.map((r) => r.failures), [0]);
    await server.close();

    // Nothing listens on the closed server's port now: a network error.
    const refused = new EventSource(server.origin, {
      reconnect: { initialDelay: 1, jitter: 0, maxAttempts: 2 },
      onReconnect: (r) => reconnections.push(r),
    });
    const gaveUp = deferred();
    refused.onerror = () =>
      refused.readyState === EventSource.CLOSED && gaveUp.resolve();
    await gaveUp.promise;
    assert.deepEqual(reconnections.slice(1).map((r) => [r.failures, r.delay]), [
      [1, 2],
    ]);
  });

  test("an abort signal closes the source", async () => {
    const server = await serve(() => ({ body: "data: a\n\n", hold: true }));
    const controller = new AbortController();
    const source = new EventSource(server.origin, {
      signal: controller.signal,
    });
    await nextEvent(source, "message");
    controller.abort();
    assert.equal(source.readyState, EventSource.CLOSED);
    await server.close();
  });

  test("an event over maxEventSize fails the connection", async () => {
    const server = await serve(() => ({
      body: `data: ${"x".repeat(100)}`,
      hold: true,
    }));
    let reconnects = 0;
    const source = new EventSource(server.origin, {
      maxEventSize: 50,
      onReconnect: () => reconnects++,
    });
    const error = await nextEvent<EventStreamErrorEvent>(source, "error");
    assert.ok(error.error instanceof RangeError);
    assert.equal(source.readyState, EventSource.CLOSED);
    assert.equal(reconnects, 0);
    await server.close();
  });

  test("a listener's close() stops the rest of the chunk", async () => {
    const server = await serve(() => ({ body: "data: a\n\ndata: b\n\n" }));
    const source = new EventSource(server.origin);
    const seen: string[] = [];
    const first = deferred();
    source.onmessage = (e) => {
      seen.push(e.data);
      source.close();
      first.resolve();
    };
    await first.promise;
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(seen, ["a"]);
    await server.close();
  });
});

// ---------------------------------------------------------------------------
// Issue 14: each scenario failed on the earlier code
// ---------------------------------------------------------------------------

describe("ServerSentEventParser: maxEventSize counts bytes, not ignored lines", () => {
  const bytes = encoder.encode("data: é€😀x\ndata: ü\n\n"); // data: 13 bytes
  for (const [name, chunking] of chunkings) {
    test(`data of exactly the limit in bytes passes, one byte more throws (${name})`, () => {
      const events: ServerSentEvent[] = [];
      const atLimit = new ServerSentEventParser({
        onEvent: (e) => events.push(e),
        maxEventSize: 13,
      });
      for (const chunk of chunking(bytes)) atLimit.push(chunk);
      assert.deepEqual(events, [message("é€😀x\nü")]);
      const below = new ServerSentEventParser({
        onEvent() {},
        maxEventSize: 12,
      });
      assert.throws(
        () => {
          for (const chunk of chunking(bytes)) below.push(chunk);
        },
        (e) => e instanceof RangeError && /13 bytes/.test(e.message),
      );
    });
    test(`a long unknown field or comment split across chunks is neither kept nor counted (${name})`, () => {
      const events: ServerSentEvent[] = [];
      const parser = new ServerSentEventParser({
        onEvent: (e) => events.push(e),
        maxEventSize: 10,
      });
      const input = encoder.encode(
        `foo: ${"f".repeat(100)}\n: ${"c".repeat(100)}\ndata: a\n\n`,
      );
      for (const chunk of chunking(input)) parser.push(chunk);
      assert.deepEqual(events, [message("a")]);
    });
  }
  test("random multi-byte events in random chunks: the exact size passes, one byte less throws", () => {
    const next = random(14);
    const alphabet = ["a", "é", "€", "😀", " ", ":"];
    for (let round = 0; round < 200; round++) {
      const lines = Array.from(
        { length: 1 + Math.floor(next() * 3) },
        () =>
          Array.from(
            { length: Math.floor(next() * 6) },
            () => alphabet[Math.floor(next() * alphabet.length)],
          ).join(""),
      );
      const data = lines.join("\n");
      const size = encoder.encode(data).length;
      const input = encoder.encode(
        lines.map((l) => `data: ${l}\n`).join("") + "\n",
      );
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < input.length;) {
        const n = 1 + Math.floor(next() * 5);
        chunks.push(input.subarray(i, i + n));
        i += n;
      }
      const events: ServerSentEvent[] = [];
      const exact = new ServerSentEventParser({
        onEvent: (e) => events.push(e),
        maxEventSize: Math.max(size, 1),
      });
      for (const chunk of chunks) exact.push(chunk);
      assert.deepEqual(events, [message(data)], `round ${round}`);
      if (size > 1) {
        const less = new ServerSentEventParser({
          onEvent() {},
          maxEventSize: size - 1,
        });
        assert.throws(
          () => {
            for (const chunk of chunks) less.push(chunk);
          },
          RangeError,
          `round ${round}`,
        );
      }
    }
  });
  test("an unterminated multi-byte data line over the limit throws", () => {
    // Ten characters, twenty bytes, in chunks that cut the characters.
    const input = encoder.encode(`data: ${"é".repeat(10)}`);
    const parser = new ServerSentEventParser({
      onEvent() {},
      maxEventSize: 19,
    });
    assert.throws(() => {
      for (let i = 0; i < input.length; i += 3) {
        parser.push(input.subarray(i, i + 3));
      }
    }, (e) => e instanceof RangeError && /20 bytes/.test(e.message));
  });
});

describe("options are checked by the constructors", () => {
  const fetchNever = () => new Promise<Response>(() => {});
  const cases: [string, () => unknown, RegExp][] = [
    [
      "EventSource maxEventSize 0",
      () => new EventSource("http://127.0.0.1:1/", { maxEventSize: 0 }),
      /Invalid maxEventSize 0: expected a positive integer/,
    ],
    [
      "EventConsumer maxEventSize -5",
      () =>
        new EventConsumer(eventStreamResponse("data: a\n\n"), {
          maxEventSize: -5,
        }),
      /Invalid maxEventSize -5/,
    ],
    [
      "initialDelay -1",
      () =>
        new EventSource("http://127.0.0.1:1/", {
          reconnect: { initialDelay: -1 },
        }),
      /Invalid reconnect\.initialDelay -1: expected a finite number, 0 or more/,
    ],
    [
      "initialDelay NaN",
      () =>
        new EventSource("http://127.0.0.1:1/", {
          reconnect: { initialDelay: NaN },
        }),
      /Invalid reconnect\.initialDelay NaN/,
    ],
    [
      "factor NaN",
      () =>
        new EventSource("http://127.0.0.1:1/", {
          reconnect: { factor: NaN },
        }),
      /Invalid reconnect\.factor NaN: expected a finite number, 1 or more/,
    ],
    [
      "maxDelay -5",
      () =>
        new EventSource("http://127.0.0.1:1/", {
          reconnect: { maxDelay: -5 },
        }),
      /Invalid reconnect\.maxDelay -5/,
    ],
    [
      "jitter 2",
      () =>
        new EventSource("http://127.0.0.1:1/", { reconnect: { jitter: 2 } }),
      /Invalid reconnect\.jitter 2: expected a fraction from 0 to 1/,
    ],
    [
      "maxAttempts 0",
      () =>
        new EventSource("http://127.0.0.1:1/", {
          reconnect: { maxAttempts: 0 },
        }),
      /Invalid reconnect\.maxAttempts 0/,
    ],
    [
      "a ReadableStream body",
      () =>
        new EventSource("http://127.0.0.1:1/", {
          method: "POST",
          body: new ReadableStream(),
          fetch: fetchNever,
        }),
      /Invalid body \(a stream\): expected a body that can be sent again/,
    ],
    [
      "lastEventId with LF",
      () => new EventSource("http://127.0.0.1:1/", { lastEventId: "a\nb" }),
      /Invalid lastEventId "a\\nb": expected a string without CR, LF or NUL/,
    ],
    [
      "lastEventId with CR",
      () => new EventSource("http://127.0.0.1:1/", { lastEventId: "a\rb" }),
      /Invalid lastEventId "a\\rb"/,
    ],
    [
      "connectTimeout -1",
      () => new EventSource("http://127.0.0.1:1/", { connectTimeout: -1 }),
      /Invalid connectTimeout -1: expected a number of milliseconds/,
    ],
    [
      "EventConsumer idleTimeout NaN",
      () =>
        new EventConsumer(eventStreamResponse("data: a\n\n"), {
          idleTimeout: NaN,
        }),
      /Invalid idleTimeout NaN/,
    ],
    [
      "an invalid header name",
      () =>
        new EventSource("http://127.0.0.1:1/", {
          headers: { "bad header": "x" },
        }),
      /Invalid headers/,
    ],
    [
      "method TRACE",
      () => new EventSource("http://127.0.0.1:1/", { method: "TRACE" }),
      /Invalid method "TRACE"/,
    ],
    [
      "onReconnect not a function",
      () =>
        new EventSource("http://127.0.0.1:1/", {
          onReconnect: 5 as unknown as () => void,
        }),
      /Invalid onReconnect 5: expected a function/,
    ],
  ];
  for (const [name, construct, message] of cases) {
    test(name, () =>
      assert.throws(() => {
        // Should it not throw, what it made must not run on.
        (construct() as { close?(): void }).close?.();
      }, message));
  }
});

describe("EventConsumer: nothing is lost before the first read", () => {
  test("an await between creating and iterating loses no event", async () => {
    const consumer = new EventConsumer(
      eventStreamResponse("data: a\n\ndata: b\n\n"),
    );
    await Promise.resolve();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const seen: string[] = [];
    for await (const event of consumer) seen.push(event.data);
    assert.deepEqual(seen, ["a", "b"]);
  });
  test("waiting 50 ms before listening, against a real server, loses no event", async () => {
    const server = await serve(() => ({ body: "data: 1\n\ndata: 2\n\n" }));
    try {
      const consumer = new EventConsumer(await fetch(server.origin));
      await new Promise((resolve) => setTimeout(resolve, 50));
      const seen: string[] = [];
      consumer.addEventListener("message", (e) => seen.push(e.data));
      if (!consumer.closed) await nextEvent(consumer, "close");
      assert.deepEqual(seen, ["1", "2"]);
    } finally {
      await server.close();
    }
  });
  test("an idle timeout fails a silent stream with a TimeoutError", async () => {
    const body = controlledBody();
    const consumer = new EventConsumer(eventStreamResponse(body.body), {
      idleTimeout: 30,
    });
    const error = nextEvent<EventStreamErrorEvent>(consumer, "error");
    const close = nextEvent<CloseEvent>(consumer, "close");
    body.send("data: a\n\n");
    const event = await error;
    assert.equal((event.error as Error).name, "TimeoutError");
    assert.match(event.message, /no bytes for 30 ms/);
    assert.equal((await close).wasClean, false);
    await body.cancelled;
  });
});

describe("EventSource: nothing can crash the host", () => {
  test("a throwing onReconnect is an error event and reconnection goes on", async () => {
    let fetches = 0;
    const errors: EventStreamErrorEvent[] = [];
    const second = deferred();
    const source = new EventSource("https://api.example/stream", {
      reconnect: { initialDelay: 1 },
      fetch: () => {
        if (++fetches === 2) second.resolve();
        return Promise.resolve(eventStreamResponse("data: a\n\n"));
      },
      onReconnect: () => {
        throw new Error("hook failed");
      },
    });
    source.addEventListener("error", (e) => errors.push(e));
    await second.promise;
    source.close();
    assert.ok(errors.some((e) => (e.error as Error).message === "hook failed"));
    assert.equal(
      errors.find((e) =>
        e.error instanceof Error && e.error.message === "hook failed"
      )?.message,
      "hook failed",
    );
  });
  test("maxEventSize over the limit fails the connection without a rejection", async () => {
    const source = new EventSource("https://api.example/stream", {
      maxEventSize: 4,
      fetch: () => Promise.resolve(eventStreamResponse("data: 12345\n\n")),
    });
    const error = await nextEvent<EventStreamErrorEvent>(source, "error");
    assert.ok(error.error instanceof RangeError);
    assert.equal(source.readyState, EventSource.CLOSED);
  });
});

describe("EventSource: close() and timeouts", () => {
  test("close() cancels the body even when fetch ignores the abort signal", async () => {
    const body = controlledBody();
    const source = new EventSource("https://api.example/stream", {
      // Ignores init.signal, as test doubles and caches do.
      fetch: () => Promise.resolve(eventStreamResponse(body.body)),
    });
    await nextEvent(source, "open");
    body.send("data: a\n\n");
    await nextEvent(source, "message");
    source.close();
    await body.cancelled;
    assert.equal(body.body.locked, true);
  });
  test("a response arriving after close() is cancelled", async () => {
    const body = controlledBody();
    const answer = deferred<Response>();
    const source = new EventSource("https://api.example/stream", {
      fetch: () => answer.promise,
    });
    await new Promise((resolve) => setTimeout(resolve, 0));
    source.close();
    answer.resolve(eventStreamResponse(body.body));
    await body.cancelled;
  });
  test("connectTimeout: no headers in time is a failed attempt (error, then a reconnection)", async () => {
    const signals: AbortSignal[] = [];
    const reconnections: ScheduledReconnection[] = [];
    const second = deferred();
    const source = new EventSource("https://api.example/stream", {
      connectTimeout: 20,
      reconnect: { initialDelay: 1, jitter: 0 },
      fetch: (_url, init) => {
        signals.push(init.signal!);
        if (signals.length === 2) second.resolve();
        return new Promise<Response>(() => {}); // never answers
      },
      onReconnect: (r) => reconnections.push(r),
    });
    const error = await nextEvent<EventStreamErrorEvent>(source, "error");
    assert.equal((error.error as Error).name, "TimeoutError");
    assert.match(error.message, /no response within 20 ms/);
    assert.equal(error.status, undefined);
    assert.equal(source.readyState, EventSource.CONNECTING);
    assert.equal(signals[0]!.aborted, true);
    await second.promise;
    source.close();
    assert.equal(reconnections[0]!.failures, 1);
  });
  test("idleTimeout: a silent open stream is dropped and reconnected", async () => {
    const server = await serve(() => ({ body: "data: a\n\n", hold: true }));
    try {
      const source = new EventSource(server.origin, {
        idleTimeout: 50,
        reconnect: { initialDelay: 1 },
      });
      await nextEvent(source, "message");
      const error = await nextEvent<EventStreamErrorEvent>(source, "error");
      assert.equal((error.error as Error).name, "TimeoutError");
      assert.match(error.message, /no bytes for 50 ms/);
      assert.equal(source.readyState, EventSource.CONNECTING);
      await nextEvent(source, "open");
      source.close();
      assert.equal(server.requests.length, 2);
    } finally {
      await server.close();
    }
  });
  test("an abort through signal: CLOSED and exactly one error event", async () => {
    const server = await serve(() => ({ body: "data: a\n\n", hold: true }));
    try {
      const controller = new AbortController();
      const source = new EventSource(server.origin, {
        signal: controller.signal,
      });
      const errors: EventStreamErrorEvent[] = [];
      source.addEventListener("error", (e) => errors.push(e));
      await nextEvent(source, "message");
      controller.abort(new Error("user left"));
      assert.equal(source.readyState, EventSource.CLOSED);
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(errors.length, 1);
      assert.equal((errors[0]!.error as Error).message, "user left");
    } finally {
      await server.close();
    }
  });
  test("an already aborted signal: CLOSED, no fetch, one error event", async () => {
    let fetched = 0;
    const source = new EventSource("http://127.0.0.1:1/", {
      signal: AbortSignal.abort(),
      fetch: () => {
        fetched++;
        return Promise.reject(new Error("unreachable"));
      },
    });
    assert.equal(source.readyState, EventSource.CLOSED);
    const errors: Event[] = [];
    source.addEventListener("error", (e) => errors.push(e));
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(source.readyState, EventSource.CLOSED);
    assert.equal(fetched, 0);
    assert.equal(errors.length, 1);
  });
});

describe("EventSource: typed errors and event handler attributes", () => {
  test("error events carry status and message, typed (e.message compiles)", async () => {
    const source = new EventSource("https://api.example/stream", {
      fetch: () =>
        Promise.resolve(eventStreamResponse("busy", { status: 503 })),
    });
    const seen: [number | undefined, string][] = [];
    source.onerror = (e) => seen.push([e.status, e.message]);
    const error = await nextEvent<EventStreamErrorEvent>(source, "error");
    assert.ok(error instanceof EventStreamErrorEvent);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]![0], 503);
    assert.match(seen[0]![1], /answered status 503: expected 200/);
  });
  test("setting a handler to null removes it; a new one is added last; replacing keeps the place", () => {
    const source = new EventSource("http://127.0.0.1:1/", {
      signal: AbortSignal.abort(),
    });
    const order: string[] = [];
    source.onmessage = () => order.push("first");
    source.addEventListener("message", () => order.push("listener"));
    source.onmessage = () => order.push("replaced");
    source.dispatchEvent(new MessageEvent("message", { data: "x" }));
    assert.deepEqual(order, ["replaced", "listener"]);
    order.length = 0;
    source.onmessage = null;
    assert.equal(source.onmessage, null);
    source.dispatchEvent(new MessageEvent("message", { data: "x" }));
    assert.deepEqual(order, ["listener"]);
    order.length = 0;
    source.onmessage = () => order.push("again");
    source.dispatchEvent(new MessageEvent("message", { data: "x" }));
    assert.deepEqual(order, ["listener", "again"]);
  });
});

describe("the unhandled-rejection trap", () => {
  test("nothing went unhandled in this file", async () => {
    await assertNoUnhandledRejections();
  });
});
