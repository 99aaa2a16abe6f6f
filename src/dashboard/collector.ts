import type { ServiceReport } from "../service/index.ts";
import { collectStatus } from "../service/index.ts";
import type { RegistryWatch, Services } from "../registry/index.ts";
import { History } from "./history.ts";
import type { DashboardEvent, ExecutorView, HistoryPoint, InferenceView, NamespaceSnapshot } from "./types.ts";
import { agentViews, executorView, inferenceView, kindOf, replicaViews, serviceViews, type ExecutorStatsLike, type InferenceStatsLike, type Totals } from "./views.ts";

/** Events kept for a page that connects later. */
const MAX_EVENTS = 200;

export interface CollectorParams {
  services: Services;
  intervalMs: number;
  historySeconds: number;
  /** A new snapshot (with this poll's history points) or an event, for the pages watching. */
  emit(type: "snapshot", data: NamespaceSnapshot & { points: Record<string, HistoryPoint> }): void;
  emit(type: "event", data: DashboardEvent): void;
}

type StatsHandle = { stats(): Promise<unknown> };

/**
 * Follows one namespace: polls what `actorbus status` collects (collectStatus: controllers,
 * instances, agents) plus the stats() of inference servers and executors every intervalMs,
 * watches the registry to show changes at once (and poll right after them), and turns replica
 * state changes between polls into events.
 */
export class NamespaceCollector {
  readonly namespace: string;
  readonly history: History;
  readonly events: DashboardEvent[] = [];
  latest: NamespaceSnapshot;
  /** The last controller reports, by service name (the restart action needs their incarnations). */
  reports = new Map<string, ServiceReport>();

  private readonly totals = new Map<string, Totals>();
  private readonly inferenceTotals = new Map<string, Totals>();
  private readonly replicaStates = new Map<string, string>();
  private readonly handles = new Map<string, StatsHandle>();
  /** stats() calls this collector made to each service since the last status read. */
  private ownCalls = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private watch: RegistryWatch | undefined;
  private watching: Promise<void> | undefined;
  private firstPoll = true;
  private wakeWatch: (() => void) | undefined;

  constructor(private readonly p: CollectorParams) {
    this.namespace = p.services.namespace;
    this.history = new History(p.historySeconds);
    this.latest = { namespace: this.namespace, at: Date.now(), services: [], replicas: [], agents: [], inference: [], executors: [] };
  }

  /** Starts the watch and the polls; resolves after the first poll (so a page never sees nothing). */
  async start(): Promise<void> {
    this.watching = this.watchLoop();
    await this.refresh();
  }

  /** Polls now; a call during a poll makes one more poll follow it (a change it may have missed). */
  refresh(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.polling) {
      this.again = true;
      return this.polling;
    }
    clearTimeout(this.timer);
    this.polling = (async () => {
      try {
        do {
          this.again = false;
          await this.poll();
        } while (this.again && !this.closed);
      } finally {
        this.polling = undefined;
        if (!this.closed) this.timer = setTimeout(() => void this.refresh(), this.p.intervalMs);
      }
    })();
    return this.polling;
  }

  /** Records something the dashboard did (an action) as an event of this namespace. */
  note(service: string, text: string): void {
    this.push({ namespace: this.namespace, at: Date.now(), type: "action", service, text });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.wakeWatch?.();
    await this.watch?.close();
    await this.watching;
    await this.polling?.catch(() => {});
  }

  private push(e: DashboardEvent): void {
    this.events.push(e);
    if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS);
    this.p.emit("event", e);
  }

  private async poll(): Promise<void> {
    const { services } = this.p;
    const at = Date.now();
    // Below the interval, so a slow controller delays one poll rather than piling them up.
    const timeoutMs = Math.max(500, Math.min(2_000, this.p.intervalMs));
    let snapshot: NamespaceSnapshot;
    try {
      const status = await collectStatus(services, timeoutMs);
      this.reports = new Map(status.services.map((r) => [r.name, r]));
      const serviceList = serviceViews(status, at, this.totals, this.ownCalls);
      this.ownCalls = new Map();
      const replicas = replicaViews(status);
      const [inference, executors] = await Promise.all([
        Promise.all(status.records.filter((r) => kindOf(r) === "inference").map((r) => this.inference(r.name, at, timeoutMs))),
        Promise.all(status.records.filter((r) => kindOf(r) === "executor").map((r) => this.executor(r.name, timeoutMs))),
      ]);
      const names = new Set(status.records.map((r) => r.name));
      for (const name of this.handles.keys()) if (!names.has(name)) this.handles.delete(name);
      for (const name of this.inferenceTotals.keys()) if (!names.has(name)) this.inferenceTotals.delete(name);
      snapshot = { namespace: this.namespace, at, services: serviceList, replicas, agents: agentViews(status.hosts), inference, executors };
      this.replicaEvents(snapshot);
    } catch (err) {
      if (this.closed) return;
      snapshot = { ...this.latest, at, error: (err as Error)?.message ?? String(err) };
    }
    if (this.closed) return;
    this.latest = snapshot;
    const points = snapshot.error ? {} : this.history.add(at, snapshot.services);
    this.p.emit("snapshot", { ...snapshot, points });
  }

  private replicaEvents(s: NamespaceSnapshot): void {
    const known = new Set(this.replicaStates.keys());
    for (const r of s.replicas) {
      const key = `${r.service}\u0000${r.replica}`;
      known.delete(key);
      const was = this.replicaStates.get(key);
      this.replicaStates.set(key, r.state);
      // The first poll and replicas that just appeared are the baseline, not changes.
      if (this.firstPoll || was === undefined || was === r.state) continue;
      this.push({ namespace: this.namespace, at: s.at, type: "replica", service: r.service, text: `replica ${r.replica}: ${was} -> ${r.state}${r.restarts ? ` (${r.restarts} restart${r.restarts === 1 ? "" : "s"})` : ""}` });
    }
    for (const key of known) this.replicaStates.delete(key);
    this.firstPoll = false;
  }

  private handle(name: string, timeoutMs: number): StatsHandle {
    this.ownCalls.set(name, (this.ownCalls.get(name) ?? 0) + 1);
    let h = this.handles.get(name);
    if (!h) this.handles.set(name, (h = this.p.services.at<StatsHandle>(name, { timeoutMs }) as unknown as StatsHandle));
    return h;
  }

  private async inference(name: string, at: number, timeoutMs: number): Promise<InferenceView> {
    try {
      const st = (await this.handle(name, timeoutMs).stats()) as InferenceStatsLike;
      const view = inferenceView(name, st, this.inferenceTotals.get(name), at);
      this.inferenceTotals.set(name, { at, calls: st.requests, errors: 0 });
      return view;
    } catch (err) {
      this.handles.delete(name);
      return { name, meanBatchSize: 0, queued: undefined, requestsPerSecond: 0, p50ModelMs: 0, batches: 0, error: (err as Error)?.message ?? String(err) };
    }
  }

  private async executor(name: string, timeoutMs: number): Promise<ExecutorView> {
    try {
      return executorView(name, (await this.handle(name, timeoutMs).stats()) as ExecutorStatsLike);
    } catch (err) {
      this.handles.delete(name);
      return { name, poolSize: 0, busy: 0, idle: 0, queued: 0, restarts: 0, error: (err as Error)?.message ?? String(err) };
    }
  }

  private async watchLoop(): Promise<void> {
    while (!this.closed) {
      try {
        this.watch = this.p.services.watch();
        if (this.closed) await this.watch.close();
        for await (const ev of this.watch) {
          const text = ev.type === "registered" ? `registered (${kindOf(ev.record)}, ${ev.record.className})` : "removed";
          this.push({ namespace: this.namespace, at: Date.now(), type: ev.type, service: ev.name, text });
          void this.refresh();
        }
      } catch {
        // The registry is unreachable (the polls say so on the page); watch again after a pause.
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.p.intervalMs);
        this.wakeWatch = () => (clearTimeout(t), resolve());
      });
    }
  }
}
