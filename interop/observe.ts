/**
 * The client side of the conversation (see `scenario.ts`): what an
 * `EventSource` or an `EventConsumer` sees of it.
 *
 * @module
 */

import type {
  ConsumerObservation,
  SeenEvent,
  SourceObservation,
} from "./scenario.ts";

/** The part of the WHATWG `EventSource` the observer uses. */
export interface EventSourceLike {
  readonly readyState: number;
  addEventListener(type: string, listener: (event: Event) => void): void;
  close(): void;
}

/** An `EventSource` constructor: the runtime's, a package's or ssekit's. */
export type EventSourceClass = new (url: string) => EventSourceLike;

/**
 * Opens `url` with `EventSourceClass` and records every `message` and
 * `update` event, `open`s and the `readyState` at each `error`, until an
 * `error` leaves it `CLOSED` or `deadline` ms pass. Then closes it.
 *
 * Self-contained on purpose (no imports, no outer names): the browser
 * harness sends its source text to the page.
 */
export function observeEventSource(
  EventSourceClass: EventSourceClass,
  url: string,
  deadline: number,
): Promise<SourceObservation> {
  return new Promise((resolve) => {
    const events: SeenEvent[] = [];
    const errors: number[] = [];
    let opens = 0;
    let source: EventSourceLike;
    try {
      source = new EventSourceClass(url);
    } catch (error) {
      resolve({
        kind: "EventSource",
        events,
        opens,
        errors,
        finalReadyState: -1,
        timedOut: false,
        failure: String(error),
      });
      return;
    }
    let done = false;
    const finish = (timedOut: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const finalReadyState = source.readyState;
      source.close();
      resolve({
        kind: "EventSource",
        events,
        opens,
        errors,
        finalReadyState,
        timedOut,
      });
    };
    const timer = setTimeout(() => finish(true), deadline);
    const record = (event: Event) => {
      const message = event as MessageEvent;
      events.push({
        type: message.type,
        data: String(message.data),
        lastEventId: message.lastEventId,
      });
    };
    source.addEventListener("message", record);
    source.addEventListener("update", record);
    source.addEventListener("open", () => opens++);
    source.addEventListener("error", () => {
      errors.push(source.readyState);
      if (source.readyState === 2) finish(false);
    });
  });
}

/** The part of ssekit's `EventConsumer` the harness uses. */
export interface EventConsumerLike extends EventTarget {
  readonly lastEventId: string;
  readonly retry: number;
  close(): void;
}

/** ssekit's `EventConsumer` constructor. */
export type EventConsumerClass = new (response: Response) => EventConsumerLike;

/** Reads one response to its end; aborts the request at the deadline. */
async function consumeOnce(
  EventConsumerClass: EventConsumerClass,
  url: string,
  lastEventId: string,
  deadline: number,
): Promise<{ events: SeenEvent[]; consumer: EventConsumerLike }> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), deadline);
  try {
    const response = await fetch(url, {
      headers: lastEventId === "" ? {} : { "last-event-id": lastEventId },
      signal: abort.signal,
    });
    const consumer = new EventConsumerClass(response);
    const events: SeenEvent[] = [];
    const record = (event: Event) => {
      const message = event as MessageEvent;
      events.push({
        type: message.type,
        data: String(message.data),
        lastEventId: message.lastEventId,
      });
    };
    consumer.addEventListener("message", record);
    consumer.addEventListener("update", record);
    await new Promise((resolve) => consumer.addEventListener("close", resolve));
    return { events, consumer };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The conversation through `EventConsumer`, which never reconnects: the
 * harness reconnects by hand with the consumer's `lastEventId`, as its docs
 * say to, then makes the third request and tries a consumer on its answer.
 */
export async function observeConsumer(
  EventConsumerClass: EventConsumerClass,
  url: string,
  deadline: number,
): Promise<ConsumerObservation> {
  const observation: ConsumerObservation = {
    kind: "EventConsumer",
    events: [],
    retries: [],
    thirdStatus: 0,
    thirdConsumerError: "",
  };
  try {
    let lastEventId = "";
    for (let i = 0; i < 2; i++) {
      const { events, consumer } = await consumeOnce(
        EventConsumerClass,
        url,
        lastEventId,
        deadline,
      );
      observation.events.push(...events);
      observation.retries.push(consumer.retry);
      lastEventId = consumer.lastEventId;
    }
    const third = await fetch(url, {
      headers: { "last-event-id": lastEventId },
    });
    observation.thirdStatus = third.status;
    try {
      new EventConsumerClass(third).close();
    } catch (error) {
      observation.thirdConsumerError = error instanceof Error
        ? error.name
        : String(error);
    }
    await third.body?.cancel();
  } catch (error) {
    observation.failure = String(error);
  }
  return observation;
}
