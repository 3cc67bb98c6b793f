/**
 * ssekit: Server-Sent Events for Deno, Bun and Node.
 *
 * @module
 */

export * from "./sse.ts";
export * from "./client.ts";
export * from "./channel.ts";
export * from "./redis.ts";
