import type { HistoryPoint, ServiceView } from "./types.ts";

/**
 * Rate and latency of each service over the last `seconds`, one point per poll. Trimmed by time
 * on every add, so memory is bounded by (history / interval) points per live service.
 */
export class History {
  private readonly points = new Map<string, HistoryPoint[]>();

  constructor(private readonly seconds: number) {}

  add(at: number, services: readonly ServiceView[]): Record<string, HistoryPoint> {
    const added: Record<string, HistoryPoint> = {};
    const live = new Set<string>();
    for (const s of services) {
      live.add(s.name);
      let list = this.points.get(s.name);
      if (!list) this.points.set(s.name, (list = []));
      const p: HistoryPoint = [at, round(s.callsPerSecond), round(s.errorRate, 4), round(s.p50Ms), round(s.p99Ms)];
      list.push(p);
      added[s.name] = p;
    }
    const oldest = at - this.seconds * 1000;
    for (const [name, list] of this.points) {
      // A removed service keeps its past until it scrolls out: the chart shows when it went.
      let i = 0;
      while (i < list.length && list[i]![0] < oldest) i++;
      if (i > 0) list.splice(0, i);
      if (list.length === 0 && !live.has(name)) this.points.delete(name);
    }
    return added;
  }

  all(): Record<string, HistoryPoint[]> {
    return Object.fromEntries(this.points);
  }
}

const round = (v: number, digits = 3) => (Number.isFinite(v) ? Number(v.toFixed(digits)) : 0);
