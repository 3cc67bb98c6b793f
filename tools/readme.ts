/**
 * Keeps README.md in step with the files it quotes, so no example or results
 * table in it is ever typed by hand.
 *
 * A block `<!-- include: examples/x.ts -->` … `<!-- /include -->` holds a copy
 * of that file: TypeScript as a fenced `ts` block, Markdown (the generated
 * conformance, interop and benchmark tables) as it is, less its title.
 *
 * Usage: `node tools/readme.ts` rewrites README.md; with `--check` it only
 * reports, and exits 1, when README.md is out of date.
 *
 * @module
 */

import { readFileSync, writeFileSync } from "node:fs";
import process from "node:process";

const INCLUDE = /<!-- include: (\S+) -->\n[\s\S]*?<!-- \/include -->/g;

/** The path of every file the README includes, in order. */
export function includedPaths(readme: string): string[] {
  return [...readme.matchAll(INCLUDE)].map((match) => match[1]!);
}

/** The README with every include block refilled from `read(path)`. */
export function renderReadme(
  readme: string,
  read: (path: string) => string,
): string {
  return readme.replace(INCLUDE, (_, path: string) => {
    const text = read(path).trimEnd();
    const body = path.endsWith(".md")
      ? withoutTitle(text)
      : "```ts\n" + text + "\n```";
    // Blank lines around the body, as `deno fmt` writes them.
    return `<!-- include: ${path} -->\n\n${body}\n\n<!-- /include -->`;
  });
}

/**
 * A generated Markdown file without its leading comment and `#` title: the
 * README section that includes it has its own heading.
 */
function withoutTitle(markdown: string): string {
  return nestHeadings(
    markdown.replace(/^(<!--[\s\S]*?-->\s*)?#\s[^\n]*\n+/, ""),
  );
}

/** Demotes headings so the file's top ones become `###`, under the README's `##`. */
function nestHeadings(markdown: string): string {
  const levels = [...markdown.matchAll(/^(#+)\s/gm)].map((m) => m[1]!.length);
  const shift = levels.length ? 3 - Math.min(...levels) : 0;
  if (shift <= 0) return markdown;
  return markdown.replace(
    /^(#+)(?=\s)/gm,
    (hashes) => "#".repeat(hashes.length + shift),
  );
}

const root = new URL("../", import.meta.url);

/** Reads a file of the project, relative to its root. */
export function readProjectFile(path: string): string {
  return readFileSync(new URL(path, root), "utf8");
}

function main(): number {
  const current = readProjectFile("README.md");
  const wanted = renderReadme(current, readProjectFile);
  if (current === wanted) return 0;
  if (process.argv.includes("--check")) {
    console.error(
      "README.md is out of date with the files it includes: run `node tools/readme.ts`.",
    );
    return 1;
  }
  writeFileSync(new URL("README.md", root), wanted);
  console.log("README.md updated");
  return 0;
}

if (import.meta.main) process.exit(main());
