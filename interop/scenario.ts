/**
 * The one conversation every pair of the interop matrix has, and the checks
 * made on what each side observed.
 *
 * Every client connects to `…?key=K` (K names the pair, so that many clients
 * can share one server) and the server answers by the `Last-Event-ID` header:
 *
 * 1. No header: `retry: FIRST_RETRY`, then the four events of
 *    {@linkcode firstEvents}, then the server ends the stream (reconnection
 *    allowed).
 * 2. `Last-Event-ID: K.4`: `retry: SECOND_RETRY`, then one event whose data
 *    echoes the header it got, then the server ends the stream telling the
 *    client not to come back (`close(true)` where the server has it; else the
 *    application remembers).
 * 3. Anything else: `204 No Content`.
 *
 * `FIRST_RETRY` is above every client's default reconnection time (Deno's is
 * 5000 ms, the others' 3000 ms), so a reconnection that comes no earlier than
 * it proves the client used the server's value, without any upper time
 * bound.
 *
 * @module
 */

/** The `retry` of the first connection, in ms. */
export const FIRST_RETRY = 6000;
/** The `retry` of the second connection, in ms (it only speeds up the 204). */
export const SECOND_RETRY = 50;
/** Timer granularity allowed below `FIRST_RETRY` when judging the delay. */
const TIMER_SLACK = 20;

/** The checks, in table order. */
export const CHECKS = [
  "events",
  "ids",
  "custom type",
  "multi-line",
  "non-ASCII",
  "reconnect + Last-Event-ID",
  "retry",
  "204 stops",
] as const;

/** One of {@linkcode CHECKS}. */
export type Check = typeof CHECKS[number];

/** An event as a client saw it. */
export interface SeenEvent {
  type: string;
  data: string;
  lastEventId: string;
}

/** An event the server sends. */
export interface ScriptedEvent {
  /** `undefined` for an unnamed (`message`) event. */
  event?: string;
  data: string;
  id: string;
}

export const MULTI_LINE = "first line\nsecond line\n\nfourth line";
export const NON_ASCII = "héllo wörld ✓ 日本語 🎉";

/** The events of the first connection. */
export function firstEvents(key: string): ScriptedEvent[] {
  return [
    { data: "hello", id: `${key}.1` },
    { event: "update", data: "custom type", id: `${key}.2` },
    { data: MULTI_LINE, id: `${key}.3` },
    { data: NON_ASCII, id: `${key}.4` },
  ];
}

/** The event of the second connection, given the `Last-Event-ID` it got. */
export function resumeEvent(key: string, lastEventId: string): ScriptedEvent {
  return { data: `resumed after ${lastEventId}`, id: `${key}.5` };
}

/** Which step of the conversation a request is, by its `Last-Event-ID`. */
export function phaseOf(key: string, lastEventId: string | null): 1 | 2 | 3 {
  if (lastEventId === null || lastEventId === "") return 1;
  return lastEventId === `${key}.4` ? 2 : 3;
}

/** The key of a request URL (`?key=`), or `""`. */
export function keyOf(url: string): string {
  return new URL(url, "http://127.0.0.1").searchParams.get("key") ?? "";
}

/** A request as the server saw it. */
export interface RequestRecord {
  /** `performance.now()` on arrival. */
  at: number;
  lastEventId: string | null;
  /** The status the server answered. */
  status: number;
}

/** Everything a server saw of one key. */
export interface ServerRecord {
  requests: RequestRecord[];
  /** `performance.now()` when the server ended the first stream. */
  firstStreamEnded?: number;
}

/** What a server saw, per key. Servers fill it in; checks read it. */
export class ServerLog {
  #records = new Map<string, ServerRecord>();

  /** The record of `key`, created empty on first use. */
  of(key: string): ServerRecord {
    let record = this.#records.get(key);
    if (!record) {
      record = { requests: [] };
      this.#records.set(key, record);
    }
    return record;
  }

  /** Notes a request and its answer's status. */
  request(key: string, lastEventId: string | null, status: number): void {
    this.of(key).requests.push({ at: performance.now(), lastEventId, status });
  }

  /** Notes that the first stream of `key` was ended by the server. */
  firstStreamEnded(key: string): void {
    this.of(key).firstStreamEnded ??= performance.now();
  }
}

/** What an `EventSource`-like client observed (see `observe.ts`). */
export interface SourceObservation {
  kind: "EventSource";
  events: SeenEvent[];
  opens: number;
  /** `readyState` at each `error` event. */
  errors: number[];
  /** `readyState` when observation stopped. */
  finalReadyState: number;
  /** Observation stopped at the deadline instead of at `CLOSED`. */
  timedOut: boolean;
  /** An exception thrown by the harness itself, if any. */
  failure?: string;
}

/** What the `EventConsumer` harness observed (see `observe.ts`). */
export interface ConsumerObservation {
  kind: "EventConsumer";
  events: SeenEvent[];
  /** `consumer.retry` after each of the two streams. */
  retries: number[];
  /** Status of the third request, made with the second consumer's id. */
  thirdStatus: number;
  /** What `new EventConsumer(thirdResponse)` threw (error name), or "". */
  thirdConsumerError: string;
  failure?: string;
}

/** Either kind of observation. */
export type Observation = SourceObservation | ConsumerObservation;

/** A cell of the matrix. */
export interface Cell {
  result: "pass" | "fail" | "n/a";
  /** Why, for `fail` and `n/a`: expected and actual values. */
  detail?: string;
}

const show = (value: unknown): string => JSON.stringify(value);

function compare(expected: unknown, actual: unknown): Cell {
  const e = show(expected);
  const a = show(actual);
  return e === a
    ? { result: "pass" }
    : { result: "fail", detail: `expected ${e}, got ${a}` };
}

function fail(detail: string): Cell {
  return { result: "fail", detail };
}

/**
 * The cells of one pair: what the client saw checked against the script,
 * and the server's log checked for the reconnection, its delay and the 204.
 */
export function judge(
  key: string,
  observation: Observation,
  server: ServerRecord,
): Record<Check, Cell> {
  const events = observation.events;
  const expected = [
    ...firstEvents(key),
    resumeEvent(key, `${key}.4`),
  ].map((e) => ({ type: e.event ?? "message", data: e.data, id: e.id }));
  const at = (i: number) => events[i];
  const cells = {} as Record<Check, Cell>;

  cells["events"] = compare(
    { count: 5, first: { type: "message", data: "hello" } },
    {
      count: events.length,
      first: at(0) && { type: at(0)!.type, data: at(0)!.data },
    },
  );
  cells["ids"] = compare(
    expected.map((e) => e.id),
    events.map((e) => e.lastEventId),
  );
  cells["custom type"] = compare(
    { type: "update", data: "custom type" },
    at(1) && { type: at(1)!.type, data: at(1)!.data },
  );
  cells["multi-line"] = compare(MULTI_LINE, at(2)?.data);
  cells["non-ASCII"] = compare(NON_ASCII, at(3)?.data);

  const second = server.requests[1];
  cells["reconnect + Last-Event-ID"] = compare(
    { header: `${key}.4`, data: `resumed after ${key}.4` },
    { header: second?.lastEventId ?? null, data: at(4)?.data ?? null },
  );

  if (observation.kind === "EventConsumer") {
    // The consumer never reconnects: it must report the server's value so
    // that the caller can.
    cells["retry"] = compare(
      [FIRST_RETRY, SECOND_RETRY],
      observation.retries,
    );
    cells["204 stops"] = compare(
      { status: 204, constructor: "TypeError" },
      {
        status: observation.thirdStatus,
        constructor: observation.thirdConsumerError,
      },
    );
  } else {
    const ended = server.firstStreamEnded;
    if (!second || ended === undefined) {
      cells["retry"] = fail(
        `expected a reconnection after the first stream ended, got ${server.requests.length} request(s)`,
      );
    } else {
      const delay = second.at - ended;
      cells["retry"] = delay >= FIRST_RETRY - TIMER_SLACK
        ? { result: "pass" }
        : fail(
          `expected the reconnection no earlier than retry: ${FIRST_RETRY} ms, got it after ${
            Math.round(delay)
          } ms`,
        );
    }
    cells["204 stops"] = compare(
      { statuses: [200, 200, 204], readyState: 2, timedOut: false },
      {
        statuses: server.requests.map((r) => r.status),
        readyState: observation.finalReadyState,
        timedOut: observation.timedOut,
      },
    );
  }
  if (observation.failure) {
    for (const check of CHECKS) {
      if (cells[check].result === "pass") continue;
      cells[check] = fail(
        `${cells[check].detail ?? ""} (harness: ${observation.failure})`,
      );
    }
  }
  return cells;
}
