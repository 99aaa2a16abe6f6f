import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { existsSync, readlinkSync } from "node:fs";

/**
 * Linux network namespaces for tests that want hosts on really separate network stacks: each
 * namespace has its own loopback and one veth link to the root namespace (where the test and
 * its nats-server run), on a private /30 of its own. Needs root and iproute2's `ip netns`.
 *
 * Names are `ab-<pid of the test process>-<random hex>-<suffix>`, so concurrent runs never meet,
 * and namespaces left by a run that died (its pid gone) can be recognised and removed.
 */

const IP_CANDIDATES = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"];

export function ipBinary(): string | undefined {
  return IP_CANDIDATES.find((p) => existsSync(p));
}

function ip(args: string[], opts: { allowFail?: boolean } = {}): string {
  const bin = ipBinary();
  if (!bin) throw new Error("iproute2 `ip` is not installed");
  const r = spawnSync(bin, args, { encoding: "utf8", timeout: 10_000 });
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`ip ${args.join(" ")} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr || r.stdout || "").trim()}`);
  }
  return r.stdout ?? "";
}

/** Why network namespaces cannot be used here (undefined: they can), after really creating one. */
export function netnsUnavailable(): string | undefined {
  const uid = process.getuid?.();
  const need = "needs root and iproute2 `ip netns` (network namespaces)";
  if (process.platform !== "linux") return `${need}; this is ${process.platform}`;
  if (uid !== 0) return `${need}; running as uid ${uid ?? "unknown"}`;
  const bin = ipBinary();
  if (!bin) return `${need}; no \`ip\` binary in ${IP_CANDIDATES.join(", ")} (apt-get install iproute2)`;
  const probe = `ab-${process.pid}-${randomBytes(4).toString("hex")}-probe`;
  const add = spawnSync(bin, ["netns", "add", probe], { encoding: "utf8", timeout: 10_000 });
  if (add.status !== 0) return `${need}; \`ip netns add\` failed: ${(add.stderr || add.error?.message || "").trim()}`;
  // A veth pair too: some containers allow namespaces but not creating links.
  const ifname = `abp${randomBytes(4).toString("hex")}`;
  const veth = spawnSync(bin, ["link", "add", ifname, "type", "veth", "peer", "name", "veth0", "netns", probe], { encoding: "utf8", timeout: 10_000 });
  spawnSync(bin, ["link", "del", ifname], { timeout: 10_000 });
  spawnSync(bin, ["netns", "del", probe], { timeout: 10_000 });
  if (veth.status !== 0) return `${need} with veth links; \`ip link add ... type veth\` failed: ${(veth.stderr || veth.error?.message || "").trim()}`;
  return undefined;
}

/** The network namespace of a process, as the kernel names it ("net:[4026531833]"); undefined if it is gone. */
export function netnsOf(pid: number | "self"): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

interface Cidr {
  base: number;
  bits: number;
}

const toInt = (a: string) => a.split(".").reduce((n, o) => (n << 8) + Number(o), 0) >>> 0;
const mask = (bits: number) => (bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0);
const overlaps = (a: Cidr, b: Cidr) => {
  const m = mask(Math.min(a.bits, b.bits));
  return ((a.base & m) >>> 0) === ((b.base & m) >>> 0);
};

/** Every IPv4 prefix in use in the root namespace: addresses (with their prefixes) and routes. */
function usedPrefixes(): Cidr[] {
  const out: Cidr[] = [];
  for (const m of ip(["-o", "-4", "addr"]).matchAll(/inet (\d+\.\d+\.\d+\.\d+)\/(\d+)/g)) out.push({ base: toInt(m[1]!), bits: Number(m[2]) });
  for (const table of ["main", "local"]) {
    for (const line of ip(["-4", "route", "show", "table", table], { allowFail: true }).split("\n")) {
      const m = /^(?:\S+ )?(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?\b/.exec(line.trim());
      if (m) out.push({ base: toInt(m[1]!), bits: m[2] ? Number(m[2]) : 32 });
    }
  }
  return out;
}

export interface Netns {
  /** The namespace's name (`ip netns exec <name> ...`). */
  readonly name: string;
  /** The veth end in the root namespace, and its address (what processes inside connect to). */
  readonly hostIf: string;
  readonly hostIp: string;
  /** The veth end inside the namespace, and its address (what the server sees them connect from). */
  readonly nsIf: string;
  readonly nsIp: string;
  /** The kernel's name of this network stack ("net:[...]"), to compare with /proc/<pid>/ns/net. */
  readonly id: string;
  /** argv that runs a command inside the namespace: ["ip", "netns", "exec", name, ...cmd]. */
  command(cmd: string[]): [string, ...string[]];
  /** Pids of every process in the namespace. */
  pids(): number[];
  /** Takes the namespace's end of the link down (the host is cut off) or up again. */
  setLink(up: boolean): void;
  /** SIGKILLs what still runs inside, deletes the veth pair and the namespace. Idempotent. */
  destroy(): Promise<void>;
}

const live = new Set<Netns>();

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

function removeSync(name: string, hostIf: string | undefined): void {
  killAll(ip(["netns", "pids", name], { allowFail: true }).split(/\s+/).filter(Boolean).map(Number));
  if (hostIf) ip(["link", "del", hostIf], { allowFail: true });
  ip(["netns", "del", name], { allowFail: true });
}

// Last resort if the run dies without its after hooks: nothing of ours outlives the test process.
process.once("exit", () => {
  for (const n of live) removeSync(n.name, n.hostIf);
});

/** Removes namespaces `ab-<pid>-...` whose test process is gone (left by a run that was killed). */
export function removeStaleNetns(): string[] {
  const removed: string[] = [];
  for (const line of ip(["netns", "list"], { allowFail: true }).split("\n")) {
    const m = /^(ab-(\d+)-[0-9a-f]+-\S+)/.exec(line.trim());
    if (!m) continue;
    const pid = Number(m[2]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (err) {
      alive = (err as NodeJS.ErrnoException).code === "EPERM";
    }
    if (alive) continue;
    removeSync(m[1]!, undefined);
    removed.push(m[1]!);
  }
  return removed;
}

/** Names of the namespaces `ip netns list` shows that start with `prefix`. */
export function listNetns(prefix = ""): string[] {
  return ip(["netns", "list"], { allowFail: true })
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((n) => n && n.startsWith(prefix));
}

/**
 * Creates a network namespace joined to the root namespace by a veth pair on a random private
 * 10.x.y.0/30 that nothing on this machine uses: root side .1, namespace side .2, both up,
 * loopback up inside. `group` is shared by the namespaces of one test (their name prefix).
 */
export function createNetns(group: string, suffix: string): Netns {
  const name = `${group}-${suffix}`;
  const bin = ipBinary()!;
  let subnet: number | undefined;
  const used = usedPrefixes();
  for (let i = 0; i < 200 && subnet === undefined; i++) {
    // 10.64.0.0 - 10.254.255.0: a /24 of which we take the first /30; the whole /24 must be free.
    const candidate = toInt(`10.${randomInt(64, 255)}.${randomInt(0, 256)}.0`);
    if (!used.some((u) => overlaps(u, { base: candidate, bits: 24 }))) subnet = candidate;
  }
  if (subnet === undefined) throw new Error("no free 10.x.y.0/24 for a veth link: every candidate overlaps an address or route");
  const dotted = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");
  const hostIp = dotted(subnet + 1);
  const nsIp = dotted(subnet + 2);
  // Interface names are at most 15 characters; the host side must be unique in the root namespace.
  const hostIf = `abv${randomBytes(5).toString("hex")}`;
  const nsIf = "veth0";
  ip(["netns", "add", name]);
  let created = false;
  try {
    ip(["link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", name]);
    created = true;
    ip(["addr", "add", `${hostIp}/30`, "dev", hostIf]);
    ip(["link", "set", hostIf, "up"]);
    ip(["-n", name, "addr", "add", `${nsIp}/30`, "dev", nsIf]);
    ip(["-n", name, "link", "set", nsIf, "up"]);
    ip(["-n", name, "link", "set", "lo", "up"]);
    const id = execFileSync(bin, ["netns", "exec", name, "readlink", "/proc/self/ns/net"], { encoding: "utf8" }).trim();
    let destroyed: Promise<void> | undefined;
    const ns: Netns = {
      name,
      hostIf,
      hostIp,
      nsIf,
      nsIp,
      id,
      command: (cmd) => [bin, "netns", "exec", name, ...cmd],
      pids: () => ip(["netns", "pids", name], { allowFail: true }).split(/\s+/).filter(Boolean).map(Number),
      setLink(up) {
        ip(["-n", name, "link", "set", nsIf, up ? "up" : "down"]);
      },
      destroy() {
        destroyed ??= (async () => {
          // Processes keep a namespace (and its links) alive after `ip netns del`: kill them first.
          const end = Date.now() + 5_000;
          for (let pids = ns.pids(); pids.length > 0 && Date.now() < end; pids = ns.pids()) {
            killAll(pids);
            await new Promise((r) => setTimeout(r, 20));
          }
          removeSync(name, hostIf);
          live.delete(ns);
        })();
        return destroyed;
      },
    };
    live.add(ns);
    return ns;
  } catch (err) {
    removeSync(name, created ? hostIf : undefined);
    throw err;
  }
}

/** A group name for the namespaces of one test: `ab-<pid>-<hex>`. */
export function netnsGroup(): string {
  return `ab-${process.pid}-${randomBytes(3).toString("hex")}`;
}
