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
 *   (method, headers, body, signal, custom fetch), a reconnect policy and
 *   opt-in timeouts.
 *
 * This file imports nothing, so it can be vendored on its own. Its types need
 * no DOM library: the web APIs it uses are also declared by `@types/node`.
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
   * after the colon minus one leading space, if any. Without it, comment
   * lines are skipped without being kept.
   */
  onComment?(text: string): void;
  /**
   * The largest event the parser holds, in bytes: the UTF-8 size of the
   * event's data buffer (every `data` value, plus one byte for each line
   * feed joining two of them) plus that of the line not yet ended (all of it,
   * but of a `data` line only its value). Line ends, the names of data
   * fields, and the event type and id of complete lines are not counted, so
   * an event of data lines whose data has exactly `maxEventSize` bytes
   * passes however the stream is chunked. Lines the spec ignores
   * (unknown fields, comments without `onComment`) are neither counted nor
   * kept. A stream that exceeds it makes
   * {@linkcode ServerSentEventParser.push} throw a `RangeError` instead of
   * growing memory without bound. A positive integer, or `Infinity`.
   *
   * @default {16777216} (16 MiB)
   */
  maxEventSize?: number;
  /**
   * The last event ID to start from, for example the one a previous
   * connection ended with. No CR, LF or NUL (no `id` field can set those).
   *
   * @default {""}
   */
  lastEventId?: string;
}

const DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024;
const LF = 0x0a;
const COLON = 0x3a;
const SPACE = 0x20;

// What a line is, from its first characters (the spec's "process the field"
// by field name; a line starting with a colon is a comment).
const IGNORED = 0;
const DATA = 1;
const EVENT = 2;
const ID = 3;
const RETRY = 4;
const COMMENT = 5;

// What the parser keeps of a line whose end has not arrived yet (it started
// in an earlier chunk or at the end of this one):
/** No line is pending. */
const NO_LINE = 0;
/** `#pending` is the line so far, processed as a whole when it ends. */
const WHOLE_LINE = 1;
/**
 * The line is a `data` field whose name, colon and optional space are
 * consumed: `#pending` is its value so far. The usual long line is data, and
 * so its value is never copied to strip the name.
 */
const DATA_VALUE = 2;
/**
 * The line is one the spec ignores (an unknown field, or a comment nobody
 * listens to): nothing is kept, its end is awaited.
 */
const SKIPPED_LINE = 3;

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
  /**
   * Text of at most this many UTF-16 code units fits in `#maxEventSize`
   * bytes whatever it holds (UTF-8 needs at most 3 bytes per code unit), so
   * bytes are counted only above it.
   */
  #uncountedLength: number;
  #decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  /** Whether the first decoded character (a possible BOM) is still ahead. */
  #atStreamStart = true;
  /** The previous text ended with CR: an LF starting the next one is part of that line end. */
  #skipLeadingLF = false;
  /** NO_LINE, WHOLE_LINE, DATA_VALUE or SKIPPED_LINE: see their definitions. */
  #pendingMode = NO_LINE;
  #pending = "";
  /**
   * The pending line's first piece (from the text it started in), whose
   * UTF-8 size is counted only when needed (`#pendingHeadBytes`, -1 until
   * then), and the size of the whole texts that extended it (known from
   * `#textBytes`, without a scan).
   */
  #pendingHead = "";
  #pendingHeadBytes = -1;
  #pendingRestBytes = 0;
  /** The data buffer, without the final LF the spec removes at dispatch. */
  #data = "";
  #hasData = false;
  /** The UTF-8 size of `#data`, or -1 while not counted. */
  #dataBytes = -1;
  /** Bytes the decoder holds: the start of a character the chunk cut. */
  #heldBytes = 0;
  /** The bytes of the character whose start the decoder holds. */
  #heldNeeds = 0;
  /**
   * The UTF-8 size of the text being fed: the bytes of the chunk plus those
   * held before, minus those held now. A pending line that grows by a whole
   * text so grows by a known size, without scanning its characters.
   */
  #textBytes = 0;
  #eventType = "";
  #lastEventIdBuffer: string;
  #lastEventId: string;
  #error: RangeError | undefined;

  /**
   * Creates a parser that reports to the given callbacks.
   *
   * @param options The callbacks and limits.
   * @throws {TypeError} When `onEvent` is not a function, or `lastEventId`
   * is not a string.
   * @throws {RangeError} When `maxEventSize` is not a positive integer or
   * `Infinity`, or `lastEventId` holds CR, LF or NUL.
   */
  constructor(options: ServerSentEventParserOptions) {
    if (typeof options?.onEvent !== "function") {
      throw new TypeError(
        `Invalid onEvent ${describe(options?.onEvent)}: expected a function`,
      );
    }
    this.#onEvent = options.onEvent;
    this.#onRetry = optionalFunction("onRetry", options.onRetry);
    this.#onComment = optionalFunction("onComment", options.onComment);
    this.#maxEventSize = checkMaxEventSize(options.maxEventSize);
    this.#uncountedLength = Math.floor(this.#maxEventSize / 3);
    this.#lastEventId = this.#lastEventIdBuffer = checkLastEventId(
      options.lastEventId,
    );
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
   * @throws {RangeError} When the event being read exceeds `maxEventSize`.
   */
  push(chunk: Uint8Array): void {
    if (this.#error) throw this.#error;
    const heldBefore = this.#heldBytes;
    this.#trackHeldBytes(chunk);
    this.#textBytes = heldBefore + chunk.length - this.#heldBytes;
    this.#feed(this.#decoder.decode(chunk, { stream: true }));
  }

  /**
   * Follows what the decoder holds after `chunk`: the start of a UTF-8
   * sequence that the chunk cut. A sequence has at most 4 bytes, so the last
   * 4 bytes of a chunk tell, or shorter chunks with what was held before.
   */
  #trackHeldBytes(chunk: Uint8Array): void {
    const length = chunk.length;
    let i = 0;
    let held = this.#heldBytes;
    if (length >= 4) {
      // The usual end, ASCII, holds nothing back.
      if (chunk[length - 1]! < 0x80) {
        this.#heldBytes = 0;
        return;
      }
      i = length - 4;
      held = 0;
    }
    let needs = this.#heldNeeds;
    for (; i < length; i++) {
      const byte = chunk[i]!;
      if (byte < 0x80) held = 0;
      else if (byte >= 0xc0) {
        held = 1;
        needs = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : 2;
      } else if (held > 0 && ++held === needs) held = 0;
    }
    this.#heldBytes = held;
    this.#heldNeeds = needs;
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
    this.#heldBytes = 0;
    this.#atStreamStart = true;
    this.#skipLeadingLF = false;
    this.#clearPendingLine();
    this.#clearData();
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
      if (nextCR === -1 && this.#pendingMode === NO_LINE) {
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
      if (this.#pendingMode === NO_LINE) this.#line(text, position, lineEnd);
      else this.#endPendingLine(text, position, lineEnd);
      position = next;
    }
    if (position < length) this.#keepPendingLine(text, position);
  }

  /**
   * The hot path for the usual CR-free text: processes every LF-terminated
   * line from `position` and returns where the unterminated rest starts.
   * Data, id and event lines, the usual ones, skip `#line`'s switch.
   */
  #lfOnlyLines(text: string, position: number): number {
    let lf = text.indexOf("\n", position);
    /** Whether the text holds U+0000 from `position` on: -1 not known yet. */
    let nul = -1;
    while (lf !== -1) {
      if (lf === position) this.#dispatch(this.#takeData());
      else if (startsWithDataColon(text, position)) {
        const value = text.slice(valueStart(text, position + 5, lf), lf);
        // `lf + 1` is tested against the length first: a `charCodeAt` past
        // the end makes JavaScriptCore leave its optimized code each time.
        if (
          !this.#hasData && lf + 1 < text.length &&
          text.charCodeAt(lf + 1) === LF &&
          value.length <= this.#uncountedLength
        ) {
          // A whole one-line event: its data needs no buffer.
          this.#dispatch(value);
          lf++;
        } else this.#appendData(value);
      } else if (startsWithIdColon(text, position)) {
        // One search of the text for U+0000 (found: #setId ignores the id)
        // rather than one per id: 10 % of small events' time on Bun.
        if (nul === -1) nul = text.indexOf("\0", position) === -1 ? 0 : 1;
        const value = text.slice(valueStart(text, position + 3, lf), lf);
        if (nul === 0) this.#lastEventIdBuffer = value;
        else this.#setId(value);
      } else if (startsWithEventColon(text, position)) {
        this.#eventType = text.slice(valueStart(text, position + 6, lf), lf);
      } else this.#line(text, position, lf);
      position = lf + 1;
      lf = text.indexOf("\n", position);
    }
    return position;
  }

  /** Processes the complete line `text[start, end)`: the spec's steps. */
  #line(text: string, start: number, end: number): void {
    if (start === end) return this.#dispatch(this.#takeData());
    switch (lineKind(text, start, end)) {
      case DATA:
        return this.#appendData(fieldValue(text, start + 4, end));
      case EVENT:
        this.#eventType = fieldValue(text, start + 5, end);
        return;
      case ID:
        return this.#setId(fieldValue(text, start + 2, end));
      case RETRY: {
        const value = fieldValue(text, start + 5, end);
        if (isAsciiDigits(value)) this.#onRetry?.(Number(value));
        return;
      }
      case COMMENT:
        this.#onComment?.(text.slice(valueStart(text, start + 1, end), end));
        return;
    }
  }

  /**
   * Keeps `text` from `position` on: the start, or more, of a line whose end
   * has not arrived.
   */
  #keepPendingLine(text: string, position: number): void {
    if (this.#pendingMode === SKIPPED_LINE) return;
    if (
      this.#pendingMode === NO_LINE && text.startsWith("data:", position) &&
      position + 5 < text.length
    ) {
      // The usual case, a data line with a character of its value here:
      // keep the value only, in one slice (`data:` and a space are ASCII, so
      // its size is the text's minus its index).
      const start = valueStart(text, position + 5, text.length);
      this.#pendingMode = DATA_VALUE;
      this.#pending = this.#pendingHead = text.slice(start);
      this.#pendingHeadBytes = position === 0 ? this.#textBytes - start : -1;
      this.#pendingRestBytes = 0;
    } else if (this.#pendingMode === NO_LINE) {
      this.#pendingMode = WHOLE_LINE;
      this.#pending = this.#pendingHead = position === 0
        ? text
        : text.slice(position);
      this.#pendingHeadBytes = position === 0 ? this.#textBytes : -1;
      this.#pendingRestBytes = 0;
    } else if (position === 0) {
      this.#pending += text;
      this.#pendingRestBytes += this.#textBytes;
    } else {
      const piece = text.slice(position);
      this.#pending += piece;
      this.#pendingRestBytes += utf8Length(piece);
    }
    if (this.#pendingMode === WHOLE_LINE) {
      // What the line is may be known by now.
      const line = this.#pending;
      const mode = pendingLineMode(line, this.#onComment !== undefined);
      if (mode === SKIPPED_LINE) {
        this.#clearPendingLine();
        this.#pendingMode = SKIPPED_LINE;
        return;
      }
      if (mode === DATA_VALUE) {
        // `data:` and the optional space are ASCII: one byte each.
        const start = valueStart(line, 5, line.length);
        this.#pendingMode = DATA_VALUE;
        this.#pending = this.#pendingHead = line.slice(start);
        this.#pendingHeadBytes = -1;
        this.#pendingRestBytes = 0;
      }
    }
    if (this.#data.length + this.#pending.length > this.#uncountedLength) {
      this.#checkSize();
    }
  }

  /** Ends the pending line with `text[start, end)`, its part in this text. */
  #endPendingLine(text: string, start: number, end: number): void {
    const mode = this.#pendingMode;
    if (mode === SKIPPED_LINE) return this.#clearPendingLine();
    const rest = start === 0 && end === text.length
      ? text
      : text.slice(start, end);
    const line = this.#pending + rest;
    // The size of a long data value is known from its pieces: not counted
    // again by scanning it.
    const bytes = mode === DATA_VALUE && line.length > this.#uncountedLength
      ? this.#pendingBytes() + utf8Length(rest)
      : -1;
    this.#clearPendingLine();
    if (mode === DATA_VALUE) this.#appendData(line, bytes);
    else this.#line(line, 0, line.length);
  }

  #clearPendingLine(): void {
    this.#pendingMode = NO_LINE;
    this.#pending = this.#pendingHead = "";
    this.#pendingHeadBytes = this.#pendingRestBytes = 0;
  }

  /** The UTF-8 size of the pending line. */
  #pendingBytes(): number {
    if (this.#pendingHeadBytes < 0) {
      this.#pendingHeadBytes = utf8Length(this.#pendingHead);
    }
    return this.#pendingHeadBytes + this.#pendingRestBytes;
  }

  /**
   * The spec's "append the field value to the data buffer", then an LF.
   * `bytes` is the value's UTF-8 size, or -1 when not known.
   */
  #appendData(value: string, bytes = -1): void {
    if (this.#hasData) {
      // The LF that ended the buffer is added only now, before more data:
      // so the buffer never ends with the LF the spec removes at dispatch.
      this.#data += "\n" + value;
      if (this.#dataBytes >= 0) {
        this.#dataBytes += 1 + (bytes >= 0 ? bytes : utf8Length(value));
      }
    } else {
      this.#data = value;
      this.#hasData = true;
      this.#dataBytes = bytes;
    }
    if (this.#data.length + this.#pending.length > this.#uncountedLength) {
      this.#checkSize();
    }
  }

  /** The spec's `id` field: a value with U+0000 is ignored. */
  #setId(value: string): void {
    if (value.indexOf("\0") === -1) this.#lastEventIdBuffer = value;
  }

  /** Empties the data buffer; returns what it held, or undefined if nothing. */
  #takeData(): string | undefined {
    if (!this.#hasData) return undefined;
    const data = this.#data;
    this.#clearData();
    return data;
  }

  /**
   * The spec's "dispatch the event", at a blank line: `data` is what the data
   * buffer held (undefined: nothing, so no event).
   */
  #dispatch(data: string | undefined): void {
    this.#lastEventId = this.#lastEventIdBuffer;
    const eventType = this.#eventType;
    this.#eventType = "";
    if (data === undefined) return;
    this.#onEvent({
      type: eventType === "" ? "message" : eventType,
      data,
      lastEventId: this.#lastEventId,
    });
  }

  #clearData(): void {
    this.#data = "";
    this.#hasData = false;
    this.#dataBytes = -1;
  }

  /**
   * Counts the bytes of the data buffer (once, then as it grows) and throws
   * when it and the pending line exceed `maxEventSize`.
   */
  #checkSize(): void {
    if (this.#dataBytes < 0) this.#dataBytes = utf8Length(this.#data);
    // A line that is, so far, `data:` or less of it holds no value yet.
    const pendingBytes = this.#pendingMode === WHOLE_LINE &&
        couldStartWith(this.#pending, "data:")
      ? 0
      : this.#pendingBytes();
    const size = this.#dataBytes + pendingBytes;
    if (size > this.#maxEventSize) {
      this.#error = new RangeError(
        `Event stream event too large: its data and unfinished line hold ${size} bytes, more than maxEventSize (${this.#maxEventSize}); raise the maxEventSize option if such events are expected`,
      );
      throw this.#error;
    }
  }
}

// The hot path's tests of how a line starts, in char codes: `startsWith` is
// a builtin call that V8 does not inline, which cost 15% on small events.

/** Whether the line at `at` starts with `data:`. */
function startsWithDataColon(text: string, at: number): boolean {
  return text.charCodeAt(at) === 0x64 && // d
    text.charCodeAt(at + 1) === 0x61 && // a
    text.charCodeAt(at + 2) === 0x74 && // t
    text.charCodeAt(at + 3) === 0x61 && // a
    text.charCodeAt(at + 4) === COLON;
}

/** Whether the line at `at` starts with `id:`. */
function startsWithIdColon(text: string, at: number): boolean {
  return text.charCodeAt(at) === 0x69 && // i
    text.charCodeAt(at + 1) === 0x64 && // d
    text.charCodeAt(at + 2) === COLON;
}

/** Whether the line at `at` starts with `event:`. */
function startsWithEventColon(text: string, at: number): boolean {
  return text.charCodeAt(at) === 0x65 && // e
    text.charCodeAt(at + 1) === 0x76 && // v
    text.charCodeAt(at + 2) === 0x65 && // e
    text.charCodeAt(at + 3) === 0x6e && // n
    text.charCodeAt(at + 4) === 0x74 && // t
    text.charCodeAt(at + 5) === COLON;
}

/**
 * Whether the field name that started before `at` ends there: at a colon,
 * or at the end of the line (a line without a colon is all name).
 */
function nameEndsAt(text: string, at: number, end: number): boolean {
  return at === end || (at < end && text.charCodeAt(at) === COLON);
}

/**
 * What the non-empty line `text[start, end)` is: DATA, EVENT, ID or RETRY
 * (the name, exactly and case-sensitively), COMMENT, or IGNORED (any other
 * field). Reading past `end` is safe: a line end or nothing follows it, and
 * neither is part of a name.
 */
function lineKind(text: string, start: number, end: number): number {
  if (text.charCodeAt(start) === COLON) return COMMENT;
  if (text.startsWith("data", start) && nameEndsAt(text, start + 4, end)) {
    return DATA;
  }
  if (text.startsWith("event", start) && nameEndsAt(text, start + 5, end)) {
    return EVENT;
  }
  if (text.startsWith("id", start) && nameEndsAt(text, start + 2, end)) {
    return ID;
  }
  if (text.startsWith("retry", start) && nameEndsAt(text, start + 5, end)) {
    return RETRY;
  }
  return IGNORED;
}

/**
 * How to keep the start of a line whose end has not arrived (see
 * WHOLE_LINE, DATA_VALUE and SKIPPED_LINE): a data line is known once a
 * character of its value is there (whether a space after the colon is the one
 * to remove is known then); a line is ignored once its start can no longer
 * become `data:`, `event:`, `id:` or `retry:`.
 */
function pendingLineMode(line: string, keepComments: boolean): number {
  if (line.charCodeAt(0) === COLON) {
    return keepComments ? WHOLE_LINE : SKIPPED_LINE;
  }
  if (couldStartWith(line, "data:")) {
    return line.length > 5 ? DATA_VALUE : WHOLE_LINE;
  }
  return couldStartWith(line, "event:") || couldStartWith(line, "id:") ||
      couldStartWith(line, "retry:")
    ? WHOLE_LINE
    : SKIPPED_LINE;
}

/** Whether `line` is a prefix of `field`, or starts with it. */
function couldStartWith(line: string, field: string): boolean {
  const n = Math.min(line.length, field.length);
  for (let i = 0; i < n; i++) {
    if (line.charCodeAt(i) !== field.charCodeAt(i)) return false;
  }
  return true;
}

/** Index of a field value: after the colon at `start - 1`, minus one space. */
function valueStart(text: string, start: number, end: number): number {
  return start < end && text.charCodeAt(start) === SPACE ? start + 1 : start;
}

/**
 * The value of a field whose name ends at `nameEnd`: `""` when the line ends
 * there, else what follows the colon, minus one space.
 */
function fieldValue(text: string, nameEnd: number, end: number): string {
  return nameEnd === end
    ? ""
    : text.slice(valueStart(text, nameEnd + 1, end), end);
}

function isAsciiDigits(value: string): boolean {
  if (value.length === 0) return false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

const NON_ASCII = /[^\0-\x7f]/;

/**
 * The UTF-8 size of well-formed text (what `TextDecoder` returns: a
 * surrogate is always half of a pair, 2 of the pair's 4 bytes).
 */
function utf8Length(text: string): number {
  const first = text.search(NON_ASCII);
  if (first === -1) return text.length;
  let bytes = text.length;
  for (let i = first; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) bytes += c < 0x800 || (c >= 0xd800 && c < 0xe000) ? 1 : 2;
  }
  return bytes;
}

// ---------------------------------------------------------------------------
// Option checks: the field, the value, what was expected.
// ---------------------------------------------------------------------------

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function") return "a function";
  if (value === null || typeof value !== "object") return String(value);
  return Array.isArray(value) ? "an array" : "an object";
}

function checkMaxEventSize(value: unknown, field = "maxEventSize"): number {
  if (value === undefined) return DEFAULT_MAX_EVENT_SIZE;
  if (
    typeof value !== "number" ||
    !(value === Infinity || (Number.isInteger(value) && value > 0))
  ) {
    throw new RangeError(
      `Invalid ${field} ${
        describe(value)
      }: expected a positive integer number of bytes, or Infinity`,
    );
  }
  return value;
}

function checkLastEventId(value: unknown, field = "lastEventId"): string {
  if (value === undefined) return "";
  if (typeof value !== "string") {
    throw new TypeError(
      `Invalid ${field} ${describe(value)}: expected a string`,
    );
  }
  if (/[\r\n\0]/.test(value)) {
    throw new RangeError(
      `Invalid ${field} ${
        describe(value)
      }: expected a string without CR, LF or NUL (no id field can set one)`,
    );
  }
  return value;
}

/** A timeout option: `0` (none) or a positive number of milliseconds. */
function checkTimeout(field: string, value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== "number" || !(value >= 0) || value > MAX_TIMEOUT) {
    throw new RangeError(
      `Invalid ${field} ${
        describe(value)
      }: expected a number of milliseconds from 0 (no timeout) to ${MAX_TIMEOUT}`,
    );
  }
  return value;
}

function optionalFunction<T>(field: string, value: T): T {
  if (value !== undefined && typeof value !== "function") {
    throw new TypeError(
      `Invalid ${field} ${describe(value)}: expected a function or undefined`,
    );
  }
  return value;
}

/** The longest delay `setTimeout` honours (Node turns longer ones into 1 ms). */
const MAX_TIMEOUT = 2 ** 31 - 1;

/** Options of {@linkcode ServerSentEventParserStream}. */
export interface ServerSentEventParserStreamOptions {
  /**
   * The largest event buffered, in bytes (see
   * {@linkcode ServerSentEventParserOptions.maxEventSize} for what is
   * counted); a larger one errors the stream with a `RangeError`.
   *
   * @default {16777216} (16 MiB)
   */
  maxEventSize?: number;
  /**
   * The last event ID to start from. No CR, LF or NUL.
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
   * @throws {RangeError} When `maxEventSize` or `lastEventId` is invalid (see
   * {@linkcode ServerSentEventParserOptions}).
   */
  constructor(options: ServerSentEventParserStreamOptions = {}) {
    const maxEventSize = checkMaxEventSize(options.maxEventSize);
    const lastEventId = checkLastEventId(options.lastEventId);
    let parser: ServerSentEventParser;
    super({
      start(controller) {
        parser = new ServerSentEventParser({
          onEvent: (event) => controller.enqueue(event),
          onRetry: (retry) => controller.enqueue({ retry }),
          maxEventSize,
          lastEventId,
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

// ---------------------------------------------------------------------------
// Events and typed listeners, shared by EventConsumer and EventSource
// ---------------------------------------------------------------------------

/** What {@linkcode EventStreamErrorEvent} is created with. */
export interface EventStreamErrorEventInit {
  /** The cause: an `Error`, an abort reason, anything thrown. */
  error?: unknown;
  /** A description; by default the cause's `message`, or the cause as a string. */
  message?: string;
  /**
   * The HTTP status of the response that failed the connection, when a
   * response (with a status other than 200, or a wrong content type) was the
   * reason.
   */
  status?: number;
}

/**
 * The `error` event of {@linkcode EventSource} and
 * {@linkcode EventConsumer}: an `Event` with the cause (`error`), a
 * `message`, and the HTTP `status` when a response was the reason. Defined
 * here rather than `ErrorEvent`, which not every runtime (nor TypeScript
 * without the DOM library) has.
 *
 * @example Read the cause of an error
 * ```ts
 * import { EventStreamErrorEvent } from "@ssekit/sse/client";
 * import { equal } from "node:assert/strict";
 *
 * const event = new EventStreamErrorEvent("error", {
 *   error: new TypeError("answered status 503: expected 200"),
 *   status: 503,
 * });
 * equal(event.message, "answered status 503: expected 200");
 * equal(event.status, 503);
 * ```
 */
export class EventStreamErrorEvent extends Event {
  /** The cause: an `Error`, an abort reason, anything thrown. */
  readonly error: unknown;
  /** What went wrong, in words. */
  readonly message: string;
  /**
   * The HTTP status of the response that failed the connection, or
   * `undefined` when no response was the reason (a network error, a
   * timeout, the end of the stream, an exception from a hook).
   */
  readonly status: number | undefined;

  /**
   * Creates the event.
   *
   * @param type The event type, `"error"`.
   * @param init The cause, message and status.
   */
  constructor(type: string, init: EventStreamErrorEventInit = {}) {
    super(type);
    this.error = init.error;
    this.message = init.message ??
      (init.error instanceof Error ? init.error.message : String(init.error));
    this.status = init.status;
  }
}

/**
 * A `MessageEvent` of an event stream: its `data` is a string. (A type of
 * its own, as `MessageEvent` is generic only in the DOM library.)
 */
export type ServerSentMessageEvent = Omit<MessageEvent, "data"> & {
  /** The event's data. */
  readonly data: string;
};

/** The options `EventTarget.addEventListener` takes. */
export type AddListenerOptions = Parameters<EventTarget["addEventListener"]>[2];

/** The options `EventTarget.removeEventListener` takes. */
export type RemoveListenerOptions = Parameters<
  EventTarget["removeEventListener"]
>[2];

/**
 * A listener for events of type `E` dispatched on `T`: a function (called
 * with `this` set to `T`) or an object with `handleEvent`.
 */
export type TypedEventListener<T, E> =
  | ((this: T, event: E) => void)
  | { handleEvent(event: E): void };

/** The events an {@linkcode EventConsumer} dispatches besides messages. */
export interface EventConsumerEventMap {
  /** Reading the stream failed (then `close` follows). */
  error: EventStreamErrorEvent;
  /** The stream ended, failed or was closed. */
  close: CloseEvent;
  /** An event without an `event` field (or with `event: message`). */
  message: ServerSentMessageEvent;
}

/** The events an {@linkcode EventSource} dispatches besides messages. */
export interface EventSourceEventMap {
  /** The connection was established. */
  open: Event;
  /** The connection was lost or failed, or a hook threw. */
  error: EventStreamErrorEvent;
  /** An event without an `event` field (or with `event: message`). */
  message: ServerSentMessageEvent;
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

/** A `close` event: a `CloseEvent` where the runtime has one. */
function createCloseEvent(wasClean: boolean, reason: string): CloseEvent {
  if (typeof CloseEvent === "function") {
    return new CloseEvent("close", { wasClean, reason });
  }
  const event = new Event("close");
  Object.defineProperties(event, {
    code: { configurable: true, value: 0 },
    reason: { configurable: true, value: reason },
    wasClean: { configurable: true, value: wasClean },
  });
  return event as CloseEvent;
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

/** A `TimeoutError` `DOMException`, as `AbortSignal.timeout()` makes. */
function timeoutError(message: string): DOMException {
  return new DOMException(message, "TimeoutError");
}

/**
 * Calls `onTimeout` once no activity was noted for `timeout` ms: one timer,
 * rescheduled for the rest of the interval when activity came meanwhile (so
 * noting activity costs a clock read, not a timer per chunk).
 */
class IdleWatch {
  #timeout: number;
  #onTimeout: () => void;
  #last = Date.now();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(timeout: number, onTimeout: () => void) {
    this.#timeout = timeout;
    this.#onTimeout = onTimeout;
    this.#timer = setTimeout(() => this.#check(), timeout);
  }

  /** Notes activity now. */
  touch(): void {
    this.#last = Date.now();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #check(): void {
    const rest = this.#last + this.#timeout - Date.now();
    if (rest > 0) {
      this.#timer = setTimeout(() => this.#check(), rest);
      return;
    }
    this.#timer = undefined;
    this.#onTimeout();
  }
}

// ---------------------------------------------------------------------------
// EventConsumer
// ---------------------------------------------------------------------------

/** Options of {@linkcode EventConsumer}. */
export interface EventConsumerOptions
  extends ServerSentEventParserStreamOptions {
  /**
   * Milliseconds without a byte from the server after which the stream is
   * taken for dead: reading fails with a `TimeoutError` (`error`, then
   * `close`). `0` disables it. Pair it with the server's heartbeat: ssekit's
   * `EventEndpoint` sends one whenever it wrote nothing for 5000 ms (its
   * default `heartbeat`), so `15000` tolerates two late heartbeats.
   *
   * @default {0}
   */
  idleTimeout?: number;
}

/** What a {@linkcode MessageLoop} needs of its consumer. */
interface LoopHost {
  /** The loop took an event: reading may resume. */
  taken(): void;
  /** Whether the stream is over, and the error if reading failed. */
  outcome(): { over: boolean; failed: boolean; error: unknown };
  /** The loop left early: close the consumer. */
  leave(loop: MessageLoop): void;
}

const DONE: IteratorResult<never, void> = { done: true, value: undefined };

/**
 * One `for await` loop over an {@linkcode EventConsumer}: the events
 * dispatched since it started and not yet taken. A hand-written iterator
 * rather than an async generator: `next()` resolves at once from the queue,
 * with one promise per event (a generator costs several).
 */
class MessageLoop implements AsyncIterableIterator<ServerSentMessageEvent> {
  #events: (ServerSentMessageEvent | undefined)[] = [];
  /** Index of the next event to take: the queue is `#events[#head…]`. */
  #head = 0;
  #wait: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #host: LoopHost;
  #done = false;

  constructor(host: LoopHost) {
    this.#host = host;
  }

  /** Events queued and not taken yet. */
  get backlog(): number {
    return this.#events.length - this.#head;
  }

  push(event: ServerSentMessageEvent): void {
    this.#events.push(event);
    this.wake();
  }

  /** Drops the events not taken yet. */
  clear(): void {
    this.#events.length = this.#head = 0;
  }

  /** Lets a waiting `next()` look again: an event came, or the end. */
  wake(): void {
    const wake = this.#wake;
    if (wake === null) return;
    this.#wake = this.#wait = null;
    wake();
  }

  next(): Promise<IteratorResult<ServerSentMessageEvent, void>> {
    if (this.#head < this.#events.length) {
      const value = this.#events[this.#head]!;
      this.#events[this.#head++] = undefined;
      if (this.#head === this.#events.length) this.clear();
      this.#host.taken();
      return Promise.resolve({ done: false, value });
    }
    if (this.#done) return Promise.resolve(DONE);
    const { over, failed, error } = this.#host.outcome();
    if (over) {
      this.#done = true;
      this.#host.leave(this);
      return failed ? Promise.reject(error) : Promise.resolve(DONE);
    }
    this.#wait ??= new Promise<void>((resolve) => (this.#wake = resolve));
    return this.#wait.then(() => this.next());
  }

  /** Leaving the loop early (`break`, `return`, a throw) closes the consumer. */
  return(): Promise<IteratorResult<ServerSentMessageEvent, void>> {
    if (!this.#done) {
      this.#done = true;
      this.clear();
      this.#host.leave(this);
    }
    return Promise.resolve(DONE);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** Events queued for a slow `for await` loop before reading pauses. */
const ITERATOR_HIGH_WATER_MARK = 64;

/**
 * Reads one `Response` body as an event stream and dispatches its events:
 * a `MessageEvent` per event (its `type` is the event type, so
 * `addEventListener("message", …)` sees unnamed events and
 * `addEventListener("update", …)` sees `event: update`), then `close` (with
 * `wasClean` and `reason`) when the stream ends, preceded by `error` (an
 * {@linkcode EventStreamErrorEvent}) when reading fails. It never reconnects:
 * see {@linkcode EventSource} for that.
 *
 * Nothing is lost before the first read: the consumer reads nothing until
 * the first `addEventListener()` call or the first `for await` loop, so any
 * `await` between creating it and listening is safe. Reading then starts and
 * goes on; an event reaches the listeners and loops that are there when it is
 * dispatched (add every listener before the first one's event can come: in
 * the same tick). While a loop lags behind by 64 events, reading pauses.
 *
 * API compatible with `@ayonli/jsext/sse`'s `EventConsumer`, with a
 * spec-exact parser, a validated `Content-Type` essence, and in addition
 * {@linkcode EventConsumer.close}, async iteration and an idle timeout.
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
 * await Promise.resolve(); // safe: nothing is read before a listener is there
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
  #parserOptions: { maxEventSize: number; lastEventId: string };
  #idleTimeout: number;
  /**
   * `"waiting"`: created, reading nothing until a listener or a loop is
   * there; `"reading"`; `"closed"`: ended, failed or closed.
   */
  #state: "waiting" | "reading" | "closed" = "waiting";
  #lastEventId: string;
  #retry = 0;
  #error: unknown = undefined;
  #failed = false;
  #origin: string;
  #loops = new Set<MessageLoop>();
  /** Types that ever had a listener: only those are dispatched. */
  #listened = new Set<string>();
  #resumeReading: (() => void) | null = null;

  /**
   * Takes the response's body (locking it); reading starts with the first
   * listener or loop.
   *
   * @param response A response with status 2xx, an unused body and the
   * content type `text/event-stream` (parameters allowed).
   * @param options Limits of the parser and the idle timeout.
   * @throws {TypeError} When the status is not 2xx, the body is missing,
   * used or locked, or the content type is not `text/event-stream`.
   * @throws {RangeError} When an option is invalid (the message names it).
   */
  constructor(response: Response, options: EventConsumerOptions = {}) {
    super();
    this.#parserOptions = {
      maxEventSize: checkMaxEventSize(options.maxEventSize),
      lastEventId: checkLastEventId(options.lastEventId),
    };
    this.#lastEventId = this.#parserOptions.lastEventId;
    this.#idleTimeout = checkTimeout("idleTimeout", options.idleTimeout);
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
    return this.#state === "closed";
  }

  /**
   * Stops reading and cancels the response body. Dispatches `close` with
   * `wasClean: true` unless the stream was already closed. Running
   * `for await` loops end normally, without the events they had not taken
   * yet.
   */
  close(): void {
    if (this.#state === "closed") return;
    for (const loop of this.#loops) loop.clear();
    this.#finish(undefined, "EventConsumer.close() was called");
  }

  /**
   * Yields every `MessageEvent` dispatched after the loop starts, whatever
   * its type, and ends when the stream ends or {@linkcode EventConsumer.close}
   * is called. Throws the reading error if the stream fails. While a loop
   * lags behind, reading the body pauses. Leaving the loop early (`break`,
   * `return` or a throw) closes the consumer and cancels the body, as with a
   * `ReadableStream`'s iterator. Starting a loop starts reading.
   *
   * @returns An async iterator of the events.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<ServerSentMessageEvent> {
    const loop = new MessageLoop({
      taken: () => this.#maybeResume(),
      outcome: () => ({
        over: this.#state === "closed",
        failed: this.#failed,
        error: this.#error,
      }),
      leave: (loop) => {
        this.#loops.delete(loop);
        // Leaving the loop early ends the stream, as a ReadableStream's
        // iterator does: nothing else would cancel the body.
        if (this.#state !== "closed") this.close();
        this.#maybeResume();
      },
    });
    this.#loops.add(loop);
    this.#start();
    return loop;
  }

  /**
   * Adds a listener (and starts reading, if this is the first): for
   * `error`, `close`, or the stream's events of that type.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override addEventListener<K extends keyof EventConsumerEventMap>(
    type: K,
    listener:
      | TypedEventListener<EventConsumer, EventConsumerEventMap[K]>
      | null,
    options?: AddListenerOptions,
  ): void;
  /**
   * Adds a listener for the stream's events of the given type (and starts
   * reading, if this is the first listener).
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override addEventListener(
    type: string,
    listener: TypedEventListener<EventConsumer, ServerSentMessageEvent> | null,
    options?: AddListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    // deno-lint-ignore no-explicit-any
    listener: any,
    options?: AddListenerOptions,
  ): void {
    super.addEventListener(type, listener, options);
    if (listener !== null) this.#listened.add(type);
    this.#start();
  }

  /**
   * Removes a listener.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override removeEventListener<K extends keyof EventConsumerEventMap>(
    type: K,
    listener:
      | TypedEventListener<EventConsumer, EventConsumerEventMap[K]>
      | null,
    options?: RemoveListenerOptions,
  ): void;
  /**
   * Removes a listener for the stream's events of the given type.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override removeEventListener(
    type: string,
    listener: TypedEventListener<EventConsumer, ServerSentMessageEvent> | null,
    options?: RemoveListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    // deno-lint-ignore no-explicit-any
    listener: any,
    options?: RemoveListenerOptions,
  ): void {
    super.removeEventListener(type, listener, options);
  }

  #start(): void {
    if (this.#state !== "waiting") return;
    this.#state = "reading";
    // #read handles its own errors; the catch only keeps a bug from becoming
    // an unhandled rejection.
    this.#read().catch((error) => this.#fail(error));
  }

  async #read(): Promise<void> {
    const reader = this.#reader;
    const parser = new ServerSentEventParser({
      ...this.#parserOptions,
      onEvent: (event) => this.#deliver(event),
      onRetry: (milliseconds) => (this.#retry = milliseconds),
    });
    const idle = this.#idleTimeout === 0
      ? undefined
      : new IdleWatch(this.#idleTimeout, () =>
        this.#fail(
          timeoutError(
            `EventConsumer: no bytes for ${this.#idleTimeout} ms (idleTimeout)`,
          ),
        ));
    try {
      while (this.#state === "reading") {
        const { done, value } = await reader.read();
        if (this.#state !== "reading") return;
        if (done) {
          parser.end();
          this.#finish(undefined, "");
          return;
        }
        idle?.touch();
        parser.push(value);
        // An id-only block commits an id without dispatching.
        this.#lastEventId = parser.lastEventId;
        while (this.#mustPause()) {
          await new Promise<void>((resolve) => (this.#resumeReading = resolve));
        }
      }
    } catch (error) {
      this.#fail(error);
    } finally {
      idle?.stop();
    }
  }

  #deliver(event: ServerSentEvent): void {
    if (this.#state !== "reading") return;
    this.#lastEventId = event.lastEventId;
    // An event no loop and no listener takes is not even created.
    const listened = this.#listened.has(event.type);
    if (this.#loops.size === 0 && !listened) return;
    const message = new MessageEvent(event.type, {
      data: event.data,
      lastEventId: event.lastEventId,
      origin: this.#origin,
    });
    for (const loop of this.#loops) loop.push(message);
    if (listened) this.dispatchEvent(message);
  }

  #mustPause(): boolean {
    if (this.#state !== "reading") return false;
    for (const loop of this.#loops) {
      if (loop.backlog >= ITERATOR_HIGH_WATER_MARK) return true;
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

  /** Reading failed: `error`, then `close` (not clean). */
  #fail(error: unknown): void {
    if (this.#state === "closed") return;
    this.#finish(error, error instanceof Error ? error.message : String(error));
  }

  /**
   * Marks the consumer closed and cancels the body; `error` set means
   * reading failed.
   */
  #finish(error: unknown, reason: string): void {
    this.#state = "closed";
    const failed = error !== undefined;
    this.#failed = failed;
    this.#error = error;
    this.#reader.cancel(error).catch(() => {});
    for (const loop of this.#loops) loop.wake();
    this.#maybeResume();
    if (failed) {
      this.dispatchEvent(new EventStreamErrorEvent("error", { error }));
    }
    this.dispatchEvent(createCloseEvent(!failed, reason));
  }
}

// ---------------------------------------------------------------------------
// EventSource
// ---------------------------------------------------------------------------

/** What {@linkcode EventSource} passes to a `headers` function. */
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
   * The reconnection time before the server sends `retry`, in milliseconds:
   * a finite number, 0 or more.
   *
   * @default {3000}
   */
  initialDelay?: number;
  /**
   * The cap of the exponential backoff in milliseconds (0 or more;
   * `Infinity` for none). The server's `retry` may exceed it: the
   * reconnection time is always the floor.
   *
   * @default {60000}
   */
  maxDelay?: number;
  /**
   * After `n` consecutive failed attempts the delay is
   * `reconnectionTime * factor ** n` (capped by `maxDelay`). A finite
   * number, 1 or more (1: no backoff).
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
   * then ended is not a failed attempt. A positive integer, or `Infinity`.
   *
   * @default {Infinity}
   */
  maxAttempts?: number;
}

/** Request headers, as `fetch` takes them (`HeadersInit`). */
export type RequestHeaders = NonNullable<RequestInit["headers"]>;

/** A request body, as `fetch` takes it (`BodyInit`, or `null`). */
export type RequestBody = RequestInit["body"];

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
   * The request method (an HTTP token; not `CONNECT`, `TRACE` or `TRACK`,
   * which fetch refuses).
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
    | RequestHeaders
    | ((
      attempt: ConnectionAttempt,
    ) => RequestHeaders | Promise<RequestHeaders>);
  /**
   * The request body, sent again on every attempt: so not a `ReadableStream`
   * (or any async iterable), which can be read only once; the constructor
   * refuses one.
   *
   * @default {null}
   */
  body?: RequestBody;
  /**
   * Aborting it closes the source: `readyState` becomes `CLOSED` and one
   * `error` event fires, whose `error` is the signal's reason. An already
   * aborted signal makes a source that starts `CLOSED`, fetches nothing and
   * fires that `error` in a microtask.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * The `fetch` to use, for example one with a proxy or a test double. It
   * may ignore the abort signal: {@linkcode EventSource.close} also cancels
   * the body being read, and a response that arrives after `close()` is
   * cancelled.
   *
   * @default {globalThis.fetch}
   */
  fetch?: (input: URL, init: RequestInit) => Promise<Response>;
  /**
   * The last event ID to resume from: sent as `Last-Event-ID` already on the
   * first request (browsers start from `""`). No CR, LF or NUL.
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
   * The largest event the parser buffers, in bytes (see
   * {@linkcode ServerSentEventParserOptions.maxEventSize} for what is
   * counted); a larger one fails the connection (no reconnect) with a
   * `RangeError` in the `error` event.
   *
   * @default {16777216} (16 MiB)
   */
  maxEventSize?: number;
  /**
   * Milliseconds an attempt may wait for the response headers (counting
   * from its start, a `headers` function included). When they do not come
   * in time, the request is aborted and the attempt counts as
   * failed: `error` (with a `TimeoutError`), then a reconnection with
   * backoff. `0` disables it.
   *
   * @default {0}
   */
  connectTimeout?: number;
  /**
   * Milliseconds an open connection may go without a byte from the server.
   * After that it is taken for dropped (a dead peer, a half-open TCP
   * connection): the body is cancelled, `error` fires (with a
   * `TimeoutError`) and the source reconnects, as when the stream ends. `0`
   * disables it.
   *
   * It needs a server that writes at least that often when it has nothing
   * to say: ssekit's `EventEndpoint` sends a heartbeat comment whenever it
   * wrote nothing for 5000 ms (its default `heartbeat`), so `15000` (three
   * heartbeat intervals) tolerates two late ones. Keep it above the server's
   * heartbeat interval, whatever the server.
   *
   * @default {0}
   */
  idleTimeout?: number;
  /**
   * Called whenever a reconnection is scheduled, with its delay. An
   * exception it throws is reported as an `error` event (its `error` is the
   * exception) and the reconnection stays scheduled.
   *
   * @default {undefined}
   */
  onReconnect?: (reconnection: ScheduledReconnection) => void;
}

/** One connection attempt and what it holds, until it ends. */
interface Attempt {
  /** Aborts the request (and the body, where fetch honours the signal). */
  abort: AbortController;
  /** The body's reader once the response is open: cancelled at the end. */
  reader: ReadableStreamDefaultReader<Uint8Array> | null;
  /** The connect timeout's timer, then the idle timeout's watch. */
  connectTimer: ReturnType<typeof setTimeout> | undefined;
  idle: IdleWatch | undefined;
}

/** An event handler attribute (`onopen`…): the callback and its listener. */
interface EventHandler {
  callback: (event: Event) => unknown;
  listener: (event: Event) => void;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The WHATWG
 * {@link https://html.spec.whatwg.org/multipage/server-sent-events.html | EventSource},
 * for runtimes without one (Bun, Node without a flag) and for requests a
 * browser's cannot make: a second argument takes the method, headers (also a
 * function per attempt), body, an abort signal, a custom `fetch`, a
 * reconnect policy and timeouts. Every option is checked by the constructor.
 *
 * As in browsers: `open` when a 200 `text/event-stream` response arrives; a
 * `MessageEvent` per event (`onmessage` sees type `"message"` only); on a
 * network error or the end of the stream `error` fires, `readyState` becomes
 * `CONNECTING` and it reconnects after the reconnection time (default
 * 3000 ms, changed by the server's `retry`) sending `Last-Event-ID`; any
 * other status (204 included) or content type fails the connection:
 * `readyState` becomes `CLOSED` and `error` fires, with no reconnection.
 * `close()` fires no event. `onopen`, `onmessage` and `onerror` are event
 * handler attributes: the first non-null value adds a listener, a later one
 * replaces the callback in that listener's place, `null` removes it.
 *
 * Beyond browsers: consecutive failed attempts back off exponentially with
 * jitter (never below the reconnection time; reset by a successful open),
 * `reconnect.maxAttempts` bounds them, and every delay is clamped to
 * 2^31−1 ms. `error` events are {@linkcode EventStreamErrorEvent}s carrying
 * the cause, a message and the HTTP status when a response was the reason.
 * Optional `connectTimeout` and `idleTimeout` notice a server that does not
 * answer or went silent. Aborting the `signal` closes the source with one
 * `error` event. Nothing it does rejects or throws into the host: failures
 * become `error` events, including an exception from `onReconnect`.
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
 *
 * @example Errors carry a status and a message
 * ```ts
 * import {
 *   EventSource,
 *   type EventStreamErrorEvent,
 * } from "@ssekit/sse/client";
 * import { equal } from "node:assert/strict";
 *
 * const source = new EventSource("https://example.com/events", {
 *   fetch: () => Promise.resolve(new Response("busy", { status: 503 })),
 * });
 * const error = await new Promise<EventStreamErrorEvent>(
 *   (resolve) => (source.onerror = resolve),
 * );
 * equal(error.status, 503);
 * equal(error.message.includes("503"), true);
 * equal(source.readyState, EventSource.CLOSED);
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
  #method: string;
  #headers: EventSourceOptions["headers"];
  #body: RequestBody;
  #signal: AbortSignal | undefined;
  #fetch: (input: URL, init: RequestInit) => Promise<Response>;
  #maxEventSize: number;
  #connectTimeout: number;
  #idleTimeout: number;
  #onReconnect: ((reconnection: ScheduledReconnection) => void) | undefined;
  #reconnectionTime: number;
  #maxDelay: number;
  #factor: number;
  #jitter: number;
  #maxAttempts: number;
  /** The state; what a connection holds is in `#attempt`. */
  #readyState: 0 | 1 | 2 = 0;
  #failures = 0;
  #attempts = 0;
  #lastEventId: string;
  /** The attempt in progress or open; `null` while waiting or closed. */
  #attempt: Attempt | null = null;
  /** The scheduled reconnection. */
  #timer: ReturnType<typeof setTimeout> | undefined = undefined;
  #handlers = new Map<string, EventHandler>();
  #onSignalAbort: (() => void) | null = null;

  /**
   * Checks the options and starts connecting (in a microtask, so listeners
   * added now see `open`).
   *
   * @param url The event stream's URL, resolved against `location` where
   * there is one.
   * @param options `EventSourceInit`'s `withCredentials` plus fetch settings,
   * the reconnect policy and timeouts.
   * @throws {DOMException} A `SyntaxError` when the URL cannot be parsed.
   * @throws {TypeError} When an option has the wrong type, the headers are
   * invalid, a body is given for a `GET` or `HEAD` request, or the body is a
   * stream.
   * @throws {RangeError} When a number or string option is out of range (the
   * message names the option, the value and what was expected).
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
    if (typeof options !== "object" || options === null) {
      throw new TypeError(
        `Invalid options ${describe(options)}: expected an object`,
      );
    }
    this.#withCredentials = Boolean(options.withCredentials);
    this.#method = checkMethod(options.method);
    this.#headers = checkHeaders(options.headers);
    this.#body = checkBody(options.body, this.#method);
    this.#signal = checkSignal(options.signal);
    this.#fetch = optionalFunction("fetch", options.fetch) ??
      ((input, init) => fetch(input, init));
    this.#lastEventId = checkLastEventId(options.lastEventId);
    this.#maxEventSize = checkMaxEventSize(options.maxEventSize);
    this.#connectTimeout = checkTimeout(
      "connectTimeout",
      options.connectTimeout,
    );
    this.#idleTimeout = checkTimeout("idleTimeout", options.idleTimeout);
    this.#onReconnect = optionalFunction("onReconnect", options.onReconnect);
    const policy = options.reconnect ?? {};
    if (typeof policy !== "object" || policy === null) {
      throw new TypeError(
        `Invalid reconnect ${describe(policy)}: expected an object`,
      );
    }
    this.#reconnectionTime = checkNumber(
      "reconnect.initialDelay",
      policy.initialDelay,
      3000,
      0,
      false,
    );
    this.#maxDelay = checkNumber(
      "reconnect.maxDelay",
      policy.maxDelay,
      60_000,
      0,
      true,
    );
    this.#factor = checkNumber("reconnect.factor", policy.factor, 2, 1, false);
    this.#jitter = checkNumber(
      "reconnect.jitter",
      policy.jitter,
      0.5,
      0,
      false,
    );
    if (this.#jitter > 1) {
      throw new RangeError(
        `Invalid reconnect.jitter ${this.#jitter}: expected a fraction from 0 to 1`,
      );
    }
    this.#maxAttempts = checkNumber(
      "reconnect.maxAttempts",
      policy.maxAttempts,
      Infinity,
      1,
      true,
    );
    if (
      !Number.isInteger(this.#maxAttempts) && this.#maxAttempts !== Infinity
    ) {
      throw new RangeError(
        `Invalid reconnect.maxAttempts ${this.#maxAttempts}: expected a positive integer or Infinity`,
      );
    }
    const signal = this.#signal;
    if (signal?.aborted) {
      this.#readyState = this.CLOSED;
      queueMicrotask(() => this.#dispatchError(abortReason(signal)));
      return;
    }
    if (signal) {
      this.#onSignalAbort = () => {
        if (this.#readyState === this.CLOSED) return;
        this.close();
        this.#dispatchError(abortReason(signal));
      };
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

  /**
   * The `open` event handler: called when the connection is established.
   * Setting `null` (or a non-function) removes it.
   */
  get onopen(): ((this: EventSource, event: Event) => unknown) | null {
    return this.#getHandler("open");
  }
  set onopen(handler: ((this: EventSource, event: Event) => unknown) | null) {
    this.#setHandler("open", handler);
  }

  /**
   * The `message` event handler: called for events of type `"message"`
   * only. Setting `null` (or a non-function) removes it.
   */
  get onmessage():
    | ((this: EventSource, event: ServerSentMessageEvent) => unknown)
    | null {
    return this.#getHandler("message");
  }
  set onmessage(
    handler:
      | ((this: EventSource, event: ServerSentMessageEvent) => unknown)
      | null,
  ) {
    this.#setHandler("message", handler);
  }

  /**
   * The `error` event handler: called when the connection is lost or fails.
   * Setting `null` (or a non-function) removes it.
   */
  get onerror():
    | ((this: EventSource, event: EventStreamErrorEvent) => unknown)
    | null {
    return this.#getHandler("error");
  }
  set onerror(
    handler:
      | ((this: EventSource, event: EventStreamErrorEvent) => unknown)
      | null,
  ) {
    this.#setHandler("error", handler);
  }

  /**
   * Closes the source in any state: aborts the request, cancels the body
   * being read (even when a custom `fetch` ignores the abort signal),
   * cancels a scheduled reconnection, and sets `readyState` to `CLOSED`.
   * Fires no event.
   */
  close(): void {
    this.#readyState = this.CLOSED;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#endAttempt();
    if (this.#onSignalAbort) {
      this.#signal?.removeEventListener("abort", this.#onSignalAbort);
      this.#onSignalAbort = null;
    }
  }

  /**
   * Adds a listener for `open`, `error`, or the stream's events of that type.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override addEventListener<K extends keyof EventSourceEventMap>(
    type: K,
    listener: TypedEventListener<EventSource, EventSourceEventMap[K]> | null,
    options?: AddListenerOptions,
  ): void;
  /**
   * Adds a listener for the stream's events of the given type.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override addEventListener(
    type: string,
    listener: TypedEventListener<EventSource, ServerSentMessageEvent> | null,
    options?: AddListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    // deno-lint-ignore no-explicit-any
    listener: any,
    options?: AddListenerOptions,
  ): void {
    super.addEventListener(type, listener, options);
  }

  /**
   * Removes a listener.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override removeEventListener<K extends keyof EventSourceEventMap>(
    type: K,
    listener: TypedEventListener<EventSource, EventSourceEventMap[K]> | null,
    options?: RemoveListenerOptions,
  ): void;
  /**
   * Removes a listener for the stream's events of the given type.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options Listener options.
   */
  override removeEventListener(
    type: string,
    listener: TypedEventListener<EventSource, ServerSentMessageEvent> | null,
    options?: RemoveListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    // deno-lint-ignore no-explicit-any
    listener: any,
    options?: RemoveListenerOptions,
  ): void {
    super.removeEventListener(type, listener, options);
  }

  // deno-lint-ignore no-explicit-any
  #getHandler(type: string): any {
    return this.#handlers.get(type)?.callback ?? null;
  }

  /**
   * HTML's event handler attributes: the first callback adds a listener; a
   * new callback takes the old one's place in that listener (so its order
   * among listeners stays); a non-function removes the listener, and a
   * later callback adds a new one at the end.
   */
  #setHandler(type: string, callback: unknown): void {
    const handler = this.#handlers.get(type);
    if (typeof callback !== "function") {
      if (handler) {
        super.removeEventListener(type, handler.listener);
        this.#handlers.delete(type);
      }
      return;
    }
    if (handler) {
      handler.callback = callback as EventHandler["callback"];
      return;
    }
    const created: EventHandler = {
      callback: callback as EventHandler["callback"],
      listener: (event) => void created.callback.call(this, event),
    };
    this.#handlers.set(type, created);
    super.addEventListener(type, created.listener);
  }

  #dispatchError(error: unknown, status?: number): void {
    this.dispatchEvent(
      new EventStreamErrorEvent(
        "error",
        status === undefined ? { error } : { error, status },
      ),
    );
  }

  /** Starts an attempt; whatever goes wrong in it ends as an event. */
  #connect(): void {
    this.#timer = undefined;
    if (this.#readyState === this.CLOSED) return;
    const attempt: Attempt = {
      abort: new AbortController(),
      reader: null,
      connectTimer: undefined,
      idle: undefined,
    };
    this.#attempt = attempt;
    this.#run(attempt).catch((error) => {
      // Not expected (#run handles its errors): never an unhandled rejection.
      if (this.#attempt === attempt) this.#reestablish(error, true);
    });
  }

  async #run(attempt: Attempt): Promise<void> {
    const n = ++this.#attempts;
    let response: Response;
    if (this.#connectTimeout !== 0) {
      // Covers the headers function too: the attempt as a whole.
      attempt.connectTimer = setTimeout(() => {
        if (this.#attempt !== attempt) return;
        this.#reestablish(
          timeoutError(
            `EventSource ${this.#url.href}: no response within ${this.#connectTimeout} ms (connectTimeout)`,
          ),
          true,
        );
      }, this.#connectTimeout);
    }
    try {
      const headers = await this.#requestHeaders(n);
      if (this.#attempt !== attempt) return;
      response = await this.#fetch(this.#url, {
        method: this.#method,
        headers,
        body: this.#body ?? null,
        signal: attempt.abort.signal,
        credentials: this.#withCredentials ? "include" : "same-origin",
        cache: "no-store",
        redirect: "follow",
      });
    } catch (error) {
      if (this.#attempt === attempt) this.#reestablish(error, true);
      return;
    }
    clearTimeout(attempt.connectTimer);
    attempt.connectTimer = undefined;
    if (this.#attempt !== attempt) {
      // Closed (or timed out) meanwhile, and fetch did not honour the abort.
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
        response.status,
      );
      return;
    }
    attempt.reader = response.body.getReader();
    this.#readyState = this.OPEN;
    this.#failures = 0;
    this.dispatchEvent(new Event("open"));
    if (this.#attempt !== attempt) return; // an open listener called close()
    await this.#readBody(attempt, attempt.reader, originOf(response.url));
  }

  async #requestHeaders(attempt: number): Promise<Headers> {
    const option = this.#headers;
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

  async #readBody(
    attempt: Attempt,
    reader: ReadableStreamDefaultReader<Uint8Array>,
    responseOrigin: string,
  ): Promise<void> {
    const origin = responseOrigin || this.#url.origin;
    const parser = new ServerSentEventParser({
      lastEventId: this.#lastEventId,
      maxEventSize: this.#maxEventSize,
      onEvent: (event) => {
        this.#lastEventId = event.lastEventId;
        // A listener may have closed the source earlier in this chunk.
        if (this.#attempt !== attempt) return;
        this.dispatchEvent(
          new MessageEvent(event.type, {
            data: event.data,
            lastEventId: event.lastEventId,
            origin,
          }),
        );
      },
      onRetry: (milliseconds) => (this.#reconnectionTime = milliseconds),
    });
    if (this.#idleTimeout !== 0) {
      attempt.idle = new IdleWatch(this.#idleTimeout, () => {
        if (this.#attempt !== attempt) return;
        this.#reestablish(
          timeoutError(
            `EventSource ${this.#url.href}: no bytes for ${this.#idleTimeout} ms (idleTimeout)`,
          ),
          false,
        );
      });
    }
    while (true) {
      let result: Awaited<ReturnType<typeof reader.read>>;
      try {
        result = await reader.read();
      } catch (error) {
        if (this.#attempt === attempt) this.#reestablish(error, false);
        return;
      }
      if (this.#attempt !== attempt) return;
      if (result.done) break;
      attempt.idle?.touch();
      try {
        parser.push(result.value);
      } catch (error) {
        // Only maxEventSize makes the parser throw: a server error, so no
        // reconnection (listener exceptions do not reach here).
        this.#failConnection(error);
        return;
      }
      // An id-only block commits an id without dispatching.
      this.#lastEventId = parser.lastEventId;
      if (this.#attempt !== attempt) return;
    }
    this.#reestablish(
      new Error(`EventSource ${this.#url.href}: the event stream ended`),
      false,
    );
  }

  /** Ends the current attempt: its timers, request and body. */
  #endAttempt(): void {
    const attempt = this.#attempt;
    if (attempt === null) return;
    this.#attempt = null;
    clearTimeout(attempt.connectTimer);
    attempt.idle?.stop();
    attempt.abort.abort();
    // Cancelled here too: a custom fetch may ignore the abort signal.
    attempt.reader?.cancel().catch(() => {});
  }

  /** Spec "fail the connection": CLOSED, `error`, no reconnection. */
  #failConnection(reason: unknown, status?: number): void {
    if (this.#readyState === this.CLOSED) return;
    this.close();
    this.#dispatchError(reason, status);
  }

  /** Spec "reestablish the connection", with the backoff policy. */
  #reestablish(reason: unknown, failed: boolean): void {
    if (this.#readyState === this.CLOSED) return;
    this.#endAttempt();
    if (failed) this.#failures++;
    if (this.#failures >= this.#maxAttempts) {
      this.#failConnection(reason);
      return;
    }
    this.#readyState = this.CONNECTING;
    this.#dispatchError(reason);
    // A listener may have closed the source.
    if (this.#readyState !== this.CONNECTING || this.#timer !== undefined) {
      return;
    }
    const delay = this.#delay();
    this.#timer = setTimeout(() => this.#connect(), delay);
    // Last, so that the hook may close() the source.
    if (this.#onReconnect) {
      try {
        this.#onReconnect({ delay, failures: this.#failures, reason });
      } catch (error) {
        // Reported, and the reconnection stays scheduled.
        if (this.readyState !== this.CLOSED) this.#dispatchError(error);
      }
    }
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

/** The reason an aborted signal gives, as an error event's cause. */
function abortReason(signal: AbortSignal): unknown {
  return signal.reason ??
    new DOMException("The EventSource's signal was aborted", "AbortError");
}

/** A number option: finite (or `Infinity` where allowed), at least `min`. */
function checkNumber(
  field: string,
  value: unknown,
  fallback: number,
  min: number,
  infinite: boolean,
): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== "number" || !(value >= min) ||
    (value === Infinity && !infinite)
  ) {
    throw new RangeError(
      `Invalid ${field} ${describe(value)}: expected a ${
        infinite ? "" : "finite "
      }number, ${min} or more`,
    );
  }
  return value;
}

function checkMethod(value: unknown): string {
  if (value === undefined) return "GET";
  if (typeof value !== "string" || !TOKEN.test(value)) {
    throw new TypeError(
      `Invalid method ${describe(value)}: expected an HTTP method name`,
    );
  }
  const upper = value.toUpperCase();
  if (upper === "CONNECT" || upper === "TRACE" || upper === "TRACK") {
    throw new TypeError(
      `Invalid method ${describe(value)}: fetch does not allow it`,
    );
  }
  // fetch normalizes these case-insensitively; other names are kept as given.
  return /^(DELETE|GET|HEAD|OPTIONS|POST|PUT)$/.test(upper) ? upper : value;
}

function checkHeaders(
  value: EventSourceOptions["headers"],
): EventSourceOptions["headers"] {
  if (value === undefined || typeof value === "function") return value;
  try {
    new Headers(value);
  } catch (error) {
    throw new TypeError(
      `Invalid headers ${describe(value)}: ${
        error instanceof Error ? error.message : String(error)
      }`,
    );
  }
  return value;
}

function checkBody(
  value: RequestBody | undefined,
  method: string,
): RequestBody {
  if (value === undefined || value === null) return null;
  if (method === "GET" || method === "HEAD") {
    throw new TypeError(
      `Cannot send a body with a ${method} request: set the method option (for example to "POST")`,
    );
  }
  if (
    typeof value === "object" &&
    (typeof (value as { getReader?: unknown }).getReader === "function" ||
      Symbol.asyncIterator in value)
  ) {
    throw new TypeError(
      `Invalid body (a stream): expected a body that can be sent again on every reconnection (a string, Blob, ArrayBuffer, typed array, FormData or URLSearchParams)`,
    );
  }
  return value;
}

function checkSignal(value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  const signal = value as Partial<AbortSignal> | null;
  if (
    typeof signal !== "object" || signal === null ||
    typeof signal.aborted !== "boolean" ||
    typeof signal.addEventListener !== "function"
  ) {
    throw new TypeError(
      `Invalid signal ${describe(value)}: expected an AbortSignal`,
    );
  }
  return value as AbortSignal;
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
