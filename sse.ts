/**
 * Server side of ssekit: the event-stream encoder and `EventEndpoint`.
 *
 * This file imports nothing, so it can be vendored on its own.
 *
 * @module
 */

/** A message to encode as one block of an event stream. */
export interface ServerSentEventMessage {
  /** The `data` field; split into one `data:` line per line. */
  data?: string;
}
