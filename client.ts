/**
 * Client side of ssekit: the event-stream parser, `EventConsumer` and
 * `EventSource`.
 *
 * This file imports nothing, so it can be vendored on its own.
 *
 * @module
 */

/** An event dispatched from an event stream. */
export interface ServerSentEvent {
  /** The event type; `"message"` when the stream named none. */
  type: string;
}
