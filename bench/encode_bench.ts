/**
 * Encode benchmarks: messages in, UTF-8 event-stream bytes out.
 *
 * Two groups per case: the function form (floor: `TextEncoder` over the
 * pre-formatted strings) and the stream form (floor: the same strings through
 * a bare `TransformStream`). Every encoder's output is decoded and parsed once
 * before timing and must give back exactly the messages that went in.
 *
 * Run: `deno bench -A bench/encode_bench.ts`, `bun bench/encode_bench.ts`,
 * `node bench/encode_bench.ts` (or all of them: `node bench/run.ts`).
 *
 * @module
 */

import { benchGroup, type GroupBench, quick, selected } from "./_adapter.ts";
import { type EncodeCase, encodeCases, format } from "./_cases.ts";
import { loadSsekit, type Message } from "./_ssekit.ts";
import { encode as eventsourceEncode } from "eventsource-encoder";
import { EventBuffer } from "better-sse";
import { SSEStreamingApi } from "hono/streaming";
import { EventEndpoint } from "@ayonli/jsext/sse";
import { createParser } from "eventsource-parser";

/** Receives every encoded chunk during the correctness check. */
type Sink = ((bytes: Uint8Array) => void) | undefined;
type Encode = (c: EncodeCase, sink: Sink) => number | Promise<number>;

const encoder = new TextEncoder();

function source<T>(items: T[]): ReadableStream<T> {
  let i = 0;
  return new ReadableStream<T>({
    pull(controller) {
      if (i < items.length) controller.enqueue(items[i++] as T);
      else controller.close();
    },
  });
}

async function drain(
  readable: ReadableStream<Uint8Array>,
  sink: Sink,
): Promise<number> {
  let bytes = 0;
  for await (const chunk of readable) {
    bytes += chunk.length;
    sink?.(chunk);
  }
  return bytes;
}

function floor(c: EncodeCase, sink: Sink): number {
  let bytes = 0;
  for (const text of c.formatted) {
    const out = encoder.encode(text);
    bytes += out.length;
    sink?.(out);
  }
  return bytes;
}

function floorStream(c: EncodeCase, sink: Sink): Promise<number> {
  return drain(
    source(c.formatted).pipeThrough(
      new TransformStream<string, Uint8Array>({
        transform(text, controller) {
          controller.enqueue(encoder.encode(text));
        },
      }),
    ),
    sink,
  );
}

/**
 * The floor with each string built at call time by `format`, one template
 * literal and no checks: what every encoder that returns a new string pays
 * before encoding it. The engine keeps such a string as pieces that
 * `TextEncoder.encode` must first join (V8 copies them), which the floor's
 * ready strings never need.
 */
function floorBuilt(c: EncodeCase, sink: Sink): number {
  let bytes = 0;
  for (const message of c.messages) {
    const out = encoder.encode(format(message));
    bytes += out.length;
    sink?.(out);
  }
  return bytes;
}

/** The stream floor with each string built at call time (see `floorBuilt`). */
function floorBuiltStream(c: EncodeCase, sink: Sink): Promise<number> {
  return drain(
    source(c.messages).pipeThrough(
      new TransformStream<EncodeCase["messages"][number], Uint8Array>({
        transform(message, controller) {
          controller.enqueue(encoder.encode(format(message)));
        },
      }),
    ),
    sink,
  );
}

function eventsourceEncoder(c: EncodeCase, sink: Sink): number {
  let bytes = 0;
  for (const message of c.messages) {
    const out = encoder.encode(eventsourceEncode(message));
    bytes += out.length;
    sink?.(out);
  }
  return bytes;
}

const identity = (data: unknown): string => String(data);

function betterSse(c: EncodeCase, sink: Sink): number {
  // The serializer a better-sse session uses, with strings passed through
  // as they are (its default would JSON-quote them).
  const buffer = new EventBuffer({ serializer: identity });
  let bytes = 0;
  for (const message of c.messages) {
    if (message.event !== undefined) buffer.event(message.event);
    if (message.id !== undefined) buffer.id(message.id);
    const out = encoder.encode(buffer.data(message.data).dispatch().read());
    buffer.clear();
    bytes += out.length;
    sink?.(out);
  }
  return bytes;
}

async function hono(c: EncodeCase, sink: Sink): Promise<number> {
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const stream = new SSEStreamingApi(writable, readable);
  const drained = drain(stream.responseReadable, sink);
  for (const message of c.messages) await stream.writeSSE(message);
  await stream.close();
  return await drained;
}

async function jsext(c: EncodeCase, sink: Sink): Promise<number> {
  const endpoint = new EventEndpoint(new Request("http://127.0.0.1/"));
  const drained = drain(endpoint.response!.body!, sink);
  for (const message of c.messages) {
    if (message.event !== undefined) {
      await endpoint.sendEvent(message.event, message.data, message.id);
    } else {
      await endpoint.send(message.data, message.id);
    }
  }
  endpoint.close();
  return await drained;
}

const ssekit = await loadSsekit();
const functions: [string, Encode][] = [
  ["eventsource-encoder", eventsourceEncoder],
  ["better-sse EventBuffer", betterSse],
];
const streams: [string, Encode][] = [
  ["hono writeSSE", hono],
  ["jsext EventEndpoint", jsext],
];
const encodeEvent = ssekit.encodeServerSentEvent;
if (encodeEvent) {
  functions.push(["ssekit encodeServerSentEvent", (c, sink) => {
    let bytes = 0;
    for (const message of c.messages) {
      const out = encoder.encode(encodeEvent(message));
      bytes += out.length;
      sink?.(out);
    }
    return bytes;
  }]);
}
const EncoderStream = ssekit.ServerSentEventStream;
if (EncoderStream) {
  streams.push(["ssekit ServerSentEventStream", (c, sink) => {
    return drain(
      source<Message>(c.messages).pipeThrough(new EncoderStream()),
      sink,
    );
  }]);
}

/** Encodes once and parses the output back; throws unless it round-trips. */
async function verify(name: string, c: EncodeCase, encode: Encode) {
  const decoder = new TextDecoder();
  const seen: { data: string; event?: string; id?: string }[] = [];
  const parser = createParser({
    onEvent(e) {
      seen.push({ data: e.data, event: e.event ?? "", id: e.id ?? "" });
    },
  });
  await encode(
    c,
    (bytes) => parser.feed(decoder.decode(bytes, { stream: true })),
  );
  if (seen.length !== c.messages.length) {
    throw new Error(
      `${c.group}: ${name} produced ${seen.length} events, expected ${c.messages.length}`,
    );
  }
  c.messages.forEach((m, i) => {
    const e = seen[i];
    if (
      !e || e.data !== m.data || e.event !== (m.event ?? "") ||
      (m.id !== undefined && e.id !== m.id)
    ) {
      throw new Error(
        `${c.group}: ${name} event ${i} is ${JSON.stringify(e)}, expected ${
          JSON.stringify(m)
        }`,
      );
    }
  });
}

for (const c of encodeCases({ quick }).filter((c) => selected(c.group))) {
  const forms: [string, [string, Encode][], Encode, Encode][] = [
    [`${c.group} function`, functions, floor, floorBuilt],
    [`${c.group} stream`, streams, floorStream, floorBuiltStream],
  ];
  for (const [group, encoders, floorEncode, builtEncode] of forms) {
    const stream = group.endsWith("stream");
    const floorName = stream ? "floor (stream)" : "floor";
    const builtName = stream ? "floor (built, stream)" : "floor (built)";
    await verify(floorName, c, floorEncode);
    await verify(builtName, c, builtEncode);
    const benches: GroupBench[] = [{
      name: floorName,
      group,
      baseline: true,
      async fn() {
        await floorEncode(c, undefined);
      },
    }, {
      name: builtName,
      group,
      async fn() {
        await builtEncode(c, undefined);
      },
    }];
    for (const [name, encode] of encoders) {
      await verify(name, c, encode);
      benches.push({
        name,
        group,
        async fn() {
          await encode(c, undefined);
        },
      });
    }
    await benchGroup(benches);
  }
}
