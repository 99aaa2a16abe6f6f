/**
 * The server-side request queue both transports share: bounded, FIFO, with one-shot wake-ups for
 * `waitForWork` and deadline-aware draining. A head index instead of `shift()` keeps draining a
 * batch O(batch) rather than O(queue).
 */
export interface BufferedItem<I> {
  readonly input: I;
  /** performance.now() at arrival. */
  readonly receivedAt: number;
  /** performance.now() after which the caller no longer waits for an answer. */
  readonly expiresAt: number;
  /** The caller cancelled: take() skips it, so it never reaches the model. */
  cancelled?: boolean;
}

export class RequestBuffer<T extends BufferedItem<unknown>> {
  private items: T[] = [];
  private head = 0;
  private readonly waiters = new Set<() => void>();
  expired = 0;

  constructor(private readonly onExpired: (item: T) => void = () => {}) {}

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
    if (this.waiters.size > 0) {
      const ws = [...this.waiters];
      this.waiters.clear();
      for (const w of ws) w();
    }
  }

  /** Up to `max` live items, oldest first; items past their deadline are dropped on the way. */
  take(max: number): T[] {
    const out: T[] = [];
    const now = performance.now();
    while (out.length < max && this.head < this.items.length) {
      const item = this.items[this.head]!;
      this.items[this.head++] = undefined as unknown as T;
      if (item.cancelled) continue;
      if (item.expiresAt <= now) {
        this.expired++;
        this.onExpired(item);
      } else {
        out.push(item);
      }
    }
    this.compact();
    return out;
  }

  takeAll(): T[] {
    const out = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return out;
  }

  waitForWork(timeoutMs: number): Promise<void> {
    if (this.size > 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      // Not unref'd: a started server is a reason for the process to stay up, like a listener.
      const timer = setTimeout(wake, Math.max(0, timeoutMs));
      this.waiters.add(wake);
    });
  }

  private compact(): void {
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}
