import { test } from "node:test";
import assert from "node:assert/strict";
import * as mod from "./mod.ts";
import * as sse from "./sse.ts";
import * as client from "./client.ts";
import * as channel from "./channel.ts";
import * as redis from "./redis.ts";

test("mod.ts re-exports every value of sse.ts, client.ts, channel.ts and redis.ts", () => {
  for (const part of [sse, client, channel, redis]) {
    for (const [name, value] of Object.entries(part)) {
      assert.equal((mod as Record<string, unknown>)[name], value, name);
    }
  }
});
