import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { includedPaths, readProjectFile, renderReadme } from "./readme.ts";

describe("README.md", () => {
  test("quotes every included file exactly as it is", () => {
    const readme = readProjectFile("README.md");
    const stale = includedPaths(readme).filter((path) => {
      const block = renderReadme(
        `<!-- include: ${path} -->\n<!-- /include -->`,
        readProjectFile,
      );
      return !readme.includes(block);
    });
    assert.deepEqual(stale, [], "run `node tools/readme.ts` to refresh them");
  });

  test("is for users: short, no generated tables, ends with links to the results", () => {
    const readme = readProjectFile("README.md");
    const size = new TextEncoder().encode(readme).length;
    assert.ok(size <= 16_000, `README.md is ${size} bytes; at most 16 000`);
    const sections = [...readme.matchAll(/^## (.+)$/gm)].map((m) => m[1]);
    for (
      const wanted of [
        "Install",
        "Quick start",
        "Servers and frameworks",
        "Clients",
        "In the browser",
        "Limitations",
        "API reference",
        "Quality",
      ]
    ) {
      assert.ok(sections.includes(wanted), `a "## ${wanted}" section`);
    }
    assert.equal(sections.at(-1), "Quality", "Quality comes last");
    assert.deepEqual(
      includedPaths(readme).filter((path) => path.endsWith(".md")),
      [],
      "generated tables live in their RESULTS.md, not in the README",
    );
    for (
      const link of [
        "docs/API.md",
        "conformance/RESULTS.md",
        "interop/RESULTS.md",
        "bench/RESULTS.md",
      ]
    ) {
      assert.ok(readme.includes(`](${link})`), `links ${link}`);
    }
  });

  test("every example the README quotes names how to run it", () => {
    const readme = readProjectFile("README.md");
    for (const path of includedPaths(readme)) {
      assert.match(readProjectFile(path), /^\/\/ Run: /m, path);
    }
  });

  test("an include block is refilled from its file", () => {
    const files: Record<string, string> = {
      "a.ts": "let a = 1;\n",
      "t.md": "<!-- generated -->\n\n# Results\n\n## On Deno\n\n| x |\n",
    };
    const readme = "# T\n<!-- include: a.ts -->\nold\n<!-- /include -->\n" +
      "<!-- include: t.md -->\n<!-- /include -->\n";
    assert.equal(
      renderReadme(readme, (path) => files[path]!),
      "# T\n<!-- include: a.ts -->\n\n```ts\nlet a = 1;\n```\n\n<!-- /include -->\n" +
        // A generated table loses its comment and title; its headings nest
        // under the README section that includes it.
        "<!-- include: t.md -->\n\n### On Deno\n\n| x |\n\n<!-- /include -->\n",
    );
  });
});
