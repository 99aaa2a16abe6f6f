import { expect } from "chai";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";
import { nodeBinaries, type NodeBinary } from "../helpers/node-versions.ts";

/**
 * The package as users get it: `npm pack`, installed into a fresh plain-JavaScript app and a
 * fresh TypeScript app, run with plain `node` (no tsx anywhere in the apps) on every Node
 * version the package supports.
 */
const REPO = fileURLToPath(new URL("../..", import.meta.url));
const JS_EXAMPLE = join(REPO, "examples", "javascript");
const TS_APP = fileURLToPath(new URL("./ts-app", import.meta.url));
const run = promisify(execFile);
const repoRequire = createRequire(join(REPO, "package.json"));

/** A dev dependency's command (npm links it into node_modules/.bin; node follows the link). */
const binOf = (command: string) => join(REPO, "node_modules", ".bin", command);

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command to its end, without throwing on a non-zero exit. */
async function exec(file: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Ran> {
  const started = Date.now();
  try {
    const { stdout, stderr } = await run(file, args, { cwd: opts.cwd, env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 << 20 });
    return { code: 0, stdout, stderr, ms: Date.now() - started };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? String(err), ms: Date.now() - started };
  }
}

function ok(r: Ran, what: string): Ran {
  if (r.code !== 0) throw new Error(`${what} exited with ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r;
}

/** An environment with `node` (and so npx and the package's bin) resolving to `bin`. */
function envFor(bin: NodeBinary, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${dirname(bin.path)}:${process.env.PATH}`, NATS_URL: testUrl(), ...extra };
  // The suite runs under tsx; nothing of it may reach the apps.
  delete env.NODE_OPTIONS;
  delete env.TSX_TSCONFIG_PATH;
  return env;
}

async function npmInstall(dir: string, specs: string[]): Promise<Ran> {
  return ok(await exec("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", ...specs], { cwd: dir, timeoutMs: 240_000 }), `npm install in ${dir}`);
}

describe("the packed package in fresh apps (plain node)", function () {
  this.timeout(600_000);
  const timings: Record<string, number> = {};
  let work: string;
  let tarball: string;
  let jsApp: string;
  let tsApp: string;
  const { found: nodes, missing } = nodeBinaries();

  before(async function () {
    work = mkdtempSync(join(tmpdir(), "actorbus-consumer-"));
    let t = Date.now();
    const packed = ok(await exec("npm", ["pack", "--pack-destination", work, "--json", "--loglevel=error"], { cwd: REPO, timeoutMs: 240_000 }), "npm pack");
    timings.packMs = Date.now() - t;
    const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf("["))) as { filename: string; size: number; unpackedSize: number; files: { path: string }[] }[];
    tarball = join(work, info[0]!.filename);
    console.log(`      packed ${info[0]!.filename}: ${(info[0]!.size / 1024).toFixed(0)} KiB, unpacked ${(info[0]!.unpackedSize / 1024).toFixed(0)} KiB, ${info[0]!.files.length} files`);

    jsApp = join(work, "js-app");
    cpSync(JS_EXAMPLE, jsApp, { recursive: true });
    writeFileSync(join(jsApp, "package.json"), JSON.stringify({ name: "js-app", private: true, type: "module" }, null, 2));
    tsApp = join(work, "ts-app");
    cpSync(TS_APP, tsApp, { recursive: true });
    writeFileSync(join(tsApp, "package.json"), JSON.stringify({ name: "ts-app", private: true, type: "module" }, null, 2));
    t = Date.now();
    // The TypeScript app compiles with the same compiler and Node types this repo pins.
    const tsVersion = (repoRequire("typescript/package.json") as { version: string }).version;
    const typesNode = (repoRequire("@types/node/package.json") as { version: string }).version;
    await Promise.all([npmInstall(jsApp, [tarball]), npmInstall(tsApp, [tarball, `typescript@${tsVersion}`, `@types/node@${typesNode}`])]);
    timings.installMs = Date.now() - t;
  });

  after(function () {
    console.log(`      timings (ms): ${JSON.stringify(timings)}`);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("ships built JavaScript, declarations and runner.py; no sources-only entry points, tests or tsx", function () {
    const pkg = createRequire(join(jsApp, "package.json"))("actorbus/package.json") as Record<string, any>;
    expect(pkg.exports["."].import).to.equal("./dist/index.js");
    expect(pkg.exports["."].types).to.equal("./dist/index.d.ts");
    expect(pkg.dependencies).not.to.have.property("tsx");
    const root = join(jsApp, "node_modules", "actorbus");
    const top = readdirSync(root).sort();
    expect(top).to.include.members(["bin", "dist", "package.json", "README.md"]);
    for (const dir of ["test", "bench", ".ci", "scripts", "examples"]) expect(top).not.to.include(dir);
    expect(readdirSync(join(root, "dist", "executor"))).to.include("runner.py");
    expect(readdirSync(join(jsApp, "node_modules"))).not.to.include("tsx");
  });

  it("passes publint and @arethetypeswrong (esm-only profile)", async function () {
    const publint = ok(await exec(process.execPath, [binOf("publint"), "run", tarball, "--strict"], { cwd: work }), "publint");
    expect(publint.stdout + publint.stderr).to.match(/All good/);
    ok(await exec(process.execPath, [binOf("attw"), tarball, "--profile", "esm-only", "--format", "table-flipped"], { cwd: work }), "attw");
  });

  it("compiles the TypeScript app with tsc (NodeNext, strict, skipLibCheck false)", async function () {
    const t = Date.now();
    ok(await exec(process.execPath, [join(tsApp, "node_modules", "typescript", "bin", "tsc"), "-p", tsApp], { cwd: tsApp }), "tsc");
    timings.tscMs = Date.now() - t;
  });

  it("type-checks under exactOptionalPropertyTypes too (errors only in nats.js' own declarations)", async function () {
    // @nats-io/nats-core 3.4.0's classes declare optional fields their interfaces require, which
    // that flag rejects when libraries are checked; nothing of actorbus' or the app's may fail.
    const r = await exec(process.execPath, [join(tsApp, "node_modules", "typescript", "bin", "tsc"), "-p", join(tsApp, "tsconfig.exact.json")], { cwd: tsApp });
    const errors = r.stdout.split("\n").filter((l) => /error TS\d+/.test(l));
    const ours = errors.filter((l) => !l.startsWith("node_modules/@nats-io/"));
    expect(ours, r.stdout).to.deep.equal([]);
  });

  it(`runs on every supported Node (${missing.length ? `missing from the cache: ${missing.join(", ")}` : "all found"})`, function () {
    // CI installs them (.ci/run); a CI run that cannot find one must not pass quietly.
    if (process.env.CI) expect(missing, "Node versions missing from the cache (.ci/run installs them)").to.deep.equal([]);
  });

  for (const node of nodes) {
    describe(node.label, function () {
      let server: ChildProcess | undefined;
      let ns: string;

      before(async function () {
        ns = uniqueNamespace("consumer");
        // One process registers the service; the others find it by name.
        server = spawn(node.path, ["serve.mjs"], { cwd: jsApp, env: envFor(node, { ACTORBUS_NAMESPACE: ns }), stdio: ["pipe", "pipe", "inherit"] });
        await new Promise<void>((resolve, reject) => {
          server!.once("exit", (code) => reject(new Error(`serve.mjs exited with ${code}`)));
          createInterface({ input: server!.stdout! }).on("line", (l) => l === "serving tokenizer" && resolve());
        });
      });

      after(async function () {
        if (!server || server.exitCode !== null) return;
        const exited = new Promise((r) => server!.once("exit", r));
        server.stdin!.end(); // serve.mjs closes its registry and exits
        await exited;
      });

      it("npx actorbus ls lists the service another process registered", async function () {
        const r = ok(await exec("npx", ["--no-install", "actorbus", "ls", "--namespace", ns], { cwd: jsApp, env: envFor(node) }), "npx actorbus ls");
        timings[`${node.label}: ls`] = r.ms;
        expect(r.stdout).to.contain("tokenizer");
      });

      it("the JavaScript example: remote service, Actor replicas, Python executor, batched inference", async function () {
        const r = ok(await exec(node.path, ["main.mjs"], { cwd: jsApp, env: envFor(node, { ACTORBUS_NAMESPACE: ns }) }), "main.mjs");
        timings[`${node.label}: js app`] = r.ms;
        expect(r.stdout).to.contain('tokens: ["hello","from","plain","node"]');
        expect(r.stdout).to.contain('bytes: {"isUint8Array":true,"length":3}');
        expect(r.stdout).to.contain("numReplicas: 2");
        expect(r.stdout).to.contain("replicas: 2, counts: [10,11]");
        expect(r.stdout).to.contain("python: 42");
        expect(r.stdout).to.match(/inference: \[2,4,6\], batches: [123]/);
        expect(r.stdout).to.contain("done");
      });

      it("replicas on an `actorbus agent` started with plain node", async function () {
        const hostId = `agent-${ns.slice(-6)}`;
        // The package's bin, run by plain node (npx would sit between the test and the agent's signals).
        const agent = spawn(node.path, [join(jsApp, "node_modules", ".bin", "actorbus"), "agent", "--namespace", ns, "--host-id", hostId, "--cpus", "4"], {
          cwd: jsApp,
          env: envFor(node),
          stdio: ["ignore", "pipe", "inherit"],
        });
        try {
          await new Promise<void>((resolve, reject) => {
            agent.once("exit", (code) => reject(new Error(`the agent exited with ${code}`)));
            createInterface({ input: agent.stdout! }).on("line", (l) => l.startsWith(`agent ${hostId} ready`) && resolve());
          });
          const r = ok(await exec(node.path, ["main.mjs"], { cwd: jsApp, env: envFor(node, { ACTORBUS_NAMESPACE: ns }) }), "main.mjs with an agent");
          timings[`${node.label}: js app on an agent`] = r.ms;
          expect(r.stdout).to.contain("replicas: 2, counts: [10,11]");
          expect(r.stdout).to.contain(`hosts: ${hostId}`);
        } finally {
          const exited = new Promise((r) => agent.once("exit", r));
          agent.kill("SIGTERM");
          await exited;
        }
      });

      it("a class launched from the entry module fails at once, naming the fix", async function () {
        const r = await exec(node.path, ["entry-class.mjs"], { cwd: jsApp, env: envFor(node, { ACTORBUS_NAMESPACE: ns }), timeoutMs: 30_000 });
        expect(r.code).to.equal(1);
        expect(r.stderr).to.contain("InvalidOptionsError");
        expect(r.stderr).to.contain("Move the class to a module of its own");
      });

      it("the compiled TypeScript app", async function () {
        const r = ok(await exec(node.path, [join("dist", "main.js")], { cwd: tsApp, env: envFor(node, { ACTORBUS_NAMESPACE: uniqueNamespace("ts") }) }), "ts app");
        timings[`${node.label}: ts app`] = r.ms;
        expect(r.stdout).to.contain("echo: typed");
        expect(r.stdout).to.contain("bad options: INVALID_OPTIONS");
        expect(r.stdout).to.contain("replicas: 2, first: 7, numReplicas: 2");
      });

      // Node 24 strips types and runs `await using` as it is; older ones need a loader for both
      // (Node 22.18 strips types, but has no `await using`).
      const stripsTypes = node.major >= 24;
      it(stripsTypes ? "the TypeScript sources under Node's own type stripping (replicas too)" : "the TypeScript sources under tsx (replicas inherit the loader)", async function () {
        // tsx comes from this repository: the app itself has none, and its replicas must get the
        // loader from the parent's flags.
        const args = stripsTypes ? [join("src", "main.ts")] : ["--import", repoRequire.resolve("tsx"), join("src", "main.ts")];
        const r = ok(await exec(node.path, args, { cwd: tsApp, env: envFor(node, { ACTORBUS_NAMESPACE: uniqueNamespace("tsx") }) }), "ts sources");
        timings[`${node.label}: ts sources`] = r.ms;
        expect(r.stdout).to.contain("replicas: 2, first: 7, numReplicas: 2");
      });
    });
  }
});
