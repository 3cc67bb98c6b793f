import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ChannelMember, EventChannel, type HistoryEntry } from "../mod.ts";
import { FileHistoryStore } from "./file_history_store.ts";

const dir = mkdtempSync(join(tmpdir(), "ssekit-demo-store-"));
after(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
const freshPath = (): string => join(dir, `h${++files}`, "history.jsonl");
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function entry(id: string, topic?: string): HistoryEntry {
  return { id, topic, bytes: encoder.encode(`id:${id}\ndata:${id}\n\n`) };
}

const ids = (entries: readonly HistoryEntry[] | null): string[] | null =>
  entries === null ? null : entries.map((e) => e.id);

/** A member that records the text it is sent. */
class Recorder extends EventTarget implements ChannelMember {
  lastEventId = "";
  closed = false;
  bufferedAmount = 0;
  text = "";
  write(encoded: Uint8Array): Promise<void> {
    this.text += decoder.decode(encoded);
    return Promise.resolve();
  }
  close(): void {
    this.closed = true;
    this.dispatchEvent(new Event("close"));
  }
}

describe("FileHistoryStore", () => {
  test("a new store on the same file holds what the last one appended", () => {
    const path = freshPath();
    const first = new FileHistoryStore(path);
    first.append(entry("a"));
    first.append(entry("b", "news"));
    first.append(entry("c"));
    const second = new FileHistoryStore(path);
    assert.deepEqual(second.bounds(), {
      count: 3,
      oldestId: "a",
      newestId: "c",
    });
    const after = second.readAfter("a")!;
    assert.deepEqual(ids(after), ["b", "c"]);
    assert.equal(after[0]!.topic, "news");
    assert.equal(after[1]!.topic, undefined);
    assert.equal(decoder.decode(after[1]!.bytes), "id:c\ndata:c\n\n");
  });

  test("readAfter: [] for the newest id, null for an unknown one", () => {
    const store = new FileHistoryStore(freshPath());
    store.append(entry("a"));
    assert.deepEqual(store.readAfter("a"), []);
    assert.equal(store.readAfter("zz"), null);
  });

  test("maxCount evicts the oldest; the last evicted id still resumes", () => {
    const store = new FileHistoryStore(freshPath(), { maxCount: 2 });
    for (const id of ["a", "b", "c"]) store.append(entry(id));
    assert.deepEqual(ids(store.readAfter("a")), ["b", "c"]);
    store.append(entry("d"));
    assert.equal(store.readAfter("a"), null);
    assert.deepEqual(ids(store.readAfter("b")), ["c", "d"]);
    assert.deepEqual(ids(store.readAfter("c")), ["d"]);
  });

  test("the file is compacted to maxCount lines once it holds twice as many", () => {
    const path = freshPath();
    const store = new FileHistoryStore(path, { maxCount: 2 });
    for (const id of ["a", "b", "c"]) store.append(entry(id));
    assert.equal(readFileSync(path, "utf8").split("\n").length - 1, 3);
    store.append(entry("d"));
    assert.equal(readFileSync(path, "utf8").split("\n").length - 1, 2);
    assert.deepEqual(ids(new FileHistoryStore(path).entries()), ["c", "d"]);
  });

  test("a line torn by a kill is skipped and the next append is not glued to it", () => {
    const path = freshPath();
    new FileHistoryStore(path).append(entry("a"));
    writeFileSync(path, readFileSync(path, "utf8") + '{"id":"b","te');
    const store = new FileHistoryStore(path);
    assert.deepEqual(ids(store.entries()), ["a"]);
    store.append(entry("c"));
    assert.deepEqual(ids(new FileHistoryStore(path).entries()), ["a", "c"]);
  });

  test("rejects a maxCount below 1", () => {
    assert.throws(
      () => new FileHistoryStore(freshPath(), { maxCount: 0 }),
      /maxCount is 0, expected an integer >= 1/,
    );
  });

  test("an EventChannel in a new process resumes from an id of the old one", async () => {
    const path = freshPath();
    const before = new EventChannel({
      history: new FileHistoryStore(path),
      idPrefix: "one-",
    });
    const [first] = ["a", "b", "c"].map((data) => before.publish({ data }));

    const restarted = new EventChannel({
      history: new FileHistoryStore(path),
      idPrefix: "two-",
    });
    restarted.publish({ data: "d" });
    const member = new Recorder();
    member.lastEventId = first!;
    restarted.join(member);
    restarted.publish({ data: "e" });
    // Delivery happens after the current tick.
    await new Promise((resolve) => setTimeout(resolve, 0));
    // Ids are <idPrefix><epoch>-<n>: the epoch differs per process.
    const received = [...member.text.matchAll(/^id:(.*)-.*-(\d+)$/gm)].map((
      m,
    ) => `${m[1]}-${m[2]}`);
    assert.deepEqual(received, ["one-2", "one-3", "two-1", "two-2"]);
    member.close();
  });
});
