// TEMPORARY stand-in for channel.ts's EventChannel while it is being written.
// Not committed. Same shape as the contract: join/leave/publish/stats.
import { encodeServerSentEvent, type EventEndpoint } from "../sse.ts";

export interface StoredEvent {
  id: string;
  text: string;
}

export interface InterimStore {
  load(): StoredEvent[];
  append(event: StoredEvent): void;
}

export class EventChannel {
  #members = new Set<EventEndpoint>();
  #history: StoredEvent[];
  #next: number;
  #store: InterimStore;
  #published = 0;
  constructor(store: InterimStore) {
    this.#store = store;
    this.#history = store.load();
    const last = this.#history.at(-1);
    this.#next = last ? Number(last.id) + 1 : 1;
  }
  join(endpoint: EventEndpoint): void {
    const from = endpoint.lastEventId;
    if (from !== "") {
      const at = this.#history.findIndex((e) => e.id === from);
      if (at === -1) {
        endpoint.write(encodeServerSentEvent({ event: "reset", data: from }))
          .catch(() => {});
      } else {
        for (const e of this.#history.slice(at + 1)) {
          endpoint.write(e.text).catch(() => {});
        }
      }
    }
    this.#members.add(endpoint);
    endpoint.addEventListener("close", () => this.leave(endpoint));
  }
  leave(endpoint: EventEndpoint): void {
    this.#members.delete(endpoint);
  }
  publish(message: { event?: string; data: string }): string {
    const id = String(this.#next++);
    const text = encodeServerSentEvent({ ...message, id });
    const stored = { id, text };
    this.#history.push(stored);
    if (this.#history.length > 2000) this.#history.shift();
    this.#store.append(stored);
    this.#published++;
    for (const m of this.#members) m.write(text).catch(() => {});
    return id;
  }
  stats(): { members: number; published: number } {
    return { members: this.#members.size, published: this.#published };
  }
}
