/** Where one session's state lives: an interpreter (slot) and the key of its globals there. */
export interface SessionRec<S> {
  id: string;
  slot: S;
  key: string;
}

const MAX_TOMBSTONES = 10_000;

/**
 * Session -> interpreter pinning with a least-recently-used cap per interpreter, and tombstones
 * that remember (for a while) why a session's state went away, so its next result can say so.
 */
export class SessionTable<S> {
  private readonly byId = new Map<string, SessionRec<S>>();
  /** Per slot, in least-recently-used-first order. */
  private readonly bySlot = new Map<S, Map<string, SessionRec<S>>>();
  private readonly tombstones = new Map<string, string>();
  private nextKey = 1;
  evictions = 0;

  constructor(private readonly maxPerSlot: number) {}

  get size(): number {
    return this.byId.size;
  }

  get(id: string): SessionRec<S> | undefined {
    return this.byId.get(id);
  }

  countOn(slot: S): number {
    return this.bySlot.get(slot)?.size ?? 0;
  }

  touch(rec: SessionRec<S>): void {
    const m = this.bySlot.get(rec.slot);
    if (!m) return;
    m.delete(rec.id);
    m.set(rec.id, rec);
  }

  pin(id: string, slot: S): SessionRec<S> {
    const rec: SessionRec<S> = { id, slot, key: `k${this.nextKey++}` };
    this.byId.set(id, rec);
    let m = this.bySlot.get(slot);
    if (!m) this.bySlot.set(slot, (m = new Map()));
    m.set(id, rec);
    this.tombstones.delete(id);
    return rec;
  }

  remove(rec: SessionRec<S>): void {
    if (this.byId.get(rec.id) === rec) this.byId.delete(rec.id);
    this.bySlot.get(rec.slot)?.delete(rec.id);
  }

  /** Unpins every session of a slot (its interpreter is gone) and returns them. */
  clearSlot(slot: S): SessionRec<S>[] {
    const m = this.bySlot.get(slot);
    if (!m) return [];
    const recs = [...m.values()];
    for (const r of recs) this.byId.delete(r.id);
    m.clear();
    return recs;
  }

  /**
   * Makes room for one more session on `slot`: evicts its least recently used sessions beyond
   * the cap, skipping those `inUse` (a call of theirs is running or waiting). Returns the
   * evicted ones, whose keys the interpreter must drop.
   */
  evictFor(slot: S, inUse: (id: string) => boolean): SessionRec<S>[] {
    const m = this.bySlot.get(slot);
    const out: SessionRec<S>[] = [];
    if (!m || m.size < this.maxPerSlot) return out;
    for (const rec of m.values()) {
      if (m.size - out.length < this.maxPerSlot) break;
      if (inUse(rec.id)) continue;
      out.push(rec);
    }
    for (const rec of out) {
      this.remove(rec);
      this.evictions++;
      this.tombstone(rec.id, `the session was evicted: it was the least recently used of ${this.maxPerSlot} sessions on its interpreter (maxSessionsPerInterpreter)`);
    }
    return out;
  }

  tombstone(id: string, reason: string): void {
    this.tombstones.delete(id);
    this.tombstones.set(id, reason);
    if (this.tombstones.size > MAX_TOMBSTONES) this.tombstones.delete(this.tombstones.keys().next().value!);
  }

  tombstoneOf(id: string): string | undefined {
    return this.tombstones.get(id);
  }

  clearTombstone(id: string): void {
    this.tombstones.delete(id);
  }
}
