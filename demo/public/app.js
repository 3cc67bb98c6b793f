// The demo page: plain browser JavaScript, no build step. Everything live
// arrives through one native EventSource on /events.

const WINDOW_MS = 60_000;
/** Ticks come every 500 ms; a longer silence means the server was down. */
const GAP_MS = 900;
const WIRE_FRAMES = 5;
const CHAT_KEEP = 200;

const $ = (id) => document.getElementById(id);

/** State the page shows; also read by demo/browser_check.ts. */
const demo = {
  state: "CONNECTING",
  lastEventId: "",
  reconnects: 0,
  received: 0,
  replayed: 0,
  duplicates: 0,
  resets: 0,
  opens: 0,
  /** Every chat id in arrival order, including the snapshot's. */
  chatIds: [],
  /** The id the first stream started after (the snapshot's last id). */
  snapshotId: "",
  /** Every event id that came over the stream, in arrival order. */
  streamIds: [],
};
globalThis.__demo = demo;

const seen = new Set();
let ticks = [];
let source = null;
let openedAt = 0;

// --- connection -----------------------------------------------------------

/**
 * Opens the stream. The starting id goes in the query because a new
 * EventSource cannot set Last-Event-ID itself; on its own reconnects the
 * browser sends the header, which the server prefers.
 */
function connect(fromId) {
  const url = fromId
    ? `/events?lastEventId=${encodeURIComponent(fromId)}`
    : "/events";
  source = new EventSource(url);
  setState("CONNECTING");
  source.addEventListener("open", () => {
    demo.opens++;
    if (demo.opens > 1) demo.reconnects++;
    openedAt = Date.now();
    setState("OPEN");
  });
  source.addEventListener("error", () => {
    setState(
      source.readyState === EventSource.CLOSED ? "CLOSED" : "CONNECTING",
    );
  });
  source.addEventListener("tick", (e) => receive(e, onTick));
  source.addEventListener("chat", (e) => receive(e, onChat));
  // The server's history no longer reaches back to our id: start over from a
  // fresh snapshot instead of silently missing events.
  source.addEventListener("reset", () => {
    demo.resets++;
    seen.clear();
    source.close();
    start();
  });
}

function receive(event, handle) {
  demo.received++;
  demo.streamIds.push(event.lastEventId);
  if (event.lastEventId) {
    if (seen.has(event.lastEventId)) {
      demo.duplicates++;
      render();
      return;
    }
    seen.add(event.lastEventId);
    demo.lastEventId = event.lastEventId;
  }
  const data = JSON.parse(event.data);
  // Only a reconnect resumes: on the first open the page starts from its
  // snapshot, and events published since then are new to it, not replays.
  const replayed = demo.opens > 1 && data.t < openedAt;
  if (replayed) demo.replayed++;
  addWireFrame(event, replayed);
  handle(data, event.lastEventId);
  render();
}

function setState(state) {
  demo.state = state;
  $("state").textContent = state;
  $("state-dot").className = `dot ${state.toLowerCase()}`;
}

async function start() {
  let snapshot;
  try {
    const response = await fetch("/state");
    if (!response.ok) throw new Error(`GET /state: ${response.status}`);
    snapshot = await response.json();
  } catch {
    // The server is down right now: try again, as EventSource would.
    setState("CONNECTING");
    setTimeout(start, 1000);
    return;
  }
  ticks = [];
  $("messages").replaceChildren();
  for (const tick of snapshot.ticks) onTick(tick, tick.id);
  for (const message of snapshot.chat) onChat(message, message.id);
  for (const item of [...snapshot.ticks, ...snapshot.chat]) seen.add(item.id);
  demo.lastEventId = snapshot.lastEventId;
  demo.snapshotId = snapshot.lastEventId;
  demo.streamIds = [];
  render();
  connect(snapshot.lastEventId);
}

// --- ticker ---------------------------------------------------------------

function onTick(tick) {
  ticks.push(tick);
  const cutoff = tick.t - WINDOW_MS;
  while (ticks.length && ticks[0].t < cutoff) ticks.shift();
  if (tick.members !== undefined) $("members").textContent = tick.members;
  if (tick.boot) {
    $("server-start").textContent = new Date(tick.boot).toLocaleTimeString();
  }
  drawChart();
}

function drawChart() {
  if (ticks.length === 0) return;
  const last = ticks[ticks.length - 1];
  const first = ticks[0];
  $("price").textContent = last.price.toFixed(2);
  const change = (last.price / first.price - 1) * 100;
  const changeEl = $("change");
  changeEl.textContent = `${change >= 0 ? "▲" : "▼"} ${
    Math.abs(change).toFixed(2)
  }%`;
  changeEl.className = `change ${change >= 0 ? "up" : "down"}`;

  const width = 600;
  const height = 220;
  const pad = 16;
  const prices = ticks.map((t) => t.price);
  let lo = Math.min(...prices);
  let hi = Math.max(...prices);
  if (hi - lo < 0.5) {
    const mid = (hi + lo) / 2;
    lo = mid - 0.25;
    hi = mid + 0.25;
  }
  const t1 = last.t;
  const t0 = t1 - WINDOW_MS;
  const x = (t) => ((t - t0) / WINDOW_MS) * width;
  const y = (p) => pad + (1 - (p - lo) / (hi - lo)) * (height - 2 * pad);

  // Break the line where the server was down instead of bridging the gap.
  const segments = [];
  const gaps = [];
  ticks.forEach((tick, i) => {
    const prev = ticks[i - 1];
    if (!prev || tick.t - prev.t > GAP_MS) {
      if (prev) gaps.push([x(prev.t), x(tick.t)]);
      segments.push([]);
    }
    segments.at(-1).push(`${x(tick.t).toFixed(1)},${y(tick.price).toFixed(1)}`);
  });
  $("line").setAttribute(
    "d",
    segments.map((points) => `M${points.join("L")}`).join(""),
  );
  $("area").setAttribute(
    "d",
    segments.map((points) => {
      const left = points[0].split(",")[0];
      const right = points.at(-1).split(",")[0];
      return `M${left},${height}L${points.join("L")}L${right},${height}Z`;
    }).join(""),
  );
  $("gaps").replaceChildren(
    ...gaps.map(([a, b]) => svg("rect", { x: a, y: 0, width: b - a, height })),
  );
  const dot = $("dot");
  dot.setAttribute("cx", x(last.t));
  dot.setAttribute("cy", y(last.price));

  const grid = [];
  for (let i = 0; i <= 3; i++) {
    const p = lo + ((hi - lo) * i) / 3;
    grid.push(svg("line", { x1: 0, x2: width, y1: y(p), y2: y(p) }));
    const label = svg("text", { x: 4, y: y(p) - 3 });
    label.textContent = p.toFixed(2);
    grid.push(label);
  }
  $("grid").replaceChildren(...grid);
}

function svg(name, attributes) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [key, value] of Object.entries(attributes)) {
    el.setAttribute(key, String(value));
  }
  return el;
}

// --- chat -----------------------------------------------------------------

function onChat(message, id) {
  demo.chatIds.push(id);
  const li = document.createElement("li");
  li.dataset.id = id;
  const who = document.createElement("span");
  who.className = message.system ? "who system" : "who";
  who.textContent = message.system ? "server" : message.name;
  const body = document.createElement("span");
  body.className = message.system ? "body system" : "body";
  body.textContent = message.text;
  const badge = document.createElement("span");
  badge.className = "id";
  badge.textContent = `#${id} · ${new Date(message.t).toLocaleTimeString()}`;
  li.append(who, body, badge);
  const list = $("messages");
  list.append(li);
  while (list.children.length > CHAT_KEEP) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

async function sendChat(event) {
  event.preventDefault();
  const text = $("text").value.trim();
  const name = $("name").value.trim() || "guest";
  if (!text) return;
  localStorage.setItem("ssekit-demo-name", name);
  $("text").value = "";
  // Not shown locally: the message appears when the broadcast comes back,
  // exactly as in every other tab.
  const response = await fetch("/chat", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, text }),
  });
  if (!response.ok) $("text").value = text;
}

// --- panel ----------------------------------------------------------------

function addWireFrame(event, replayed) {
  const li = document.createElement("li");
  if (replayed) li.className = "replayed";
  const lines = [];
  if (event.lastEventId) lines.push(["id", event.lastEventId]);
  lines.push(["event", event.type]);
  const data = event.data.length > 90
    ? `${event.data.slice(0, 87)}...`
    : event.data;
  lines.push(["data", data]);
  for (const [key, value] of lines) {
    const k = document.createElement("span");
    k.className = "k";
    k.textContent = `${key}: `;
    li.append(k, `${value}\n`);
  }
  if (replayed) li.append("↻ replayed on resume");
  const wire = $("wire");
  wire.prepend(li);
  while (wire.children.length > WIRE_FRAMES) wire.lastElementChild.remove();
}

function render() {
  $("last-id").textContent = demo.lastEventId || "—";
  $("reconnects").textContent = demo.reconnects;
  $("received").textContent = demo.received;
  $("replayed").textContent = demo.replayed;
  $("duplicates").textContent = demo.duplicates;
  $("duplicates").className = demo.duplicates ? "bad" : "";
}

// --- start ----------------------------------------------------------------

$("name").value = localStorage.getItem("ssekit-demo-name") ??
  `guest-${Math.floor(Math.random() * 900 + 100)}`;
$("chat-form").addEventListener("submit", sendChat);
$("drop").addEventListener("click", () => {
  // A new EventSource, resuming from the last id this page saw; its open
  // counts as a reconnect like the browser's own.
  source.close();
  connect(demo.lastEventId);
});
start();
