/**
 * Client side of ssekit: the event-stream parser, `EventConsumer` and
 * `EventSource`.
 *
 * - {@linkcode ServerSentEventParser}: a low-level push parser (bytes in,
 *   callbacks out) implementing the WHATWG HTML algorithm
 *   "Interpreting an event stream" exactly, in linear time and bounded memory.
 * - {@linkcode ServerSentEventParserStream}: the same parser as a
 *   `TransformStream` of bytes to parsed events and `retry` changes.
 * - {@linkcode EventConsumer}: reads one `Response` body as an event stream and
 *   dispatches `MessageEvent`s (API compatible with `@ayonli/jsext/sse`).
 * - {@linkcode EventSource}: the WHATWG `EventSource`, plus fetch options
 *   (method, headers, body, signal, custom fetch) and a reconnect policy.
 *
 * This file imports nothing, so it can be vendored on its own.
 *
 * @example Parse a byte stream
 * ```ts
 * import { ServerSentEventParserStream } from "@ssekit/sse/client";
 * import { deepStrictEqual as assertEquals } from "node:assert/strict";
 *
 * const body = new Response("event: greet\ndata: hello\n\n").body!;
 * const chunks = await Array.fromAsync(
 *   body.pipeThrough(new ServerSentEventParserStream()),
 * );
 * assertEquals(chunks, [{ type: "greet", data: "hello", lastEventId: "" }]);
 * ```
 *
 * @module
 */

/** An event dispatched from an event stream. */
export interface ServerSentEvent {
  /** The event type: the last `event` field of the block, or `"message"`. */
  type: string;
  /** The event data: every `data` field of the block, joined with `"\n"`. */
  data: string;
  /**
   * The stream's last event ID when this event was dispatched: the last `id`
   * field seen so far on the stream (it persists across events), or `""`.
   */
  lastEventId: string;
}

/** The server changed the reconnection time with a `retry` field. */
export interface ReconnectionTimeChange {
  /**
   * The new reconnection time in milliseconds, as the server sent it (a
   * non-negative integer; `Infinity` when the digits overflow a double).
   */
  retry: number;
}

/**
 * What {@linkcode ServerSentEventParserStream} emits, in stream order: an
 * event, or a change of the reconnection time. Tell them apart with
 * `"retry" in chunk`.
 */
export type ParsedEventStreamChunk = ServerSentEvent | ReconnectionTimeChange;

/** Options of {@linkcode ServerSentEventParser}. */
export interface ServerSentEventParserOptions {
  /** Called for every dispatched event, in stream order. */
  onEvent(event: ServerSentEvent): void;
  /**
   * Called when a `retry` field consisting only of ASCII digits sets the
   * reconnection time (in milliseconds).
   */
  onRetry?(milliseconds: number): void;
  /**
   * Called for every comment line (a line starting with `:`), with the text
   * after the colon minus one leading space, if any.
   */
  onComment?(text: string): void;
  /**
   * The largest event the parser buffers, in UTF-16 code units (one per byte
   * for ASCII): the pending unterminated line plus the data buffer. A stream
   * that exceeds it makes {@linkcode ServerSentEventParser.push} throw a
   * `RangeError` instead of growing memory without bound.
   *
   * @default {16777216} (16 MiB)
   */
  maxEventSize?: number;
  /**
   * The last event ID to start from, for example the one a previous
   * connection ended with.
   *
   * @default {""}
   */
  lastEventId?: string;
}

const DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024;
const LF = 10;
const COLON = 58;
const SPACE = 32;

/**
 * A push parser of the `text/event-stream` format: feed it bytes with
 * {@linkcode ServerSentEventParser.push}, it calls your callbacks.
 *
 * It implements the WHATWG HTML algorithm
 * {@link https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation | "Interpreting an event stream"}:
 * UTF-8 decoding with U+FFFD replacement and one leading BOM stripped; CR, LF
 * and CRLF line ends (also split across chunks); comments; a field without a
 * colon (its value is `""`); one space after the colon removed and nothing
 * else trimmed; unknown fields and differently-cased names ignored; `id`
 * values containing U+0000 ignored; `retry` only when all ASCII digits; a
 * block without `data` dispatches nothing (but still commits its `id` and
 * resets the event type); the data's last LF removed; an unterminated event
 * at the end of the stream discarded.
 *
 * Time is linear in the input (a partial line grows by concatenation, which
 * the engine keeps as a rope, not a copy; a `data:` line's value is never
 * copied by the parser at all) and memory is bounded by
 * {@linkcode ServerSentEventParserOptions.maxEventSize}.
 *
 * Malformed input never throws. Only exceeding `maxEventSize` does: `push()`
 * throws a `RangeError`, and every later `push()` or `end()` throws it again.
 * Exceptions thrown by your callbacks propagate out of `push()`; the rest of
 * that chunk is then lost.
 *
 * @example Usage
 * ```ts
 * import { ServerSentEventParser, type ServerSentEvent } from "@ssekit/sse/client";
 * import { deepStrictEqual as assertEquals } from "node:assert/strict";
 *
 * const events: ServerSentEvent[] = [];
 * const parser = new ServerSentEventParser({ onEvent: (e) => events.push(e) });
 * const bytes = new TextEncoder().encode("id: 7\ndata: a\ndata: b\n\n");
 * parser.push(bytes.subarray(0, 9)); // chunks may split anything
 * parser.push(bytes.subarray(9));
 * parser.end();
 * assertEquals(events, [{ type: "message", data: "a\nb", lastEventId: "7" }]);
 * assertEquals(parser.lastEventId, "7");
 * ```
 */
export class ServerSentEventParser {
  #onEvent: (event: ServerSentEvent) => void;
  #onRetry: ((milliseconds: number) => void) | undefined;
  #onComment: ((text: string) => void) | undefined;
  #maxEventSize: number;
  #decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  /** Whether the first decoded character (a possible BOM) is still ahead. */
  #atStreamStart = true;
  /** The previous text ended with CR: an LF starting the next one is part of that line end. */
  #skipLeadingLF = false;
  /**
   * The current, not yet terminated line; or, when `#pendingDataPrefix` is
   * not 0, the value so far of a `data:` line whose name, colon and optional
   * space (that many characters) are already consumed. Never empty while a
   * line is pending.
   */
  #pending = "";
  #pendingDataPrefix = 0;
  #data = "";
  #hasData = false;
  #eventType = "";
  #lastEventIdBuffer: string;
  #lastEventId: string;
  #error: RangeError | undefined;

  /**
   * Creates a parser that reports to the given callbacks.
   *
   * @param options The callbacks and limits.
   */
  constructor(options: ServerSentEventParserOptions) {
    this.#onEvent = options.onEvent;
    this.#onRetry = options.onRetry;
    this.#onComment = options.onComment;
    const max = options.maxEventSize ?? DEFAULT_MAX_EVENT_SIZE;
    if (!(max > 0)) {
      throw new RangeError(
        `maxEventSize must be a positive number, got ${max}`,
      );
    }
    this.#maxEventSize = max;
    this.#lastEventId = this.#lastEventIdBuffer = options.lastEventId ?? "";
  }

  /**
   * The stream's last event ID string: the ID committed by the last block
   * that ended (with or without data), or the starting value.
   */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /**
   * Feeds the next bytes of the stream. Chunks may split lines, line ends and
   * UTF-8 sequences anywhere.
   *
   * @param chunk The bytes.
   * @throws {RangeError} When the pending line plus the data buffer exceed
   * `maxEventSize`.
   */
  push(chunk: Uint8Array): void {
    if (this.#error) throw this.#error;
    this.#feed(this.#decoder.decode(chunk, { stream: true }));
  }

  /**
   * Ends the stream: flushes the decoder and discards an unterminated line
   * and an event whose blank line never came, as the spec requires. The
   * parser is then ready for a new stream (a reconnection); its last event ID
   * carries over.
   *
   * @throws {RangeError} When an earlier `push()` exceeded `maxEventSize`.
   */
  end(): void {
    if (this.#error) throw this.#error;
    // A truncated UTF-8 sequence becomes U+FFFD, which can only extend the
    // unterminated line that is discarded below.
    this.#decoder.decode();
    this.#atStreamStart = true;
    this.#skipLeadingLF = false;
    this.#pending = "";
    this.#pendingDataPrefix = 0;
    this.#data = "";
    this.#hasData = false;
    this.#eventType = "";
    this.#lastEventIdBuffer = this.#lastEventId;
  }

  #feed(text: string): void {
    const length = text.length;
    if (length === 0) return;
    let position = 0;
    if (this.#atStreamStart) {
      this.#atStreamStart = false;
      if (text.charCodeAt(0) === 0xfeff) position = 1;
    }
    if (this.#skipLeadingLF) {
      this.#skipLeadingLF = false;
      if (text.charCodeAt(position) === LF) position++;
    }
    // Both searches run forward only, so each character is scanned at most
    // once per kind of line end, whatever the line lengths.
    let nextLF = text.indexOf("\n", position);
    let nextCR = text.indexOf("\r", position);
    while (position < length) {
      if (nextCR === -1 && this.#pending.length === 0) {
        position = this.#lfOnlyLines(text, position);
        break;
      }
      if (nextLF !== -1 && nextLF < position) {
        nextLF = text.indexOf("\n", position);
      }
      if (nextCR !== -1 && nextCR < position) {
        nextCR = text.indexOf("\r", position);
      }
      let lineEnd: number;
      let next: number;
      if (nextCR === -1 || (nextLF !== -1 && nextLF < nextCR)) {
        if (nextLF === -1) break;
        lineEnd = nextLF;
        next = nextLF + 1;
      } else {
        lineEnd = nextCR;
        next = nextCR + 1;
        if (next === length) this.#skipLeadingLF = true;
        else if (text.charCodeAt(next) === LF) next++;
      }
      if (this.#pending.length === 0) {
        this.#line(text, position, lineEnd);
      } else {
        this.#endPendingLine(text.slice(position, lineEnd));
      }
      position = next;
    }
    if (position < length) this.#keepPendingLine(text, position);
  }

  /** Keeps `text` from `position` on: the start or more of a line. */
  #keepPendingLine(text: string, position: number): void {
    if (this.#pending.length > 0) {
      this.#pending += position === 0 ? text : text.slice(position);
    } else {
      // A data line keeps only its value, so its end needs no copy to strip
      // the name (the usual long line is data).
      const prefix = dataPrefixLength(text, position);
      this.#pendingDataPrefix = prefix;
      this.#pending = position + prefix === 0
        ? text
        : text.slice(position + prefix);
    }
    this.#checkSize(
      this.#pendingDataPrefix + this.#pending.length + this.#data.length,
    );
  }

  /** Ends the pending line with `rest`, its part in the current text. */
  #endPendingLine(rest: string): void {
    const line = this.#pending + rest;
    const isData = this.#pendingDataPrefix !== 0;
    this.#pending = "";
    this.#pendingDataPrefix = 0;
    if (isData) this.#appendData(line);
    else this.#line(line, 0, line.length);
  }

  /**
   * The hot path for the usual CR-free text: processes every LF-terminated
   * line from `position` and returns where the unterminated rest starts.
   * Data lines and single-line events are handled inline.
   */
  #lfOnlyLines(text: string, position: number): number {
    let lf = text.indexOf("\n", position);
    while (lf !== -1) {
      const first = text.charCodeAt(position);
      if (lf === position) {
        this.#dispatch();
      } else if (
        first === 105 && // i
        text.charCodeAt(position + 1) === 100 && // d
        text.charCodeAt(position + 2) === COLON
      ) {
        // Inlined `id:` (the generic #line path costs a call and a switch).
        const value = text.slice(
          text.charCodeAt(position + 3) === SPACE ? position + 4 : position + 3,
          lf,
        );
        if (value.indexOf("\0") === -1) this.#lastEventIdBuffer = value;
      } else if (
        first === 101 && // e
        text.charCodeAt(position + 1) === 118 && // v
        text.charCodeAt(position + 2) === 101 && // e
        text.charCodeAt(position + 3) === 110 && // n
        text.charCodeAt(position + 4) === 116 && // t
        text.charCodeAt(position + 5) === COLON
      ) {
        this.#eventType = text.slice(
          text.charCodeAt(position + 6) === SPACE ? position + 7 : position + 6,
          lf,
        );
      } else if (
        first === 100 && // d
        text.charCodeAt(position + 1) === 97 && // a
        text.charCodeAt(position + 2) === 116 && // t
        text.charCodeAt(position + 3) === 97 && // a
        text.charCodeAt(position + 4) === COLON
      ) {
        const value = text.slice(
          text.charCodeAt(position + 5) === SPACE ? position + 6 : position + 5,
          lf,
        );
        if (!this.#hasData && text.charCodeAt(lf + 1) === LF) {
          // A whole one-line event: dispatch without the data buffer.
          if (value.length > this.#maxEventSize) this.#checkSize(value.length);
          this.#lastEventId = this.#lastEventIdBuffer;
          const eventType = this.#eventType;
          this.#eventType = "";
          this.#onEvent({
            type: eventType === "" ? "message" : eventType,
            data: value,
            lastEventId: this.#lastEventId,
          });
          lf++;
        } else {
          this.#appendData(value);
        }
      } else {
        this.#line(text, position, lf);
      }
      position = lf + 1;
      lf = text.indexOf("\n", position);
    }
    return position;
  }

  /** Processes the line `text[start, end)`. */
  #line(text: string, start: number, end: number): void {
    if (start === end) return this.#dispatch();
    switch (text.charCodeAt(start)) {
      case COLON:
        if (this.#onComment) {
          this.#onComment(text.slice(valueStart(text, start + 1, end), end));
        }
        return;
      case 100: // d
        if (
          text.charCodeAt(start + 1) === 97 && // a
          text.charCodeAt(start + 2) === 116 && // t
          text.charCodeAt(start + 3) === 97 // a
        ) {
          const value = fieldValue(text, start + 4, end);
          if (value !== undefined) this.#appendData(value);
        }
        return;
      case 101: // e
        if (
          text.charCodeAt(start + 1) === 118 && // v
          text.charCodeAt(start + 2) === 101 && // e
          text.charCodeAt(start + 3) === 110 && // n
          text.charCodeAt(start + 4) === 116 // t
        ) {
          const value = fieldValue(text, start + 5, end);
          if (value !== undefined) this.#eventType = value;
        }
        return;
      case 105: // i
        if (text.charCodeAt(start + 1) === 100) { // d
          const value = fieldValue(text, start + 2, end);
          if (value !== undefined && value.indexOf("\0") === -1) {
            this.#lastEventIdBuffer = value;
          }
        }
        return;
      case 114: // r
        if (
          text.charCodeAt(start + 1) === 101 && // e
          text.charCodeAt(start + 2) === 116 && // t
          text.charCodeAt(start + 3) === 114 && // r
          text.charCodeAt(start + 4) === 121 // y
        ) {
          const value = fieldValue(text, start + 5, end);
          if (value !== undefined && isAsciiDigits(value)) {
            this.#onRetry?.(Number(value));
          }
        }
        return;
    }
  }

  #appendData(value: string): void {
    if (this.#hasData) this.#data += "\n" + value;
    else {
      this.#data = value;
      this.#hasData = true;
    }
    if (this.#data.length > this.#maxEventSize) {
      this.#checkSize(this.#data.length);
    }
  }

  #dispatch(): void {
    this.#lastEventId = this.#lastEventIdBuffer;
    const eventType = this.#eventType;
    this.#eventType = "";
    if (!this.#hasData) return;
    // The data buffer's final LF is never appended, so nothing to remove.
    const data = this.#data;
    this.#data = "";
    this.#hasData = false;
    this.#onEvent({
      type: eventType === "" ? "message" : eventType,
      data,
      lastEventId: this.#lastEventId,
    });
  }

  #checkSize(size: number): void {
    if (size > this.#maxEventSize) {
      this.#error = new RangeError(
        `Event stream event too large: the pending line and data buffer hold ${size} UTF-16 code units, more than maxEventSize (${this.#maxEventSize}); raise the maxEventSize option if such events are expected`,
      );
      throw this.#error;
    }
  }
}

/**
 * The length of `data:` or `data: ` when the text from `position` is a data
 * line with at least one character of its value, else 0 (without a value
 * character, whether a space there is the one to remove is not known yet).
 */
function dataPrefixLength(text: string, position: number): number {
  if (
    text.charCodeAt(position) !== 100 || // d
    text.charCodeAt(position + 1) !== 97 || // a
    text.charCodeAt(position + 2) !== 116 || // t
    text.charCodeAt(position + 3) !== 97 || // a
    text.charCodeAt(position + 4) !== COLON
  ) return 0;
  const prefix = text.charCodeAt(position + 5) === SPACE ? 6 : 5;
  return position + prefix < text.length ? prefix : 0;
}

/** Index of a field value: after the colon at `start`, minus one space. */
function valueStart(text: string, start: number, end: number): number {
  return start < end && text.charCodeAt(start) === SPACE ? start + 1 : start;
}

/**
 * The value of a field whose name ends at `nameEnd`, or `undefined` when the
 * name goes on (so it is another, unknown field).
 */
function fieldValue(
  text: string,
  nameEnd: number,
  end: number,
): string | undefined {
  if (nameEnd === end) return "";
  if (text.charCodeAt(nameEnd) !== COLON) return undefined;
  return text.slice(valueStart(text, nameEnd + 1, end), end);
}

function isAsciiDigits(value: string): boolean {
  if (value.length === 0) return false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** Options of {@linkcode ServerSentEventParserStream}. */
export interface ServerSentEventParserStreamOptions {
  /**
   * The largest event buffered, in UTF-16 code units; a larger one errors
   * the stream with a `RangeError`.
   *
   * @default {16777216} (16 MiB)
   */
  maxEventSize?: number;
  /**
   * The last event ID to start from.
   *
   * @default {""}
   */
  lastEventId?: string;
}

/**
 * Parses a byte stream in the `text/event-stream` format into events and
 * reconnection-time changes, in stream order (see
 * {@linkcode ServerSentEventParser} for the rules). An unterminated event at
 * the end is discarded; an event over `maxEventSize` errors the stream with a
 * `RangeError`.
 *
 * @example Usage
 * ```ts
 * import { ServerSentEventParserStream } from "@ssekit/sse/client";
 * import { deepStrictEqual as assertEquals } from "node:assert/strict";
 *
 * const body = new Response("retry: 1000\nid: 1\ndata: hi\n\ndata: cut").body!;
 * const out = await Array.fromAsync(
 *   body.pipeThrough(new ServerSentEventParserStream()),
 * );
 * assertEquals(out, [
 *   { retry: 1000 },
 *   { type: "message", data: "hi", lastEventId: "1" },
 * ]);
 * const first = out[0]!;
 * // Tell the two kinds of chunk apart with `in`:
 * assertEquals("retry" in first ? first.retry : first.data, 1000);
 * ```
 */
export class ServerSentEventParserStream
  extends TransformStream<Uint8Array, ParsedEventStreamChunk> {
  /**
   * Creates the stream.
   *
   * @param options Limits and the starting last event ID.
   */
  constructor(options: ServerSentEventParserStreamOptions = {}) {
    let parser: ServerSentEventParser;
    super({
      start(controller) {
        parser = new ServerSentEventParser({
          onEvent: (event) => controller.enqueue(event),
          onRetry: (retry) => controller.enqueue({ retry }),
          ...options,
        });
      },
      transform(chunk) {
        parser.push(chunk);
      },
      flush() {
        parser.end();
      },
    });
  }
}

/** Whether a `Content-Type` value has the MIME essence `text/event-stream`. */
function isEventStreamContentType(contentType: string | null): boolean {
  if (contentType === null) return false;
  const semicolon = contentType.indexOf(";");
  const essence = semicolon === -1
    ? contentType
    : contentType.slice(0, semicolon);
  return essence.trim().toLowerCase() === "text/event-stream";
}

/** An `error` event: an `ErrorEvent` where the runtime has one. */
function createErrorEvent(error: unknown): Event {
  const message = error instanceof Error ? error.message : String(error);
  if (typeof ErrorEvent === "function") {
    return new ErrorEvent("error", { error, message });
  }
  const event = new Event("error");
  Object.defineProperties(event, {
    error: { configurable: true, value: error },
    message: { configurable: true, value: message },
  });
  return event;
}

/** A `close` event: a `CloseEvent` where the runtime has one. */
function createCloseEvent(wasClean: boolean, reason: string): Event {
  if (typeof CloseEvent === "function") {
    return new CloseEvent("close", { wasClean, reason });
  }
  const event = new Event("close");
  Object.defineProperties(event, {
    code: { configurable: true, value: 0 },
    reason: { configurable: true, value: reason },
    wasClean: { configurable: true, value: wasClean },
  });
  return event;
}

/** The origin of a URL string, or `""` when there is none. */
function originOf(url: string): string {
  if (url === "") return "";
  try {
    return new URL(url).origin;
  } catch {
    return "";
  }
}

/** One `for await` loop over an {@linkcode EventConsumer}. */
interface IteratorQueue {
  events: MessageEvent<string>[];
  /** Resolves the pending `next()`, if one waits. */
  wake: (() => void) | null;
}

/** Events queued for a slow `for await` loop before reading pauses. */
const ITERATOR_HIGH_WATER_MARK = 64;

/**
 * Reads one `Response` body as an event stream and dispatches its events:
 * a `MessageEvent` per event (its `type` is the event type, so
 * `addEventListener("message", …)` sees unnamed events and
 * `addEventListener("update", …)` sees `event: update`), then `close` (with
 * `wasClean` and `reason`) when the stream ends, preceded by `error` (an
 * `ErrorEvent`, or an `Event` with `error` and `message` where the runtime has
 * no `ErrorEvent`) when reading fails. It never reconnects: see
 * {@linkcode EventSource} for that.
 *
 * API compatible with `@ayonli/jsext/sse`'s `EventConsumer`, with a
 * spec-exact parser, a validated `Content-Type` essence, and in addition
 * {@linkcode EventConsumer.close} and async iteration.
 *
 * Reading starts when the consumer is created, so add listeners (or start
 * the `for await` loop) in the same tick.
 *
 * @example Listen for events
 * ```ts
 * import { EventConsumer } from "@ssekit/sse/client";
 * import { deepStrictEqual as assertEquals } from "node:assert/strict";
 *
 * const response = new Response("event: add\ndata: 1\n\n", {
 *   headers: { "content-type": "text/event-stream" },
 * });
 * const consumer = new EventConsumer(response);
 * const seen: string[] = [];
 * consumer.addEventListener("add", (e) => seen.push(e.data));
 * await new Promise((resolve) => consumer.addEventListener("close", resolve));
 * assertEquals(seen, ["1"]);
 * ```
 *
 * @example Iterate over events
 * ```ts
 * import { EventConsumer } from "@ssekit/sse/client";
 * import { deepStrictEqual as assertEquals } from "node:assert/strict";
 *
 * const response = new Response("data: a\n\ndata: b\n\n", {
 *   headers: { "content-type": "text/event-stream; charset=utf-8" },
 * });
 * const data: string[] = [];
 * for await (const event of new EventConsumer(response)) data.push(event.data);
 * assertEquals(data, ["a", "b"]);
 * ```
 */
export class EventConsumer extends EventTarget {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #lastEventId = "";
  #retry = 0;
  #closed = false;
  #error: unknown = undefined;
  #failed = false;
  #origin: string;
  #queues = new Set<IteratorQueue>();
  #resumeReading: (() => void) | null = null;

  /**
   * Starts reading the response as an event stream.
   *
   * @param response A response with status 2xx, an unused body and the
   * content type `text/event-stream` (parameters allowed).
   * @param options Limits of the parser.
   * @throws {TypeError} When the status is not 2xx, the body is missing,
   * used or locked, or the content type is not `text/event-stream`.
   */
  constructor(
    response: Response,
    options: ServerSentEventParserStreamOptions = {},
  ) {
    super();
    if (!response.ok) {
      throw new TypeError(
        `Cannot consume an event stream from a response with status ${response.status}: expected a 2xx status`,
      );
    }
    if (!response.body) {
      throw new TypeError(
        "Cannot consume an event stream from a response without a body",
      );
    }
    if (response.bodyUsed || response.body.locked) {
      throw new TypeError(
        "Cannot consume an event stream from a response whose body is already used or locked",
      );
    }
    const contentType = response.headers.get("content-type");
    if (!isEventStreamContentType(contentType)) {
      throw new TypeError(
        `Cannot consume a response with content type ${
          contentType === null ? "(none)" : JSON.stringify(contentType)
        } as an event stream: expected "text/event-stream"`,
      );
    }
    this.#origin = originOf(response.url);
    this.#reader = response.body.getReader();
    this.#read(options);
  }

  /** The stream's last event ID (see {@linkcode ServerSentEvent.lastEventId}). */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /**
   * The reconnection time in milliseconds the server last sent with `retry`,
   * or `0` if it sent none. This consumer never reconnects; use it when
   * reconnecting by hand.
   */
  get retry(): number {
    return this.#retry;
  }

  /** Whether the stream has ended, failed or was closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Stops reading and cancels the response body. Dispatches `close` with
   * `wasClean: true` unless the stream was already closed. Running
   * `for await` loops end normally, without the events they had not taken
   * yet.
   */
  close(): void {
    if (this.#closed) return;
    for (const queue of this.#queues) queue.events.length = 0;
    this.#finish(undefined, "EventConsumer.close() was called");
    this.#reader.cancel().catch(() => {});
  }

  /**
   * Yields every `MessageEvent` dispatched after the loop starts, whatever
   * its type, and ends when the stream ends or {@linkcode EventConsumer.close}
   * is called. Throws the reading error if the stream fails. While a loop
   * lags behind, reading the body pauses. Leaving the loop early (`break`,
   * `return` or a throw) closes the consumer and cancels the body, as with a
   * `ReadableStream`'s iterator.
   *
   * @returns An async iterator of the events.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<
    MessageEvent<string>,
    void,
    undefined
  > {
    const queue: IteratorQueue = { events: [], wake: null };
    this.#queues.add(queue);
    try {
      while (true) {
        const event = queue.events.shift();
        if (event !== undefined) {
          this.#maybeResume();
          yield event;
          continue;
        }
        if (this.#closed) {
          if (this.#failed) throw this.#error;
          return;
        }
        await new Promise<void>((resolve) => (queue.wake = resolve));
        queue.wake = null;
      }
    } finally {
      this.#queues.delete(queue);
      // Leaving the loop early (break, return, throw) ends the stream, as a
      // ReadableStream's iterator does: nothing else would cancel the body.
      if (!this.#closed) this.close();
      this.#maybeResume();
    }
  }

  /**
   * Adds a listener for `error`: reading the stream failed (then `close` follows).
   *
   * @param type `"error"`
   * @param listener The listener.
   * @param options Listener options.
   */
  override addEventListener(
    type: "error",
    listener: (this: EventConsumer, event: ErrorEvent) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Adds a listener for `close`: the stream ended, failed or was closed.
   *
   * @param type `"close"`
   * @param listener The listener.
   * @param options Listener options.
   */
  override addEventListener(
    type: "close",
    listener: (this: EventConsumer, event: CloseEvent) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Adds a listener for events of the given type from the stream.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override addEventListener(
    type: string,
    listener: (this: EventConsumer, event: MessageEvent<string>) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Adds a listener.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    // deno-lint-ignore no-explicit-any
    listener: any,
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener, options);
  }

  /**
   * Removes a listener for `error`: reading the stream failed (then `close` follows).
   *
   * @param type `"error"`
   * @param listener The listener.
   * @param options Listener options.
   */
  override removeEventListener(
    type: "error",
    listener: (this: EventConsumer, event: ErrorEvent) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Removes a listener for `close`: the stream ended, failed or was closed.
   *
   * @param type `"close"`
   * @param listener The listener.
   * @param options Listener options.
   */
  override removeEventListener(
    type: "close",
    listener: (this: EventConsumer, event: CloseEvent) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Removes a listener for events of the given type from the stream.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override removeEventListener(
    type: string,
    listener: (this: EventConsumer, event: MessageEvent<string>) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Removes a listener.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    // deno-lint-ignore no-explicit-any
    listener: any,
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(type, listener, options);
  }

  async #read(options: ServerSentEventParserStreamOptions): Promise<void> {
    const parser = new ServerSentEventParser({
      ...options,
      onEvent: (event) => this.#deliver(event),
      onRetry: (milliseconds) => (this.#retry = milliseconds),
    });
    try {
      while (!this.#closed) {
        const { done, value } = await this.#reader.read();
        if (this.#closed) return;
        if (done) {
          parser.end();
          this.#finish(undefined, "");
          return;
        }
        parser.push(value);
        // An id-only block commits an id without dispatching.
        this.#lastEventId = parser.lastEventId;
        while (this.#mustPause()) {
          await new Promise<void>((resolve) => (this.#resumeReading = resolve));
        }
      }
    } catch (error) {
      if (this.#closed) return;
      this.#reader.cancel(error).catch(() => {});
      this.#finish(error, error instanceof Error ? error.message : "");
    }
  }

  #deliver(event: ServerSentEvent): void {
    if (this.#closed) return;
    this.#lastEventId = event.lastEventId;
    const message = new MessageEvent(event.type, {
      data: event.data,
      lastEventId: event.lastEventId,
      origin: this.#origin,
    });
    for (const queue of this.#queues) {
      queue.events.push(message);
      queue.wake?.();
    }
    this.dispatchEvent(message);
  }

  #mustPause(): boolean {
    if (this.#closed) return false;
    for (const queue of this.#queues) {
      if (queue.events.length >= ITERATOR_HIGH_WATER_MARK) return true;
    }
    return false;
  }

  #maybeResume(): void {
    if (this.#resumeReading && !this.#mustPause()) {
      const resume = this.#resumeReading;
      this.#resumeReading = null;
      resume();
    }
  }

  /** Marks the consumer closed; `error` set means reading failed. */
  #finish(error: unknown, reason: string): void {
    this.#closed = true;
    const failed = error !== undefined;
    this.#failed = failed;
    this.#error = error;
    for (const queue of this.#queues) queue.wake?.();
    this.#maybeResume();
    if (failed) this.dispatchEvent(createErrorEvent(error));
    this.dispatchEvent(createCloseEvent(!failed, reason));
  }
}

/** What an {@linkcode EventSource} passes to a `headers` function. */
export interface ConnectionAttempt {
  /** 1 for the first connection, then counting every reconnection. */
  attempt: number;
  /** The last event ID that will be sent as `Last-Event-ID`, or `""`. */
  lastEventId: string;
}

/** What {@linkcode EventSourceOptions.onReconnect} reports. */
export interface ScheduledReconnection {
  /** The milliseconds until the next attempt (already clamped and jittered). */
  delay: number;
  /** Consecutive failed attempts since the last successful open. */
  failures: number;
  /** Why the connection is being reestablished. */
  reason: unknown;
}

/** The reconnect policy of {@linkcode EventSource}. */
export interface ReconnectPolicy {
  /**
   * The reconnection time before the server sends `retry`, in milliseconds.
   *
   * @default {3000}
   */
  initialDelay?: number;
  /**
   * The cap of the exponential backoff in milliseconds. The server's `retry`
   * may exceed it: the reconnection time is always the floor.
   *
   * @default {60000}
   */
  maxDelay?: number;
  /**
   * After `n` consecutive failed attempts the delay is
   * `reconnectionTime * factor ** n` (capped by `maxDelay`).
   *
   * @default {2}
   */
  factor?: number;
  /**
   * The fraction of a backoff delay that is randomized, from `0` (none) to
   * `1`: a delay `d` becomes a random value in `[d * (1 - jitter), d]` (never
   * below the reconnection time).
   *
   * @default {0.5}
   */
  jitter?: number;
  /**
   * How many consecutive connection attempts may fail (counting since the
   * last successful open, or the start) before the source gives up:
   * `readyState` becomes `CLOSED` and `error` fires. A stream that opened and
   * then ended is not a failed attempt.
   *
   * @default {Infinity}
   */
  maxAttempts?: number;
}

/** Options of {@linkcode EventSource}: `EventSourceInit` plus fetch settings. */
export interface EventSourceOptions {
  /**
   * Send credentials (cookies) cross-origin: fetch's `credentials: "include"`
   * instead of `"same-origin"`.
   *
   * @default {false}
   */
  withCredentials?: boolean;
  /**
   * The request method.
   *
   * @default {"GET"}
   */
  method?: string;
  /**
   * Request headers, or a function returning them for each attempt (possibly
   * asynchronously, to refresh a token). `Accept: text/event-stream` is added
   * unless present; `Last-Event-ID` is set when there is a last event ID. A
   * function that throws counts as a failed attempt.
   *
   * @default {{}}
   */
  headers?:
    | HeadersInit
    | ((attempt: ConnectionAttempt) => HeadersInit | Promise<HeadersInit>);
  /**
   * The request body, sent again on every attempt (so not a
   * `ReadableStream`, which can be read only once).
   *
   * @default {null}
   */
  body?: BodyInit | null;
  /**
   * Aborting it closes the source, like {@linkcode EventSource.close}.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * The `fetch` to use, for example one with a proxy or a test double.
   *
   * @default {globalThis.fetch}
   */
  fetch?: (input: URL, init: RequestInit) => Promise<Response>;
  /**
   * The last event ID to resume from: sent as `Last-Event-ID` already on the
   * first request (browsers start from `""`).
   *
   * @default {""}
   */
  lastEventId?: string;
  /**
   * When and how often to reconnect.
   *
   * @default {{}} (see each field)
   */
  reconnect?: ReconnectPolicy;
  /**
   * The largest event the parser buffers, in UTF-16 code units; a larger one
   * fails the connection (no reconnect) with a `RangeError` in the `error`
   * event.
   *
   * @default {16777216} (16 MiB)
   */
  maxEventSize?: number;
  /**
   * Called whenever a reconnection is scheduled, with its delay.
   *
   * @default {undefined}
   */
  onReconnect?: (reconnection: ScheduledReconnection) => void;
}

/** The longest delay `setTimeout` honours (Node turns longer ones into 1 ms). */
const MAX_TIMEOUT = 2 ** 31 - 1;

type Handler = ((this: EventSource, event: Event) => unknown) | null;
type MessageHandler =
  | ((this: EventSource, event: MessageEvent<string>) => unknown)
  | null;

/**
 * The WHATWG
 * {@link https://html.spec.whatwg.org/multipage/server-sent-events.html | EventSource},
 * for runtimes without one (Bun, Node without a flag) and for requests a
 * browser's cannot make: a second argument takes the method, headers (also a
 * function per attempt), body, an abort signal, a custom `fetch`, and a
 * reconnect policy.
 *
 * As in browsers: `open` when a 200 `text/event-stream` response arrives; a
 * `MessageEvent` per event (`onmessage` sees type `"message"` only); on a
 * network error or the end of the stream `error` fires, `readyState` becomes
 * `CONNECTING` and it reconnects after the reconnection time (default
 * 3000 ms, changed by the server's `retry`) sending `Last-Event-ID`; any
 * other status (204 included) or content type fails the connection:
 * `readyState` becomes `CLOSED` and `error` fires, with no reconnection.
 *
 * Beyond browsers: consecutive failed attempts back off exponentially with
 * jitter (never below the reconnection time; reset by a successful open),
 * `reconnect.maxAttempts` bounds them, and every delay is clamped to
 * 2^31−1 ms. `error` events are `ErrorEvent`s (or `Event`s with `error` and
 * `message`) carrying the cause.
 *
 * @example Usage
 * ```ts
 * import { EventSource } from "@ssekit/sse/client";
 * import { deepStrictEqual as assertEquals } from "node:assert/strict";
 *
 * // A test double for fetch; in real use, leave `fetch` out.
 * const fetch = () =>
 *   Promise.resolve(
 *     new Response("data: hello\n\n", {
 *       headers: { "content-type": "text/event-stream" },
 *     }),
 *   );
 * const source = new EventSource("https://example.com/events", {
 *   method: "POST",
 *   headers: () => ({ authorization: "Bearer fresh-token" }),
 *   body: JSON.stringify({ prompt: "hi" }),
 *   fetch,
 * });
 * const event = await new Promise<MessageEvent>((resolve) => {
 *   source.onmessage = resolve;
 * });
 * source.close();
 * assertEquals(event.data, "hello");
 * assertEquals(event.origin, "https://example.com");
 * ```
 */
export class EventSource extends EventTarget {
  /** The connection has not been established yet, or is being reestablished. */
  static readonly CONNECTING: 0 = 0;
  /** The connection is open and events are dispatched. */
  static readonly OPEN: 1 = 1;
  /** The connection is closed and will not be reestablished. */
  static readonly CLOSED: 2 = 2;
  /** The connection has not been established yet, or is being reestablished. */
  readonly CONNECTING: 0 = 0;
  /** The connection is open and events are dispatched. */
  readonly OPEN: 1 = 1;
  /** The connection is closed and will not be reestablished. */
  readonly CLOSED: 2 = 2;

  #url: URL;
  #withCredentials: boolean;
  #options: EventSourceOptions;
  #fetch: (input: URL, init: RequestInit) => Promise<Response>;
  #readyState: number = 0;
  #reconnectionTime: number;
  #maxDelay: number;
  #factor: number;
  #jitter: number;
  #maxAttempts: number;
  #failures = 0;
  #attempts = 0;
  #lastEventId = "";
  #abort: AbortController | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined = undefined;
  #handlers = new Map<string, Handler | MessageHandler>();
  #onSignalAbort: (() => void) | null = null;

  /**
   * Starts connecting (in a microtask, so listeners added now see `open`).
   *
   * @param url The event stream's URL, resolved against `location` where
   * there is one.
   * @param options `EventSourceInit`'s `withCredentials` plus fetch settings
   * and the reconnect policy.
   * @throws {DOMException} A `SyntaxError` when the URL cannot be parsed.
   * @throws {TypeError} When a body is given for a `GET` or `HEAD` request.
   */
  constructor(url: string | URL, options: EventSourceOptions = {}) {
    super();
    try {
      const base = (globalThis as { location?: { href?: string } }).location
        ?.href;
      this.#url = new URL(url, base);
    } catch {
      throw new DOMException(
        `Cannot open an EventSource: ${
          JSON.stringify(String(url))
        } is not a valid URL`,
        "SyntaxError",
      );
    }
    const method = (options.method ?? "GET").toUpperCase();
    if (
      options.body !== undefined && options.body !== null &&
      (method === "GET" || method === "HEAD")
    ) {
      throw new TypeError(
        `Cannot send a body with a ${method} request: set the method option (for example to "POST")`,
      );
    }
    this.#options = options;
    this.#withCredentials = options.withCredentials ?? false;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    const policy = options.reconnect ?? {};
    this.#reconnectionTime = policy.initialDelay ?? 3000;
    this.#maxDelay = policy.maxDelay ?? 60_000;
    this.#factor = policy.factor ?? 2;
    this.#jitter = Math.min(Math.max(policy.jitter ?? 0.5, 0), 1);
    this.#maxAttempts = policy.maxAttempts ?? Infinity;
    this.#lastEventId = options.lastEventId ?? "";
    const signal = options.signal;
    if (signal?.aborted) {
      this.#readyState = this.CLOSED;
      return;
    }
    if (signal) {
      this.#onSignalAbort = () => this.close();
      signal.addEventListener("abort", this.#onSignalAbort, { once: true });
    }
    queueMicrotask(() => this.#connect());
  }

  /** The resolved URL of the event stream. */
  get url(): string {
    return this.#url.href;
  }

  /** Whether credentials are sent cross-origin. */
  get withCredentials(): boolean {
    return this.#withCredentials;
  }

  /** `CONNECTING` (0), `OPEN` (1) or `CLOSED` (2). */
  get readyState(): number {
    return this.#readyState;
  }

  /** The last event ID, sent as `Last-Event-ID` when reconnecting. */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /** Called on `open` events. */
  get onopen(): ((this: EventSource, event: Event) => unknown) | null {
    return this.#getHandler("open") as Handler;
  }
  set onopen(handler: ((this: EventSource, event: Event) => unknown) | null) {
    this.#setHandler("open", handler);
  }

  /** Called on `message` events (events of type `"message"` only). */
  get onmessage():
    | ((this: EventSource, event: MessageEvent<string>) => unknown)
    | null {
    return this.#getHandler("message") as MessageHandler;
  }
  set onmessage(
    handler:
      | ((this: EventSource, event: MessageEvent<string>) => unknown)
      | null,
  ) {
    this.#setHandler("message", handler);
  }

  /** Called on `error` events. */
  get onerror(): ((this: EventSource, event: Event) => unknown) | null {
    return this.#getHandler("error") as Handler;
  }
  set onerror(handler: ((this: EventSource, event: Event) => unknown) | null) {
    this.#setHandler("error", handler);
  }

  /**
   * Closes the source in any state: aborts the request or the body being
   * read, cancels a scheduled reconnection, and sets `readyState` to
   * `CLOSED`. Fires no event.
   */
  close(): void {
    this.#readyState = this.CLOSED;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#abort?.abort();
    this.#abort = null;
    if (this.#onSignalAbort) {
      this.#options.signal?.removeEventListener("abort", this.#onSignalAbort);
      this.#onSignalAbort = null;
    }
  }

  /**
   * Adds a listener for `open`: the connection was established.
   *
   * @param type `"open"`
   * @param listener The listener.
   * @param options Listener options.
   */
  override addEventListener(
    type: "open",
    listener: (this: EventSource, event: Event) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Adds a listener for `error`: the connection was lost or failed.
   *
   * @param type `"error"`
   * @param listener The listener.
   * @param options Listener options.
   */
  override addEventListener(
    type: "error",
    listener: (this: EventSource, event: Event) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Adds a listener for events of the given type from the stream.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override addEventListener(
    type: string,
    listener: (this: EventSource, event: MessageEvent<string>) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Adds a listener.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    // deno-lint-ignore no-explicit-any
    listener: any,
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener, options);
  }

  /**
   * Removes a listener for `open`: the connection was established.
   *
   * @param type `"open"`
   * @param listener The listener.
   * @param options Listener options.
   */
  override removeEventListener(
    type: "open",
    listener: (this: EventSource, event: Event) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Removes a listener for `error`: the connection was lost or failed.
   *
   * @param type `"error"`
   * @param listener The listener.
   * @param options Listener options.
   */
  override removeEventListener(
    type: "error",
    listener: (this: EventSource, event: Event) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Removes a listener for events of the given type from the stream.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override removeEventListener(
    type: string,
    listener: (this: EventSource, event: MessageEvent<string>) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  /**
   * Removes a listener.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    // deno-lint-ignore no-explicit-any
    listener: any,
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(type, listener, options);
  }

  #getHandler(type: string): Handler | MessageHandler {
    return this.#handlers.get(type) ?? null;
  }

  #setHandler(type: string, handler: Handler | MessageHandler): void {
    if (!this.#handlers.has(type)) {
      // One listener per type, added when first set, calls whatever handler
      // is current, like an event handler attribute.
      this.addEventListener(type, (event) => {
        const current = this.#handlers.get(type);
        if (typeof current === "function") {
          (current as (this: EventSource, event: Event) => unknown).call(
            this,
            event,
          );
        }
      });
    }
    this.#handlers.set(type, typeof handler === "function" ? handler : null);
  }

  async #connect(): Promise<void> {
    if (this.#readyState === this.CLOSED) return;
    this.#timer = undefined;
    const abort = new AbortController();
    this.#abort = abort;
    const attempt = ++this.#attempts;
    let response: Response;
    try {
      const headers = await this.#requestHeaders(attempt);
      if (abort.signal.aborted) return;
      response = await this.#fetch(this.#url, {
        method: this.#options.method ?? "GET",
        headers,
        body: this.#options.body ?? null,
        signal: abort.signal,
        credentials: this.#withCredentials ? "include" : "same-origin",
        cache: "no-store",
        redirect: "follow",
      });
    } catch (error) {
      if (!abort.signal.aborted) this.#reestablish(error, true);
      return;
    }
    if (abort.signal.aborted) {
      response.body?.cancel().catch(() => {});
      return;
    }
    const contentType = response.headers.get("content-type");
    if (
      response.status !== 200 || !isEventStreamContentType(contentType) ||
      !response.body
    ) {
      response.body?.cancel().catch(() => {});
      this.#failConnection(
        new TypeError(
          response.status !== 200
            ? `EventSource ${this.#url.href} answered status ${response.status}: expected 200`
            : `EventSource ${this.#url.href} answered content type ${
              contentType === null ? "(none)" : JSON.stringify(contentType)
            }: expected "text/event-stream"`,
        ),
      );
      return;
    }
    this.#readyState = this.OPEN;
    this.#failures = 0;
    this.dispatchEvent(new Event("open"));
    if (abort.signal.aborted) return; // an open listener called close()
    await this.#readBody(response, abort.signal);
  }

  async #requestHeaders(attempt: number): Promise<Headers> {
    const option = this.#options.headers;
    const init = typeof option === "function"
      ? await option({ attempt, lastEventId: this.#lastEventId })
      : option;
    const headers = new Headers(init);
    if (!headers.has("accept")) headers.set("accept", "text/event-stream");
    if (this.#lastEventId !== "") {
      headers.set("last-event-id", utf8AsByteString(this.#lastEventId));
    }
    return headers;
  }

  async #readBody(response: Response, signal: AbortSignal): Promise<void> {
    const origin = originOf(response.url) || this.#url.origin;
    const parser = new ServerSentEventParser({
      lastEventId: this.#lastEventId,
      onEvent: (event) => {
        this.#lastEventId = event.lastEventId;
        // A listener may have closed the source earlier in this chunk.
        if (this.#readyState !== this.OPEN) return;
        this.dispatchEvent(
          new MessageEvent(event.type, {
            data: event.data,
            lastEventId: event.lastEventId,
            origin,
          }),
        );
      },
      onRetry: (milliseconds) => (this.#reconnectionTime = milliseconds),
      ...(this.#options.maxEventSize === undefined
        ? {}
        : { maxEventSize: this.#options.maxEventSize }),
    });
    const reader = response.body!.getReader();
    let reason: unknown = new Error(
      `EventSource ${this.#url.href}: the event stream ended`,
    );
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        parser.push(value);
        // An id-only block commits an id without dispatching.
        this.#lastEventId = parser.lastEventId;
        if (signal.aborted) return;
      }
    } catch (error) {
      if (signal.aborted) return;
      reader.cancel(error).catch(() => {});
      if (error instanceof RangeError) return this.#failConnection(error);
      reason = error;
    }
    if (signal.aborted) return;
    this.#reestablish(reason, false);
  }

  /** Spec "fail the connection": CLOSED, `error`, no reconnection. */
  #failConnection(reason: unknown): void {
    if (this.#readyState === this.CLOSED) return;
    this.close();
    this.dispatchEvent(createErrorEvent(reason));
  }

  /** Spec "reestablish the connection", with the backoff policy. */
  #reestablish(reason: unknown, failed: boolean): void {
    if (this.#readyState === this.CLOSED) return;
    if (failed) this.#failures++;
    if (this.#failures >= this.#maxAttempts) {
      this.#failConnection(reason);
      return;
    }
    this.#readyState = this.CONNECTING;
    this.#abort = null;
    this.dispatchEvent(createErrorEvent(reason));
    // A listener may have closed the source.
    if (this.#readyState !== this.CONNECTING || this.#timer !== undefined) {
      return;
    }
    const delay = this.#delay();
    this.#timer = setTimeout(() => this.#connect(), delay);
    // Last, so that the hook may close() the source and a throwing hook does
    // not stop the reconnection.
    this.#options.onReconnect?.({ delay, failures: this.#failures, reason });
  }

  /** The next delay: backoff with jitter, floored by the reconnection time. */
  #delay(): number {
    const floor = Math.min(this.#reconnectionTime, MAX_TIMEOUT);
    if (this.#failures === 0) return floor;
    const backoff = Math.min(
      this.#maxDelay,
      this.#reconnectionTime * this.#factor ** this.#failures,
    );
    const jittered = backoff * (1 - this.#jitter * Math.random());
    return Math.round(Math.min(Math.max(jittered, floor), MAX_TIMEOUT));
  }
}

/** A string's UTF-8 bytes as a byte string, the form header values take. */
function utf8AsByteString(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let result = "";
  for (let i = 0; i < bytes.length; i++) {
    result += String.fromCharCode(bytes[i]!);
  }
  return result;
}
