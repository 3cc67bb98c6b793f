/**
 * Parse benchmarks: bytes of an event stream in, events out.
 *
 * Per case (see `_cases.ts`) one group with the floor as baseline: a
 * streaming `TextDecoder` pass plus a newline scan over the same chunks. Each
 * parser's event count and data length are checked once before timing, so a
 * parser that silently parses nothing cannot post a fast time.
 *
 * Run: `deno bench -A bench/parse_bench.ts`, `bun bench/parse_bench.ts`,
 * `node bench/parse_bench.ts` (or all of them: `node bench/run.ts`).
 *
 * @module
 */

import {
  benchGroup,
  type GroupBench,
  quick,
  selected,
  selectedName,
} from "./_adapter.ts";
import { type ParseCase, parseCases, parseFloor } from "./_cases.ts";
import { loadSsekit } from "./_ssekit.ts";
import { createParser } from "eventsource-parser";
import { EventSourceParserStream } from "eventsource-parser/stream";
import { EventConsumer } from "@ayonli/jsext/sse";

/** Events seen and the sum of their data lengths. */
interface Tally {
  events: number;
  dataLength: number;
}

type Parse = (c: ParseCase) => Tally | Promise<Tally>;

function source(
  chunks: Uint8Array<ArrayBuffer>[],
): ReadableStream<Uint8Array<ArrayBuffer>> {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      const chunk = chunks[i++];
      if (chunk) controller.enqueue(chunk);
      else controller.close();
    },
  });
}

/** The floor ({@linkcode parseFloor}) in the parsers' tally. */
function floor(c: ParseCase): Tally {
  const { lines, chars } = parseFloor(c);
  // Not events: the floor reports lines, checked against a plain count below.
  return { events: lines, dataLength: chars };
}

/** What a parser hands out per event: the fields every parser here gives. */
interface FloorEvent {
  type: string;
  data: string;
  lastEventId: string;
}

/**
 * The least any parser must do that hands out events: the floor's decode and
 * newline scan, plus, per event, the strings of its fields and one object.
 * It checks nothing the spec asks (it knows the corpora: LF line ends,
 * `data: `, `id: ` and `event: ` with one space, no other field), so no
 * parser can beat it; on small events it alone costs about twice the floor
 * (see DEVELOPERS.md), which bounds the parsers' targets there.
 *
 * Returns what takes each decoded text; `emit` gets every event.
 */
function eventsFloor(
  emit: (event: FloorEvent) => void,
): (text: string) => void {
  /** The start of a line whose end has not arrived. */
  let pending = "";
  /** Whether `pending` is a data line's value (`data: ` left out). */
  let pendingData = false;
  let type = "";
  let id = "";
  let data: string | undefined;
  const appendData = (value: string): void => {
    data = data === undefined ? value : data + "\n" + value;
  };
  const line = (text: string, start: number, end: number): void => {
    if (start === end) {
      if (data !== undefined) {
        emit({ type: type || "message", data, lastEventId: id });
      }
      data = undefined;
      type = "";
      return;
    }
    const first = text.charCodeAt(start);
    if (first === 0x64) appendData(text.slice(start + 6, end)); // data
    else if (first === 0x69) id = text.slice(start + 4, end);
    else type = text.slice(start + 7, end);
  };
  return (text) => {
    let position = 0;
    let lf = text.indexOf("\n");
    if (lf !== -1 && (pending !== "" || pendingData)) {
      const rest = text.slice(0, lf);
      if (pendingData) appendData(pending + rest);
      else {
        const whole = pending + rest;
        line(whole, 0, whole.length);
      }
      pending = "";
      pendingData = false;
      position = lf + 1;
      lf = text.indexOf("\n", position);
    }
    for (; lf !== -1; position = lf + 1, lf = text.indexOf("\n", position)) {
      if (
        data === undefined && text.charCodeAt(position) === 0x64 &&
        text.charCodeAt(lf + 1) === 10
      ) {
        // A one-line event: dispatched without holding its data.
        emit({
          type: type || "message",
          data: text.slice(position + 6, lf),
          lastEventId: id,
        });
        type = "";
        lf++;
      } else line(text, position, lf);
    }
    if (position === text.length) return;
    if (pending === "" && !pendingData && text.startsWith("data: ", position)) {
      // A data line goes on in the next text: keep its value only.
      pendingData = true;
      pending = text.slice(position + 6);
    } else pending += position === 0 ? text : text.slice(position);
  };
}

/**
 * {@linkcode eventsFloor} (or `floor`, e.g. {@linkcode specFloor}) over the
 * case's chunks. With `searchCR`, also one search of each text for CR, which a
 * spec-exact parser needs since CR ends lines too (the corpora hold none:
 * finding one throws).
 */
function floorEvents(
  c: ParseCase,
  searchCR = false,
  floor: typeof eventsFloor = eventsFloor,
): Tally {
  const tally = { events: 0, dataLength: 0 };
  const feed = floor((event) => {
    tally.events++;
    tally.dataLength += event.data.length;
  });
  const decoder = new TextDecoder();
  for (const chunk of c.chunks) {
    const text = decoder.decode(chunk, { stream: true });
    if (searchCR && text.indexOf("\r") !== -1) {
      throw new Error(`${c.group}: a CR in a corpus without line ends but LF`);
    }
    feed(text);
  }
  return tally;
}

/** The index after a field's colon, past one space if there is one. */
function afterSpace(text: string, start: number, end: number): number {
  return start < end && text.charCodeAt(start) === 0x20 ? start + 1 : start;
}

/** Whether the line at `at` starts with `data:`. */
function isData(text: string, at: number): boolean {
  return text.charCodeAt(at) === 0x64 && text.charCodeAt(at + 1) === 0x61 &&
    text.charCodeAt(at + 2) === 0x74 && text.charCodeAt(at + 3) === 0x61 &&
    text.charCodeAt(at + 4) === 0x3a;
}

/** Whether the line at `at` starts with `id:`. */
function isId(text: string, at: number): boolean {
  return text.charCodeAt(at) === 0x69 && text.charCodeAt(at + 1) === 0x64 &&
    text.charCodeAt(at + 2) === 0x3a;
}

/** Whether the line at `at` starts with `event:`. */
function isEvent(text: string, at: number): boolean {
  return text.charCodeAt(at) === 0x65 && text.charCodeAt(at + 1) === 0x76 &&
    text.charCodeAt(at + 2) === 0x65 && text.charCodeAt(at + 3) === 0x6e &&
    text.charCodeAt(at + 4) === 0x74 && text.charCodeAt(at + 5) === 0x3a;
}

/**
 * {@linkcode eventsFloor} plus only the checks the spec forces on the
 * corpora's lines, in the same plain loop: each field name matched whole with
 * its colon, at most one space after it, one search of each text for CR (a
 * line end too) and one for U+0000 (an `id` holding it is ignored). It knows
 * nothing else a parser must (CR line ends, a BOM, other fields, comments, a
 * size limit): it throws on any of them. Not a target's floor: it shows what
 * the spec's checks alone cost over the events floor (see DEVELOPERS.md).
 */
function specFloor(
  emit: (event: FloorEvent) => void,
): (text: string) => void {
  /** The start of a line whose end has not arrived. */
  let pending = "";
  let type = "";
  let id = "";
  let data: string | undefined;
  /** Whether the text being read holds U+0000. */
  let nul = false;
  const line = (text: string, start: number, end: number): void => {
    if (start === end) {
      if (data !== undefined) {
        emit({ type: type || "message", data, lastEventId: id });
      }
      data = undefined;
      type = "";
    } else if (isData(text, start)) {
      const value = text.slice(afterSpace(text, start + 5, end), end);
      data = data === undefined ? value : data + "\n" + value;
    } else if (isId(text, start)) {
      const value = text.slice(afterSpace(text, start + 3, end), end);
      if (!nul || value.indexOf("\0") === -1) id = value;
    } else if (isEvent(text, start)) {
      type = text.slice(afterSpace(text, start + 6, end), end);
    } else throw new Error("floor (spec): a line it does not know");
  };
  return (text) => {
    if (text.indexOf("\r") !== -1) throw new Error("floor (spec): a CR");
    nul = text.indexOf("\0") !== -1;
    let position = 0;
    let lf = text.indexOf("\n");
    if (lf !== -1 && pending !== "") {
      const whole = pending + text.slice(0, lf);
      pending = "";
      line(whole, 0, whole.length);
      position = lf + 1;
      lf = text.indexOf("\n", position);
    }
    for (; lf !== -1; position = lf + 1, lf = text.indexOf("\n", position)) {
      if (
        data === undefined && isData(text, position) && lf + 1 < text.length &&
        text.charCodeAt(lf + 1) === 10
      ) {
        // A one-line event, dispatched without holding its data.
        emit({
          type: type || "message",
          data: text.slice(afterSpace(text, position + 5, lf), lf),
          lastEventId: id,
        });
        type = "";
        lf++;
      } else line(text, position, lf);
    }
    if (position < text.length) {
      pending += position === 0 ? text : text.slice(position);
    }
  };
}

/**
 * {@linkcode eventsFloor} as a stream: the stream floor's chunks and
 * `for await`, with the events that every parser stream must build (`wrap`
 * turns each into what the stream yields).
 */
async function floorEventsStream(
  c: ParseCase,
  wrap: (event: FloorEvent) => { data: string } = (event) => event,
): Promise<Tally> {
  const tally = { events: 0, dataLength: 0 };
  const decoder = new TextDecoder();
  let feed: (text: string) => void;
  const events = source(c.chunks).pipeThrough(
    new TransformStream<Uint8Array, { data: string }>({
      start(controller) {
        feed = eventsFloor((event) => controller.enqueue(wrap(event)));
      },
      transform(chunk) {
        feed(decoder.decode(chunk, { stream: true }));
      },
    }),
  );
  for await (const event of events) {
    tally.events++;
    tally.dataLength += event.data.length;
  }
  return tally;
}

/** Stands for every event the stream floor emits (it parses nothing). */
const NO_EVENT = { type: "message", data: "", lastEventId: "" };

/**
 * What a stream of events costs before any parsing: the floor's decode and
 * newline scan inside a `TransformStream` that emits one prebuilt object per
 * blank line, read with `for await` as the parser streams are. No parser
 * stream can beat it, so it bounds what the stream targets can reach.
 */
async function floorStream(c: ParseCase): Promise<number> {
  const decoder = new TextDecoder();
  let afterNewline = false;
  const events = source(c.chunks).pipeThrough(
    new TransformStream<Uint8Array, unknown>({
      transform(chunk, controller) {
        const text = decoder.decode(chunk, { stream: true });
        for (
          let i = text.indexOf("\n");
          i !== -1;
          i = text.indexOf("\n", i + 1)
        ) {
          if (i === 0 ? afterNewline : text.charCodeAt(i - 1) === 10) {
            controller.enqueue(NO_EVENT);
          }
        }
        if (text.length > 0) {
          afterNewline = text.charCodeAt(text.length - 1) === 10;
        }
      },
    }),
  );
  let count = 0;
  for await (const _ of events) count++;
  return count;
}

/**
 * The events stream floor where each event is a new `MessageEvent`: what any
 * consumer that yields `MessageEvent`s, as `EventConsumer` and `EventSource`
 * do, pays before the spec's checks. Creating one costs more than the stream
 * floor's whole work per small event on Bun and Node (see DEVELOPERS.md), so
 * `EventConsumer`'s target reads this floor.
 */
function floorMessageEventStream(c: ParseCase): Promise<Tally> {
  return floorEventsStream(
    c,
    (event) =>
      new MessageEvent(event.type, {
        data: event.data,
        lastEventId: event.lastEventId,
        origin: "",
      }),
  );
}

function eventsourceParser(c: ParseCase): Tally {
  const tally = { events: 0, dataLength: 0 };
  const parser = createParser({
    onEvent(event) {
      tally.events++;
      tally.dataLength += event.data.length;
    },
  });
  const decoder = new TextDecoder();
  for (const chunk of c.chunks) {
    parser.feed(decoder.decode(chunk, { stream: true }));
  }
  return tally;
}

async function eventsourceParserStream(c: ParseCase): Promise<Tally> {
  const tally = { events: 0, dataLength: 0 };
  const events = source(c.chunks)
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream());
  for await (const event of events) {
    tally.events++;
    tally.dataLength += event.data.length;
  }
  return tally;
}

function jsextConsumer(c: ParseCase): Promise<Tally> {
  const tally = { events: 0, dataLength: 0 };
  const response = new Response(source(c.chunks), {
    headers: { "content-type": "text/event-stream" },
  });
  const consumer = new EventConsumer(response);
  consumer.addEventListener(c.eventType, (event: MessageEvent<string>) => {
    tally.events++;
    tally.dataLength += event.data.length;
  });
  return new Promise((resolve) => {
    consumer.addEventListener("close", () => resolve(tally));
  });
}

const ssekit = await loadSsekit();
const parsers: [string, Parse][] = [
  ["eventsource-parser", eventsourceParser],
  ["eventsource-parser (stream)", eventsourceParserStream],
  ["jsext EventConsumer", jsextConsumer],
];

const Parser = ssekit.ServerSentEventParser;
if (Parser) {
  parsers.push(["ssekit ServerSentEventParser", (c) => {
    const tally = { events: 0, dataLength: 0 };
    const parser = new Parser({
      onEvent(event) {
        tally.events++;
        tally.dataLength += event.data.length;
      },
    });
    for (const chunk of c.chunks) parser.push(chunk);
    parser.end();
    return tally;
  }]);
}
const Consumer = ssekit.EventConsumer;
if (Consumer) {
  // What an LLM client writes: `for await` over a consumer of the response.
  parsers.push(["ssekit EventConsumer", async (c) => {
    const tally = { events: 0, dataLength: 0 };
    const response = new Response(source(c.chunks), {
      headers: { "content-type": "text/event-stream" },
    });
    for await (const event of new Consumer(response)) {
      tally.events++;
      tally.dataLength += event.data.length;
    }
    return tally;
  }]);
}
const ParserStream = ssekit.ServerSentEventParserStream;
if (ParserStream) {
  parsers.push(["ssekit ServerSentEventParserStream", async (c) => {
    const tally = { events: 0, dataLength: 0 };
    for await (
      const event of source(c.chunks).pipeThrough(new ParserStream())
    ) {
      if ("data" in event) {
        tally.events++;
        tally.dataLength += event.data.length;
      }
    }
    return tally;
  }]);
}

/**
 * jsext re-splits its whole buffer on every chunk, so one 8 MiB line in 1 KiB
 * chunks costs it tens of seconds per pass; it is left out of that case.
 */
function skip(name: string, c: ParseCase): boolean {
  return name === "jsext EventConsumer" && c.group.includes("MiB-line");
}

function newlines(bytes: Uint8Array): number {
  let n = 0;
  for (const b of bytes) if (b === 10) n++;
  return n;
}

/** Throws unless a floor that builds events built them all, with all data. */
function expectEvents(c: ParseCase, name: string, tally: Tally): void {
  if (tally.events !== c.events || tally.dataLength !== c.dataLength) {
    throw new Error(
      `${c.group}: ${name} gave ${tally.events} events of ${tally.dataLength} data, expected ${c.events} of ${c.dataLength}`,
    );
  }
}

for (const c of parseCases({ quick }).filter((c) => selected(c.group))) {
  // Each bench is checked in the process that times it, and only it runs
  // there when run.ts asks for one (SSEKIT_BENCH_NAME).
  if (selectedName("floor")) {
    const expectedLines = newlines(c.bytes);
    const got = floor(c);
    if (got.events !== expectedLines) {
      throw new Error(
        `${c.group}: floor counted ${got.events} newlines, expected ${expectedLines}`,
      );
    }
  }
  if (selectedName("floor (stream)")) {
    const streamEvents = await floorStream(c);
    if (streamEvents !== c.events) {
      throw new Error(
        `${c.group}: floor (stream) emitted ${streamEvents} events, expected ${c.events}`,
      );
    }
  }
  if (selectedName("floor (events)")) {
    expectEvents(c, "floor (events)", floorEvents(c));
  }
  if (selectedName("floor (events, CR)")) {
    expectEvents(c, "floor (events, CR)", floorEvents(c, true));
  }
  if (selectedName("floor (spec)")) {
    expectEvents(c, "floor (spec)", floorEvents(c, false, specFloor));
  }
  if (selectedName("floor (events, stream)")) {
    expectEvents(c, "floor (events, stream)", await floorEventsStream(c));
  }
  if (selectedName("floor (MessageEvent stream)")) {
    expectEvents(
      c,
      "floor (MessageEvent stream)",
      await floorMessageEventStream(c),
    );
  }
  const benches: GroupBench[] = [{
    name: "floor",
    group: c.group,
    baseline: true,
    fn() {
      floor(c);
    },
  }, {
    name: "floor (events)",
    group: c.group,
    fn() {
      floorEvents(c);
    },
  }, {
    name: "floor (events, CR)",
    group: c.group,
    fn() {
      floorEvents(c, true);
    },
  }, {
    name: "floor (spec)",
    group: c.group,
    fn() {
      floorEvents(c, false, specFloor);
    },
  }, {
    name: "floor (stream)",
    group: c.group,
    async fn() {
      await floorStream(c);
    },
  }, {
    name: "floor (events, stream)",
    group: c.group,
    async fn() {
      await floorEventsStream(c);
    },
  }, {
    name: "floor (MessageEvent stream)",
    group: c.group,
    async fn() {
      await floorMessageEventStream(c);
    },
  }];
  for (const [name, parse] of parsers) {
    if (skip(name, c) || !selectedName(name)) continue;
    const tally = await parse(c);
    if (tally.events !== c.events) {
      throw new Error(
        `${c.group}: ${name} dispatched ${tally.events} events, expected ${c.events}`,
      );
    }
    if (tally.dataLength !== c.dataLength) {
      // Counted right but mangled data (e.g. UTF-8 split across chunks).
      console.error(
        `warning: ${c.group}: ${name} data length ${tally.dataLength}, expected ${c.dataLength}`,
      );
    }
    benches.push({
      name,
      group: c.group,
      async fn() {
        await parse(c);
      },
    });
  }
  await benchGroup(benches);
}
