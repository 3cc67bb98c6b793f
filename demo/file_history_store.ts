/**
 * A history store for the demo's channel that survives a restart: one JSON
 * line per event, appended synchronously at publish, so even a killed server
 * loses nothing it has sent.
 *
 * @module
 */

/** One published event as the channel sent it. */
export interface StoredEvent {
  /** The id the channel gave it. */
  id: string;
  /** The encoded event-stream text, sent as is on replay. */
  text: string;
}

/** Options for {@linkcode FileHistoryStore}. */
export interface FileHistoryStoreOptions {
  /**
   * Events kept. The file is rewritten with the newest `limit` once it holds
   * twice as many, so appends stay cheap.
   *
   * @default {2000}
   */
  limit?: number;
}

/** Events kept in a JSON-lines file. */
export class FileHistoryStore {
  readonly #path: string;
  readonly #limit: number;
  #entries: StoredEvent[];
  #lines: number;

  /**
   * Reads the file if it exists (a torn last line from a kill is skipped).
   *
   * @param path The file; its directory is created if needed.
   * @param options Options.
   */
  constructor(path: string, options: FileHistoryStoreOptions = {}) {
    this.#path = path;
    this.#limit = options.limit ?? 2000;
    Deno.mkdirSync(dirname(path), { recursive: true });
    this.#entries = readLines(path);
    this.#lines = this.#entries.length;
    this.#entries = this.#entries.slice(-this.#limit);
  }

  /** The file's path. */
  get path(): string {
    return this.#path;
  }

  /** The kept events, oldest first. */
  entries(): readonly StoredEvent[] {
    return this.#entries;
  }

  /** @deprecated interim */
  load(): StoredEvent[] {
    return [...this.#entries];
  }

  /**
   * Appends one event to the file before returning.
   *
   * @param event The event.
   */
  append(event: StoredEvent): void {
    this.#entries.push(event);
    if (this.#entries.length > this.#limit) this.#entries.shift();
    Deno.writeTextFileSync(this.#path, JSON.stringify(event) + "\n", {
      append: true,
    });
    if (++this.#lines >= 2 * this.#limit) this.#compact();
  }

  /** Rewrites the file with only the kept events; a rename makes it atomic. */
  #compact(): void {
    const tmp = `${this.#path}.tmp`;
    Deno.writeTextFileSync(
      tmp,
      this.#entries.map((e) => JSON.stringify(e) + "\n").join(""),
    );
    Deno.renameSync(tmp, this.#path);
    this.#lines = this.#entries.length;
  }
}

function dirname(path: string): string {
  const at = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return at <= 0 ? "." : path.slice(0, at);
}

function readLines(path: string): StoredEvent[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  const entries: StoredEvent[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    try {
      const value = JSON.parse(line) as StoredEvent;
      if (typeof value.id === "string" && typeof value.text === "string") {
        entries.push(value);
      }
    } catch {
      // A line cut short by a kill mid-write: that event was never sent.
    }
  }
  return entries;
}
