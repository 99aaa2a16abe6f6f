import { execFile } from "node:child_process";
import { randomInt } from "node:crypto";
import { accessSync, constants, existsSync, readdirSync, readFileSync } from "node:fs";
import { delimiter, isAbsolute, join } from "node:path";
import type { ResolvedExecutorOptions } from "./options.ts";

/**
 * What the sandbox can enforce on this machine, found once per pool by trying it: spawning
 * through `unshare -n` and `setpriv` either works here or not, whatever the docs say.
 */
export interface SandboxPlan {
  enabled: boolean;
  /** Absolute path of the interpreter actually run. */
  python: string;
  pythonVersion: string;
  /** "unshare -n" / "unshare -rn" when user code has no network, else null. */
  netns: string | null;
  /** Each interpreter runs under a fresh uid: RLIMIT_NPROC holds and strays can be swept by uid. */
  dedicatedUid: boolean;
  /** Protections asked for but not in force here, in words (also reported by stats()). */
  unavailable: string[];
  /** Other facts worth knowing (e.g. which python was substituted and why). */
  notes: string[];
  setpriv: string | null;
  kill: string | null;
}

/** Public view of the plan (stats().sandbox). */
export interface SandboxInfo {
  enabled: boolean;
  python: string;
  pythonVersion: string;
  network: "isolated" | "allowed";
  networkIsolation: string | null;
  dedicatedUid: boolean;
  limits: { memoryBytes: number; fileSizeBytes: number; maxProcesses: number | null; cpuSeconds: number | "per call" } | null;
  unavailable: string[];
  notes: string[];
}

const SAFE_PATH = "/usr/local/bin:/usr/bin:/bin";
const FALLBACK_PYTHONS = ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"];
// Far above the uids of real accounts and of the usual subordinate-id ranges (100000+65536*n).
const UID_MIN = 2_000_000_000;
const UID_MAX = 2_100_000_000;

export function pickUid(): number {
  return randomInt(UID_MIN, UID_MAX);
}

function which(name: string, path = process.env.PATH ?? ""): string | null {
  if (name.includes("/")) return existsSync(name) ? name : null;
  for (const d of path.split(delimiter).concat(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])) {
    if (!d) continue;
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 10_000): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      resolve({ ok: !err, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

// The interpreter's identity: a python under an unreadable prefix (e.g. pyenv in /root) may still
// start as another uid, with the system's libpython and stdlib: that is not the python asked for.
const IDENTITY = "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3]); print(sys.prefix)";

/** The wrapper argv (before the python executable) for one interpreter. */
export function wrapperArgs(plan: SandboxPlan, uid: number | null): string[] {
  const argv: string[] = [];
  if (plan.netns === "unshare -n") argv.push("unshare", "-n", "--");
  else if (plan.netns === "unshare -rn") argv.push("unshare", "-r", "-n", "--");
  if (plan.dedicatedUid && uid !== null) {
    argv.push(plan.setpriv!, `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--no-new-privs", "--");
  }
  return argv;
}

/** The environment user code sees: nothing of the host's (no NATS credentials, no tokens). */
export function sandboxEnv(opts: ResolvedExecutorOptions, home: string): NodeJS.ProcessEnv {
  if (!opts.sandbox.enabled) return { ...process.env, HOME: process.env.HOME ?? home };
  return { PATH: SAFE_PATH, LANG: "C.UTF-8", LC_ALL: "C.UTF-8", HOME: home, TMPDIR: home, ...opts.sandbox.env };
}

/** Python flags: isolated mode (-I: no PYTHON* variables, no user site, no cwd on sys.path) when sandboxed. */
export function pythonFlags(plan: SandboxPlan): string[] {
  return plan.enabled ? ["-I", "-B"] : ["-B"];
}

interface PythonIdentity {
  path: string;
  version: string;
  prefix: string;
}

async function identify(exe: string, argvPrefix: string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<PythonIdentity | { error: string }> {
  const argv = [...argvPrefix, exe, "-I", "-c", IDENTITY];
  const r = await run(argv[0]!, argv.slice(1), env);
  if (!r.ok) return { error: r.stderr.trim().slice(0, 500) || "no output" };
  const [path, version, prefix] = r.stdout.trim().split("\n");
  return { path: path && isAbsolute(path) ? path : exe, version: version ?? "?", prefix: prefix ?? "?" };
}

async function resolvePython(python: string): Promise<PythonIdentity | { error: string }> {
  // Ask the interpreter itself: PATH shims (pyenv, conda) resolve to the real binary this way.
  const exe = which(python);
  if (!exe) return { error: `python executable "${python}" not found on PATH (${process.env.PATH ?? ""})` };
  const id = await identify(exe);
  return "error" in id ? { error: `"${python}" does not run: ${id.error}` } : id;
}

export async function planSandbox(opts: ResolvedExecutorOptions): Promise<SandboxPlan | { error: string }> {
  const resolved = await resolvePython(opts.python);
  if ("error" in resolved) return resolved;
  const s = opts.sandbox;
  const base: SandboxPlan = {
    enabled: s.enabled,
    python: resolved.path,
    pythonVersion: resolved.version,
    netns: null,
    dedicatedUid: false,
    unavailable: [],
    notes: [],
    setpriv: null,
    kill: null,
  };
  if (!s.enabled) {
    base.unavailable.push("sandbox disabled: no limits, host environment, network allowed");
    return base;
  }

  const isRoot = process.getuid?.() === 0;
  const unshare = which("unshare");
  const setpriv = which("setpriv");
  base.setpriv = setpriv;
  base.kill = which("kill");
  const wantNet = !s.network && unshare !== null;
  const wantUid = s.isolateUser && isRoot && setpriv !== null;
  const netKinds: (string | null)[] = wantNet ? (isRoot ? ["unshare -n", "unshare -rn", null] : ["unshare -rn", null]) : [null];
  const pythons = [resolved.path];
  if (!opts.pythonExplicit) for (const p of FALLBACK_PYTHONS) if (existsSync(p) && !pythons.includes(p)) pythons.push(p);

  // Strongest first: a dedicated uid matters most (it is what contains fork bombs), then the
  // network, then keeping the python the user asked for. Failing candidates fail fast.
  const env = { PATH: SAFE_PATH, LANG: "C.UTF-8", HOME: "/" };
  const probeUid = pickUid();
  let best: { netns: string | null; uid: boolean; python: string; version: string } | undefined;
  let firstError = "";
  const hostIdentity = new Map<string, PythonIdentity | { error: string }>([[resolved.path, resolved]]);
  search: for (const uid of wantUid ? [true, false] : [false]) {
    for (const netns of netKinds) {
      for (const python of pythons) {
        if (!hostIdentity.has(python)) hostIdentity.set(python, await identify(python));
        const want = hostIdentity.get(python)!;
        if ("error" in want) continue;
        const got = await identify(python, wrapperArgs({ ...base, netns, dedicatedUid: uid }, probeUid), env);
        if ("error" in got) {
          firstError ||= got.error;
          continue;
        }
        if (got.version === want.version && got.prefix === want.prefix) {
          best = { netns, uid, python, version: got.version };
          break search;
        }
      }
    }
  }
  if (!best) return { error: `cannot start ${resolved.path} even without isolation: ${(firstError || "no output").slice(0, 500)}` };
  const plan: SandboxPlan = { ...base, python: best.python, pythonVersion: best.version, netns: best.netns, dedicatedUid: best.uid };
  if (best.python !== resolved.path) {
    plan.notes.push(
      `${opts.python} resolves to ${resolved.path}, which an unprivileged sandbox uid cannot run (e.g. under /root); ` +
        `using ${best.python} instead. Set the python option to choose, or sandbox.isolateUser: false to keep ${resolved.path}`,
    );
  }
  if (!s.network && plan.netns === null) {
    plan.unavailable.push(unshare ? "network isolation: unshare -n / -rn failed here (no privileges or user namespaces)" : "network isolation: unshare(1) not installed");
  }
  if (!plan.dedicatedUid) {
    if (!s.isolateUser) plan.unavailable.push("dedicated uid: turned off (sandbox.isolateUser false): maxProcesses is not enforced");
    else if (!isRoot) plan.unavailable.push("dedicated uid: needs root; maxProcesses is enforced by RLIMIT_NPROC only, which counts all processes of this user");
    else plan.unavailable.push(setpriv ? "dedicated uid: setpriv failed here: maxProcesses is not enforced (root ignores RLIMIT_NPROC)" : "dedicated uid: setpriv(1) not installed: maxProcesses is not enforced (root ignores RLIMIT_NPROC)");
  }
  return plan;
}

export function sandboxInfo(plan: SandboxPlan | undefined, opts: ResolvedExecutorOptions): SandboxInfo {
  const s = opts.sandbox;
  return {
    enabled: s.enabled,
    python: plan?.python ?? opts.python,
    pythonVersion: plan?.pythonVersion ?? "unknown",
    network: s.enabled && !s.network && plan?.netns ? "isolated" : "allowed",
    networkIsolation: plan?.netns ?? null,
    dedicatedUid: plan?.dedicatedUid ?? false,
    limits: s.enabled
      ? {
          memoryBytes: s.memoryBytes,
          fileSizeBytes: s.fileSizeBytes,
          maxProcesses: plan?.dedicatedUid || process.getuid?.() !== 0 ? s.maxProcesses : null,
          cpuSeconds: s.cpuSeconds ?? "per call",
        }
      : null,
    unavailable: plan ? [...plan.unavailable] : ["not yet known: the sandbox is being probed"],
    notes: plan ? [...plan.notes] : [],
  };
}

/** rlimits the runner applies to itself before any user code (names of Python's resource module). */
export function rlimitsFor(plan: SandboxPlan, opts: ResolvedExecutorOptions): Record<string, number> {
  if (!plan.enabled) return {};
  const s = opts.sandbox;
  const limits: Record<string, number> = { RLIMIT_AS: s.memoryBytes, RLIMIT_FSIZE: s.fileSizeBytes };
  // Without a uid of its own, NPROC would count (and starve) every process of the host user.
  if (plan.dedicatedUid) limits.RLIMIT_NPROC = s.maxProcesses;
  return limits;
}

/** Live (not zombie) processes whose real uid is `uid`, from /proc. */
export function processesOfUid(uid: number): number[] {
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return pids;
  }
  for (const e of entries) {
    if (e.charCodeAt(0) < 48 || e.charCodeAt(0) > 57) continue;
    let status: string;
    try {
      status = readFileSync(`/proc/${e}/status`, "latin1");
    } catch {
      continue; // exited meanwhile
    }
    const u = /\nUid:\s+(\d+)/.exec(status);
    if (!u || Number(u[1]) !== uid) continue;
    const st = /\nState:\s+(\S)/.exec(status);
    if (st && (st[1] === "Z" || st[1] === "X")) continue;
    pids.push(Number(e));
  }
  return pids;
}

/**
 * Kills every process of a dedicated uid, however it escaped its process group (setsid, double
 * fork). `kill -KILL -1` run as that uid signals all of them in one kernel pass, so a fork bomb
 * cannot outrun it; /proc is re-read until nothing of the uid is left.
 */
export async function sweepUid(plan: SandboxPlan, uid: number): Promise<boolean> {
  // `kill -1` as any other uid (root above all) would hit unrelated processes: only ours.
  if (!Number.isInteger(uid) || uid < UID_MIN || uid >= UID_MAX) throw new Error(`refusing to sweep uid ${uid}: not a sandbox uid`);
  for (let round = 0; round < 50; round++) {
    const pids = processesOfUid(uid);
    if (pids.length === 0) return true;
    if (plan.setpriv && plan.kill) {
      await run(plan.setpriv, [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--", plan.kill, "-KILL", "-1"], { PATH: SAFE_PATH }, 5_000);
    } else {
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
    }
    await new Promise((r) => setTimeout(r, Math.min(5 * round, 50)));
  }
  return processesOfUid(uid).length === 0;
}

/** Reads VmRSS of a process (bytes), or undefined when it is gone. */
export function rssOf(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const m = /\nVmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
