/**
 * Writes `docs/API.md`, the API reference, from the JSDoc of the public
 * modules (`deno doc --json mod.ts`). Signatures are quoted from the source
 * as written, so parameters keep their defaults and `?`.
 *
 * Usage: `node tools/api_docs.ts` rewrites docs/API.md; with `--check` it
 * only reports, and exits 1, when docs/API.md is out of date.
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const OUTPUT = join(root, "docs", "API.md");

interface Tag {
  kind: string;
  name?: string;
  doc?: string;
  value?: string;
  type?: string;
}
interface JsDoc {
  doc?: string;
  tags?: Tag[];
}
interface Location {
  filename: string;
  line: number;
  byteIndex: number;
}
interface Member {
  name: string;
  kind?: string;
  jsDoc?: JsDoc;
  location: Location;
  accessibility?: string;
  isStatic?: boolean;
}
interface Declaration {
  kind: string;
  declarationKind: string;
  location: Location;
  jsDoc?: JsDoc;
  def: {
    constructors?: Member[];
    properties?: Member[];
    methods?: Member[];
  };
}
interface DocSymbol {
  name: string;
  declarations: Declaration[];
}

/** The modules, in the order the reference lists them. */
const MODULES: [file: string, entry: string, title: string][] = [
  ["sse.ts", "ssekit/server", "Server"],
  ["client.ts", "ssekit/client", "Client"],
  ["channel.ts", "ssekit/channel", "Broadcast"],
  ["redis.ts", "ssekit/redis", "Several instances on Redis"],
];

const sources = new Map<string, Buffer>();
function source(filename: string): Buffer {
  let bytes = sources.get(filename);
  if (!bytes) {
    bytes = readFileSync(fileURLToPath(filename));
    sources.set(filename, bytes);
  }
  return bytes;
}

/**
 * The declaration's header as written in the source: from its start to the
 * `{` that opens its body or the `;` that ends it (outside brackets).
 */
function signature(location: Location): string {
  const text = source(location.filename).subarray(location.byteIndex)
    .toString("utf8");
  let depth = 0;
  let end = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "(" || c === "[" || c === "<") depth++;
    else if (c === ")" || c === "]" || (c === ">" && text[i - 1] !== "=")) {
      depth--;
    } else if (depth === 0 && (c === ";" || c === "{")) {
      // `{` opens a body only after the parameters or a class/interface name;
      // a type literal in an interface property (`x: {`) is part of it.
      if (c === "{" && /:\s*$/.test(text.slice(0, i))) {
        const close = matching(text, i);
        i = close;
        continue;
      }
      end = i;
      break;
    } else if (depth === 0 && c === "=" && text[i + 1] !== ">") {
      // `const x = …` and `type X = …` keep their value only for types.
      if (!/^(export\s+)?type\s/.test(text)) {
        end = i;
        break;
      }
    }
  }
  const header = text.slice(0, end).replace(/^export\s+/, "").trimEnd();
  const lines = header.split("\n");
  const indent = Math.min(
    ...lines.slice(1).filter((l) => l.trim()).map((l) =>
      l.length - l.trimStart().length
    ),
  );
  // Continuation lines lose the member's indentation, keep their own.
  const shift = Number.isFinite(indent) ? Math.max(0, indent - 2) : 0;
  return [lines[0], ...lines.slice(1).map((l) => l.slice(shift))].join("\n");
}

function matching(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === "{") depth++;
    else if (text[i] === "}" && --depth === 0) return i;
  }
  return text.length;
}

/**
 * The `@default` of the JSDoc just before `location`, read from the source:
 * deno doc cuts a value with braces in it (`@default {{ a: 1 }}`) short.
 */
function defaultFromSource(location: Location): string | undefined {
  const before = source(location.filename).subarray(0, location.byteIndex)
    .toString("utf8");
  const doc = before.slice(before.lastIndexOf("/**"));
  const at = doc.search(/@default\s+\{/);
  if (at < 0) return undefined;
  const open = doc.indexOf("{", at);
  const close = matching(doc, open);
  const value = doc.slice(open + 1, close).replace(/\s*\n\s*\*\s*/g, " ");
  const note = doc.slice(close + 1).split("\n")[0]!.trim();
  return `\`${value.trim()}\`${note ? ` ${note}` : ""}`;
}

function docText(
  jsDoc: JsDoc | undefined,
  level: number,
  location?: Location,
): string {
  if (!jsDoc) return "";
  const parts: string[] = [];
  if (jsDoc.doc) parts.push(links(jsDoc.doc.trim()));
  const tags = jsDoc.tags ?? [];
  const params = tags.filter((t) => t.kind === "param" && t.doc);
  if (params.length) {
    parts.push(
      params.map((t) => `- \`${t.name}\`: ${links(t.doc!.trim())}`).join("\n"),
    );
  }
  for (const tag of tags) {
    if (tag.kind === "default") {
      const value = (location && defaultFromSource(location)) ??
        `\`${tag.value}\``;
      parts.push(`Default: ${value}`);
    }
    if (tag.kind === "return" && tag.doc) {
      parts.push(`Returns: ${links(tag.doc.trim())}`);
    }
    if (tag.kind === "throws") {
      parts.push(
        `Throws${tag.type ? ` \`${tag.type}\`` : ""}: ${
          links(tag.doc?.trim() ?? "")
        }`,
      );
    }
    if (tag.kind === "deprecated") {
      parts.push(`Deprecated: ${links(tag.doc?.trim() ?? "")}`);
    }
  }
  for (const tag of tags) {
    if (tag.kind !== "example" || !tag.doc) continue;
    const [title, ...rest] = tag.doc.trim().split("\n");
    const hashes = "#".repeat(level + 1);
    parts.push(
      rest.length && !title!.startsWith("```")
        ? `${hashes} Example: ${title}\n\n${rest.join("\n").trim()}`
        : `${hashes} Example\n\n${tag.doc.trim()}`,
    );
  }
  return parts.join("\n\n");
}

/** `{@link X}`, `{@linkcode X}` and `{@link url | text}` as Markdown. */
function links(text: string): string {
  return text.replace(
    /\{@link(code)?\s+([^}|\s]+)(?:\s*\|\s*([^}]+))?\}/g,
    (_, code: string | undefined, target: string, label?: string) => {
      if (/^https?:/.test(target)) return `[${label ?? target}](${target})`;
      const name = label ?? target;
      const anchor = target.split(".")[0]!.toLowerCase();
      return `[${code ? `\`${name}\`` : name}](#${anchor})`;
    },
  );
}

function members(declaration: Declaration): string {
  const def = declaration.def;
  const all = [
    ...(def.constructors ?? []),
    ...(def.properties ?? []),
    ...(def.methods ?? []),
  ].filter((m) =>
    !m.name.startsWith("#") && m.accessibility !== "private" &&
    m.accessibility !== "protected"
  );
  // Overloads and getter/setter pairs share a location's neighbourhood; each
  // source position is shown once, in source order.
  const seen = new Set<number>();
  const unique = all.filter((m) => {
    if (seen.has(m.location.byteIndex)) return false;
    seen.add(m.location.byteIndex);
    return true;
  }).sort((a, b) => a.location.byteIndex - b.location.byteIndex);
  return unique.map((m) => {
    const doc = docText(m.jsDoc, 4, m.location);
    return "```ts\n" + signature(m.location) + "\n```" +
      (doc ? `\n\n${doc}` : "");
  }).join("\n\n");
}

function render(symbols: DocSymbol[]): string {
  const out: string[] = [
    "<!-- Generated by tools/api_docs.ts from the JSDoc (deno doc --json mod.ts). Do not edit. -->",
    "",
    "# ssekit API reference",
    "",
    "Everything is exported from `ssekit` (npm) and `@ssekit/sse` (JSR), and " +
    "from the entry point of its module: `ssekit/server` (`sse.ts`), " +
    "`ssekit/client` (`client.ts`), `ssekit/channel` (`channel.ts`) and " +
    "`ssekit/redis` (`redis.ts`); on JSR `@ssekit/sse/server`, `/client`, " +
    "`/channel` and `/redis`.",
    "",
  ];
  const byFile = (file: string) =>
    symbols.flatMap((s) =>
      s.declarations
        .filter((d) => d.location.filename.endsWith(`/${file}`))
        .map((d) => ({ name: s.name, declaration: d }))
    ).sort((a, b) =>
      a.declaration.location.byteIndex - b.declaration.location.byteIndex
    );
  for (const [file, entry] of MODULES) {
    const names = byFile(file).map(({ name }) =>
      `[${name}](#${name.toLowerCase()})`
    );
    out.push(`- \`${entry}\`: ${[...new Set(names)].join(", ")}`);
  }
  for (const [file, entry, title] of MODULES) {
    out.push("", `## ${title}: \`${entry}\``);
    for (const { name, declaration } of byFile(file)) {
      out.push("", `### ${name}`, "");
      out.push(
        "```ts\n" + signature(declaration.location) + "\n```",
        "",
        `Source: [${file}:${declaration.location.line}](../${file}#L${declaration.location.line})`,
      );
      const doc = docText(declaration.jsDoc, 3);
      if (doc) out.push("", doc);
      const list = members(declaration);
      if (list) out.push("", list);
    }
  }
  return out.join("\n").replace(/\n{3,}/g, "\n\n") + "\n";
}

function main(): number {
  const deno = spawnSync(
    join(root, "node_modules", ".bin", "deno"),
    ["doc", "--json", "mod.ts"],
    { cwd: root, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
  );
  if (deno.status !== 0) {
    console.error(deno.stderr);
    return 1;
  }
  const json = JSON.parse(deno.stdout) as {
    nodes: Record<string, { symbols: DocSymbol[] }>;
  };
  const symbols = Object.values(json.nodes).flatMap((n) => n.symbols);
  // deno fmt writes Markdown its way: format the result the same way.
  const formatted = spawnSync(
    join(root, "node_modules", ".bin", "deno"),
    ["fmt", "--ext", "md", "-"],
    { cwd: root, encoding: "utf8", input: render(symbols) },
  ).stdout;
  let current = "";
  try {
    current = readFileSync(OUTPUT, "utf8");
  } catch {
    // not written yet
  }
  if (current === formatted) return 0;
  if (process.argv.includes("--check")) {
    console.error(
      "docs/API.md is out of date with the JSDoc: run `node tools/api_docs.ts`.",
    );
    return 1;
  }
  mkdirSync(join(root, "docs"), { recursive: true });
  writeFileSync(OUTPUT, formatted);
  console.log(`docs/API.md written (${formatted.length} bytes)`);
  return 0;
}

process.exit(main());
