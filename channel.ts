/**
 * Broadcast with history and resume from `Last-Event-ID`.
 *
 * @module
 */

/** A channel's id for an event it published. */
export type EventId = string;
