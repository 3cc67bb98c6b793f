/**
 * Loads ssekit's parser and encoder for the benches without failing while
 * `client.ts` or `sse.ts` do not export them yet: a missing export means the
 * ssekit cases are skipped (and `run.ts` reports them as missing).
 *
 * @module
 */

/** The event shape ssekit's parser dispatches. */
export interface ParsedEvent {
  type: string;
  data: string;
  lastEventId: string;
}

/** `ServerSentEventParser` from client.ts, structurally. */
export type ParserClass = new (options: {
  onEvent(event: ParsedEvent): void;
}) => { push(chunk: Uint8Array): void; end(): void };

/** `ServerSentEventParserStream` from client.ts, structurally. */
export type ParserStreamClass = new () => TransformStream<
  Uint8Array,
  ParsedEvent | { retry: number }
>;

/** `EventConsumer` from client.ts, structurally: iterable events. */
export type ConsumerClass = new (response: Response) => AsyncIterable<
  ParsedEvent
>;

/** A message as `sse.ts` encodes it. */
export interface Message {
  data?: string;
  event?: string;
  id?: string;
}

/** `encodeServerSentEvent` from sse.ts, structurally. */
export type EncodeFunction = (message: Message) => string;

/** `ServerSentEventStream` from sse.ts, structurally. */
export type EncoderStreamClass = new () => TransformStream<Message, Uint8Array>;

/** What of ssekit is available to benchmark. */
export interface Ssekit {
  ServerSentEventParser?: ParserClass;
  ServerSentEventParserStream?: ParserStreamClass;
  EventConsumer?: ConsumerClass;
  encodeServerSentEvent?: EncodeFunction;
  ServerSentEventStream?: EncoderStreamClass;
}

/** Imports client.ts and sse.ts and picks the exports the benches use. */
export async function loadSsekit(): Promise<Ssekit> {
  const client = await import("../client.ts") as Record<string, unknown>;
  const server = await import("../sse.ts") as Record<string, unknown>;
  const pick = <T>(mod: Record<string, unknown>, name: string): T | undefined =>
    typeof mod[name] === "function" ? mod[name] as T : undefined;
  const found: Ssekit = {};
  const parser = pick<ParserClass>(client, "ServerSentEventParser");
  if (parser) found.ServerSentEventParser = parser;
  const parserStream = pick<ParserStreamClass>(
    client,
    "ServerSentEventParserStream",
  );
  if (parserStream) found.ServerSentEventParserStream = parserStream;
  const consumer = pick<ConsumerClass>(client, "EventConsumer");
  if (consumer) found.EventConsumer = consumer;
  const encode = pick<EncodeFunction>(server, "encodeServerSentEvent");
  if (encode) found.encodeServerSentEvent = encode;
  const stream = pick<EncoderStreamClass>(server, "ServerSentEventStream");
  if (stream) found.ServerSentEventStream = stream;
  return found;
}
