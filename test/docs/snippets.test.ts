import { expect } from "chai";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { testUrl } from "../helpers/nats.ts";

/**
 * Every fenced TypeScript/JavaScript block of the docs runs, so none can rot. A block whose first
 * line is `// name.ts` (or .js/.mjs) is a module that later blocks import; every other block is a
 * program, run to its end with node under tsx, against the suite's server, with `"actorbus"`
 * pointing at this repository's sources. A program must exit 0 by itself: anything it leaves
 * open (a connection, a timer) makes it hang and fail.
 */
const REPO = fileURLToPath(new URL("../..", import.meta.url));
const DOCS = ["README.md", "src/executor/README.md"];
const ENTRY = pathToFileURL(join(REPO, "src", "index.ts")).href;
// Resolved here: `--import tsx` would resolve from the snippet's temp folder.
const TSX = createRequire(join(REPO, "package.json")).resolve("tsx");
const FENCE = /^```(ts|typescript|js|javascript|mjs)\s*\n([\s\S]*?)^```\s*$/gm;
const MODULE_HEADER = /^\/\/ ([\w-]+\.(?:ts|js|mjs))\s*$/;

interface Block {
  doc: string;
  line: number;
  code: string;
  module?: string;
}

function fencedBlocks(doc: string): Block[] {
  const text = readFileSync(join(REPO, doc), "utf8");
  const out: Block[] = [];
  for (const m of text.matchAll(FENCE)) {
    const code = m[2]!;
    const line = text.slice(0, m.index).split("\n").length;
    const header = MODULE_HEADER.exec(code.split("\n")[0]!);
    out.push({ doc, line, code, ...(header ? { module: header[1]! } : {}) });
  }
  return out;
}

const linkToSources = (code: string) => code.replace(/(from\s+|import\s*\(\s*)(["'])actorbus\2/g, `$1$2${ENTRY}$2`);

describe("docs: every fenced TypeScript/JavaScript block runs", function () {
  this.timeout(120_000);
  for (const doc of DOCS) {
    describe(doc, function () {
      const blocks = fencedBlocks(doc);
      let dir: string;
      before(() => {
        dir = mkdtempSync(join(tmpdir(), "actorbus-docs-"));
        // Snippets use top-level await: ES modules, as in an app with "type": "module".
        writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }));
        // Other packages the docs import (an OpenTelemetry SDK) resolve as in the app that
        // installed them: from node_modules, here this repository's.
        symlinkSync(join(REPO, "node_modules"), join(dir, "node_modules"));
      });
      after(() => rmSync(dir, { recursive: true, force: true }));

      it("has blocks to run", () => expect(blocks.filter((b) => !b.module)).not.to.be.empty);

      for (const block of blocks) {
        const title = block.module ? `line ${block.line}: module ${block.module}` : `line ${block.line}: runs`;
        it(title, async function () {
          if (block.module) {
            writeFileSync(join(dir, block.module), linkToSources(block.code));
            return;
          }
          const file = join(dir, `snippet-${block.line}.ts`);
          writeFileSync(file, `${linkToSources(block.code)}\nexport {};\n`);
          try {
            await promisify(execFile)(process.execPath, ["--import", TSX, file], {
              cwd: dir,
              env: { ...process.env, NATS_URL: testUrl() },
              timeout: 90_000,
            });
          } catch (err) {
            const e = err as { code?: unknown; signal?: unknown; stdout?: string; stderr?: string };
            throw new Error(`${doc}:${block.line} failed (exit ${String(e.code)}${e.signal ? `, ${String(e.signal)}` : ""})\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
          }
        });
      }
    });
  }
});
