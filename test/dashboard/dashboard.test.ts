import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { expect } from "chai";
import { chromium, type Browser, type Page } from "playwright-core";
import { ASSET_FILES, dashboardOptions, startDashboard, type Dashboard } from "../../src/dashboard/index.ts";
import { InvalidOptionsError } from "../../src/errors/index.ts";
import { InferenceServer, NatsTransport, registerInference } from "../../src/inference/index.ts";
import { createMetrics, watchInference } from "../../src/metrics/index.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import { CLI_ARGS } from "../helpers/cli.ts";
import { testUrl, uniqueNamespace, until } from "../helpers/nats.ts";
import { replicaPids } from "../helpers/replicas.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { PROMTOOL, promtoolCheck, valueOf } from "../metrics/exposition.ts";

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

interface CliDashboard {
  child: ChildProcess;
  url: string;
  output: string[];
  stop(): Promise<void>;
}

/** `actorbus dashboard` as users run it, from sources; resolves with the URL it prints. */
async function startCliDashboard(args: string[]): Promise<CliDashboard> {
  const child = spawn(process.execPath, [...CLI_ARGS, "dashboard", "--servers", testUrl(), ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const output: string[] = [];
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.stderr!.on("data", (b: Buffer) => output.push(b.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no dashboard URL within 30 s: ${output.join("")}`)), 30_000);
    child.once("exit", (code) => reject(new Error(`actorbus dashboard exited with ${code}: ${output.join("")}`)));
    createInterface({ input: child.stdout! }).on("line", (l) => {
      output.push(l);
      const m = /^dashboard at (\S+)/.exec(l);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
  });
  return {
    child,
    url,
    output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** POST to an action endpoint; `headers` replace the page's own. */
async function post(url: string, action: string, body: unknown, headers: Record<string, string> = { "x-actorbus-action": "1" }): Promise<{ status: number; body: { ok?: boolean; error?: string; message?: string } }> {
  const res = await fetch(new URL(`api/actions/${action}`, url), { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as { ok?: boolean; error?: string } };
}

/** A GET with a Host header of our choosing (fetch does not let a caller set it). */
function getWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request({ hostname: u.hostname, port: u.port, path: "/api/snapshot", headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once("error", reject);
    req.end();
  });
}

describe("dashboard: the live page in headless Chromium", function () {
  this.timeout(120_000);
  const ns = uniqueNamespace("dash");
  let dir: string;
  let browser: Browser;
  let page: Page;
  let cli: CliDashboard;
  let services: Services;

  before(async function () {
    if (!existsSync(CHROMIUM)) this.skip(); // .ci/run installs Debian's chromium
    dir = mkdtempSync(join(tmpdir(), "actorbus-dashboard-"));
    services = await getServices({ namespace: ns, servers: testUrl() });
    // Polls every 250 ms, so a restart that takes a second shows on several of them.
    cli = await startCliDashboard(["--namespace", ns, "--port", "0", "--interval-ms", "250"]);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(cli.url);
    await page.waitForSelector('#live[data-state="open"]', { timeout: 10_000 });
    await page.waitForSelector("#services td.none", { timeout: 10_000 });
    expect(errors).to.deep.equal([]);
  });

  after(async () => {
    await browser?.close();
    await cli?.stop();
    await services?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("lists a service registered after the page loaded within 2 s, with its registry event", async () => {
    const t0 = Date.now();
    await services.register("late_svc", class {
      ping() {
        return "pong";
      }
    });
    await page.waitForSelector('#services tr[data-service="late_svc"]', { timeout: 2_000 });
    expect(Date.now() - t0).to.be.below(2_000);
    expect(await page.textContent('#services tr[data-service="late_svc"]')).to.contain("actor");
    await page.waitForSelector('#events li[data-event="registered"]:has-text("late_svc")', { timeout: 2_000 });
  });

  it("shows a replica killed with SIGKILL as restarting, then healthy again; saves a screenshot", async () => {
    const svc = await Counter.options({ numReplicas: 1, services, restartBackoffMs: 500 }).asService();
    try {
      const name = svc.status().name;
      const row = `#replicas tr[data-replica="${name}/0"]`;
      await page.waitForSelector(`${row}[data-state="healthy"]`, { timeout: 10_000 });
      for (let i = 0; i < 20; i++) await svc.incr();
      const pid = svc.status().replicas[0]!.pids[0]!;
      expect(await page.textContent(row)).to.contain(String(pid));

      process.kill(pid, "SIGKILL");
      await page.waitForSelector(`${row}[data-state="recovering"]`, { timeout: 10_000 });
      expect(await page.textContent(`${row} .badge`)).to.equal("restarting");
      await page.waitForSelector(`${row}[data-state="healthy"]`, { timeout: 30_000 });
      const newPid = svc.status().replicas[0]!.pids[0]!;
      expect(newPid).to.not.equal(pid);
      await until(async () => (await page.textContent(row))!.includes(String(newPid)), 5_000, "the new pid on the page");
      const cells = await page.$$eval(`${row} td`, (tds) => tds.map((td) => td.textContent));
      expect(cells[7]).to.equal("1"); // restarts
      await page.waitForSelector('#events li[data-event="replica"]:has-text("healthy -> recovering")', { timeout: 2_000 });
      await page.waitForSelector('#events li[data-event="replica"]:has-text("recovering -> healthy")', { timeout: 2_000 });
      // Rate and latency are drawn, one line per service with calls.
      expect(await page.$$eval("#chart-rate svg path", (ps) => ps.length)).to.be.greaterThan(0);

      const shot = join(dir, "dashboard.png");
      await page.screenshot({ path: shot, fullPage: true });
      expect(statSync(shot).size).to.be.greaterThan(10_000);
    } finally {
      await svc.shutdown();
    }
  });

  it("is read-only without --allow-actions: no buttons, and the action endpoints answer 403", async () => {
    expect(await page.isHidden("#reset")).to.equal(true);
    expect(await page.$$("#replicas button")).to.have.length(0);
    const restart = await post(cli.url, "restart", { namespace: ns, service: "late_svc", replica: 0 });
    expect(restart.status).to.equal(403);
    expect(restart.body.error).to.contain("--allow-actions");
    expect((await post(cli.url, "reset", { namespace: ns })).status).to.equal(403);
    expect(await services.list()).to.include("late_svc");
  });

  it("serves its process's Prometheus metrics, registry watch lag included, which promtool accepts", async () => {
    const text = await (await fetch(new URL("metrics", cli.url))).text();
    expect(valueOf(text, "actorbus_registry_watch_lag_seconds_count", { namespace: ns })).to.be.greaterThan(0);
    if (existsSync(PROMTOOL)) {
      const check = promtoolCheck(text);
      expect(check.status, check.output).to.equal(0);
    }
  });

  it("refuses a Host header that is not its own (DNS rebinding), and binds 127.0.0.1", async () => {
    expect(new URL(cli.url).hostname).to.equal("127.0.0.1");
    expect(await getWithHost(cli.url, "evil.example:80")).to.equal(403);
    expect(await getWithHost(cli.url, new URL(cli.url).host)).to.equal(200);
  });
});

describe("dashboard: actions with allowActions, inference servers", function () {
  this.timeout(120_000);
  const ns = uniqueNamespace("dashact");
  let browser: Browser | undefined;
  let services: Services;
  let dashboard: Dashboard;

  before(async function () {
    if (!existsSync(CHROMIUM)) this.skip();
    services = await getServices({ namespace: ns, servers: testUrl() });
    dashboard = await startDashboard({ services, allowActions: true, intervalMs: 250 });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close();
    await dashboard?.close();
    await services?.close();
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  it("restarts a replica from its button, shows an inference server, and resets the namespace", async () => {
    const metrics = await createMetrics();
    const transport = new NatsTransport<number, number>({ connection: services.connection, namespace: ns, name: "policy" });
    const server = new InferenceServer((xs: number[]) => xs.map((x) => x * 2), transport, { collate: (items) => items, maxBatchSize: 16, timeoutMs: 5 }).start();
    const unwatch = watchInference(metrics, "policy", server);
    await registerInference(services, "policy", server);
    const svc = await Counter.options({ numReplicas: 1, services, restartBackoffMs: 500 }).asService();
    try {
      const client = server.client();
      await Promise.all(Array.from({ length: 64 }, (_, i) => client.call(i)));

      const page = await browser!.newPage();
      await page.goto(dashboard.url);
      const name = svc.status().name;
      const row = `#replicas tr[data-replica="${name}/0"]`;
      await page.waitForSelector(`${row}[data-state="healthy"] button:has-text("Restart")`, { timeout: 10_000 });
      await page.waitForSelector('#inference tr[data-inference="policy"]', { timeout: 5_000 });
      const cells = await page.$$eval('#inference tr[data-inference="policy"] td', (tds) => tds.map((td) => td.textContent));
      expect(Number(cells[1])).to.be.greaterThan(1); // mean batch size: 64 concurrent calls, batched
      expect(cells[2]).to.equal("0"); // nothing queued now
      expect(cells[5]).to.equal(String(server.stats().batches));

      // The exposition has the new inference families.
      const text = await metrics.expose();
      expect(valueOf(text, "actorbus_inference_batch_size_count", { server: "policy" })).to.equal(server.stats().batches);
      expect(valueOf(text, "actorbus_inference_model_duration_seconds_count", { server: "policy" })).to.equal(server.stats().batches);
      expect(valueOf(text, "actorbus_inference_queue_depth", { server: "policy" })).to.equal(0);
      expect(valueOf(text, "actorbus_inference_batch_size_bucket", { server: "policy", le: "+Inf" })).to.equal(server.stats().batches);

      const pid = svc.status().replicas[0]!.pids[0]!;
      await page.click(`${row} button`);
      await page.waitForSelector(`${row}[data-state="recovering"]`, { timeout: 10_000 });
      await page.waitForSelector(`${row}[data-state="healthy"]`, { timeout: 30_000 });
      expect(svc.status().replicas[0]!.pids[0]).to.not.equal(pid);
      expect(svc.status().replicas[0]!.restarts).to.equal(1);
      await page.waitForSelector('#events li[data-event="action"]:has-text("restart asked")', { timeout: 2_000 });
      expect(await svc.incr()).to.equal(1); // a new process, fresh state

      // Not from the page (no action header, or another origin): refused even with actions on.
      expect((await post(dashboard.url, "reset", { namespace: ns }, {})).status).to.equal(403);
      expect((await post(dashboard.url, "reset", { namespace: ns }, { "x-actorbus-action": "1", origin: "http://evil.example" })).status).to.equal(403);
      expect((await post(dashboard.url, "restart", { namespace: ns, service: "nope", replica: 0 })).status).to.equal(404);
      expect((await post(dashboard.url, "restart", { namespace: "other_ns", service: name, replica: 0 })).status).to.equal(400);

      page.once("dialog", (d) => void d.accept());
      await page.click("#reset");
      await page.waitForSelector("#services td.none", { timeout: 10_000 });
      expect(await services.list()).to.deep.equal([]);
      await page.close();
    } finally {
      unwatch();
      await svc.shutdown();
      await server.shutdown();
    }
  });
});

describe("dashboard: options and packaging", () => {
  it("rejects unknown keys and bad values through the options kit", async () => {
    const services = await getServices({ backend: "local", namespace: uniqueNamespace("dopt") });
    try {
      const e = await startDashboard({ services, prot: 8080 } as never).catch((x: unknown) => x);
      expect(e).to.be.instanceOf(InvalidOptionsError);
      expect((e as Error).message).to.contain('did you mean "port"?');
      expect(await startDashboard({ services: [] } as never).catch((x: unknown) => x)).to.be.instanceOf(InvalidOptionsError);
      expect(await startDashboard({ services, intervalMs: 5 }).catch((x: unknown) => x)).to.be.instanceOf(InvalidOptionsError);
      expect(await startDashboard({ services: [services, services] }).catch((x: unknown) => x)).to.be.instanceOf(InvalidOptionsError);
      expect(dashboardOptions.defaults()).to.include({ host: "127.0.0.1", allowActions: false });
    } finally {
      await services.close();
    }
  });

  it("works on the local backend too (no agents, no other namespaces)", async () => {
    const services = await getServices({ backend: "local", namespace: uniqueNamespace("dlocal") });
    const d = await startDashboard({ services, intervalMs: 100 });
    try {
      await services.register("adder", class {
        add(a: number, b: number) {
          return a + b;
        }
      });
      await until(async () => {
        const s = (await (await fetch(new URL("api/snapshot", d.url))).json()) as { snapshots: { services: { name: string }[] }[] };
        return s.snapshots[0]!.services.some((x) => x.name === "adder");
      }, 5_000, "the service in the snapshot");
      expect((await fetch(new URL("metrics", d.url))).status).to.equal(404); // started without metrics
      expect((await fetch(d.url)).headers.get("content-security-policy")).to.contain("default-src 'none'");
    } finally {
      await d.close();
      await services.close();
    }
  });

  it("actorbus dashboard --help explains it; a bad flag value is a usage error (exit 2)", async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [...CLI_ARGS, "dashboard", ...args], { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
        child.stderr!.on("data", (b: Buffer) => (out += b.toString()));
        child.once("exit", (code) => resolve({ code, out }));
      });
    const help = await run(["--help"]);
    expect(help.code).to.equal(0);
    expect(help.out).to.contain("--allow-actions").and.contain("127.0.0.1");
    const bad = await run(["--port", "http"]);
    expect(bad.code, bad.out).to.equal(2);
    expect(bad.out).to.contain("--port");
  });

  it("ships its page: scripts/build.mjs copies every asset into dist/", () => {
    const build = readFileSync(new URL("../../scripts/build.mjs", import.meta.url), "utf8");
    for (const f of ASSET_FILES) expect(build, f).to.contain(`"${f}"`);
  });
});
