/**
 * A {@linkcode HistoryStore} for the demo's channel that survives a restart:
 * one JSON line per event, appended synchronously as it is published, so even
 * a killed server has every event it sent on disk, and a browser that
 * reconnects to the next process can resume from its `Last-Event-ID`.
 *
 * It uses `node:fs`, so it (and its test) runs on Deno, Bun and Node.
 *
 * @module
 */

import {
  appendFileSync,
  mkdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import { dirname } from "node:path";
import type {
  EventId,
  HistoryBounds,
  HistoryEntry,
  HistoryStore,
} from "../mod.ts";

/** Options for {@linkcode FileHistoryStore}. */
export interface FileHistoryStoreOptions {
  /**
   * Events kept. The file is rewritten with the newest `maxCount` once it
   * holds twice as many, so appends stay cheap.
   *
   * @default {2000}
   */
  maxCount?: number;
}

/** One line of the file. The event-stream text is UTF-8 by definition. */
interface Line {
  id: EventId;
  topic?: string;
  text: string;
}

/** Events kept in memory and in a JSON-lines file. */
export class FileHistoryStore implements HistoryStore {
  readonly #path: string;
  readonly #maxCount: number;
  #entries: HistoryEntry[] = [];
  /** Index in `#entries` of each id, offset by `#shifted`. */
  #positions = new Map<EventId, number>();
  #shifted = 0;
  /** A client whose last event was the one evicted last missed nothing. */
  #lastEvictedId: EventId | undefined;
  #lines = 0;
  #encoder = new TextEncoder();
  #decoder = new TextDecoder();

  /**
   * Loads the file if it exists; a line torn by a kill mid-write is skipped
   * (that event was never sent).
   *
   * @param path The file; its directory is created if needed.
   * @param options Options.
   */
  constructor(path: string, options: FileHistoryStoreOptions = {}) {
    const { maxCount = 2000 } = options;
    if (!Number.isSafeInteger(maxCount) || maxCount < 1) {
      throw new RangeError(
        `Cannot create FileHistoryStore: maxCount is ${maxCount}, expected an integer >= 1`,
      );
    }
    this.#path = path;
    this.#maxCount = maxCount;
    mkdirSync(dirname(path), { recursive: true });
    const { lines, torn } = readLines(path);
    for (const line of lines) {
      this.#keep({
        id: line.id,
        topic: line.topic,
        bytes: this.#encoder.encode(line.text),
      });
      this.#lines++;
    }
    // Appending after a torn line would glue the next event onto it.
    if (torn) this.#compact();
  }

  /** The file's path. */
  get path(): string {
    return this.#path;
  }

  /** The events held, oldest first. */
  entries(): readonly HistoryEntry[] {
    return this.#entries;
  }

  /** Records an event, in memory and on disk, before returning. */
  append(entry: HistoryEntry): void {
    this.#keep(entry);
    appendFileSync(this.#path, this.#line(entry));
    if (++this.#lines >= 2 * this.#maxCount) this.#compact();
  }

  /** The events after `id`, or `null` when `id` is unknown or evicted. */
  readAfter(id: EventId): HistoryEntry[] | null {
    if (id === this.#lastEvictedId) return this.#entries.slice();
    const position = this.#positions.get(id);
    if (position === undefined) return null;
    return this.#entries.slice(position - this.#shifted + 1);
  }

  /** How many events are held, and the oldest and newest ids. */
  bounds(): HistoryBounds {
    return {
      count: this.#entries.length,
      oldestId: this.#entries[0]?.id,
      newestId: this.#entries.at(-1)?.id,
    };
  }

  #keep(entry: HistoryEntry): void {
    this.#positions.set(entry.id, this.#shifted + this.#entries.length);
    this.#entries.push(entry);
    if (this.#entries.length > this.#maxCount) {
      const evicted = this.#entries.shift()!;
      this.#positions.delete(evicted.id);
      this.#lastEvictedId = evicted.id;
      this.#shifted++;
    }
  }

  #line(entry: HistoryEntry): string {
    const line: Line = {
      id: entry.id,
      text: this.#decoder.decode(entry.bytes),
    };
    if (entry.topic !== undefined) line.topic = entry.topic;
    return JSON.stringify(line) + "\n";
  }

  /** Rewrites the file with only the held events; a rename makes it atomic. */
  #compact(): void {
    const tmp = `${this.#path}.tmp`;
    writeFileSync(
      tmp,
      this.#entries.map((e) => this.#line(e)).join(""),
    );
    renameSync(tmp, this.#path);
    this.#lines = this.#entries.length;
  }
}

/** The file's events; `torn` when a kill cut its last line short. */
function readLines(path: string): { lines: Line[]; torn: boolean } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") {
      return { lines: [], torn: false };
    }
    throw error;
  }
  const lines: Line[] = [];
  let torn = false;
  for (const raw of text.split("\n")) {
    if (raw === "") continue;
    try {
      const line = JSON.parse(raw) as Line;
      if (typeof line.id === "string" && typeof line.text === "string") {
        lines.push(line);
        continue;
      }
    } catch {
      // Skipped below: that event was never sent.
    }
    torn = true;
  }
  return { lines, torn };
}
