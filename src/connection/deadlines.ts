/**
 * Deadlines for many in-flight calls with one timer, instead of a setTimeout per call.
 *
 * Entries are grouped by their timeout value; within a group, insertion order is deadline order,
 * so expiring is "pop from the front while due". Calls usually share one or a few timeout
 * values, so adding an entry touches a Map and (almost never) the timer: the timer is only
 * re-armed when a new deadline is earlier than the armed one.
 */
/**
 * setTimeout's limit: a larger delay fires at once (with a warning), so a huge duration from a
 * hostile request would mean "now" unless it is checked against this.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface Deadlines<K> {
  add(key: K, timeoutMs: number): void;
  /** Forget a key that completed; cheap, and safe for keys already expired. */
  delete(key: K, timeoutMs: number): void;
  readonly size: number;
  close(): void;
}

export function createDeadlines<K>(onExpire: (key: K) => void, resolutionMs = 2): Deadlines<K> {
  const groups = new Map<number, Map<K, number>>();
  let size = 0;
  let timer: NodeJS.Timeout | undefined;
  let armedAt = Infinity;
  let closed = false;

  const arm = (at: number) => {
    if (closed || at >= armedAt) return;
    if (timer) clearTimeout(timer);
    armedAt = at;
    timer = setTimeout(fire, Math.max(0, at - Date.now()) + resolutionMs);
    // An idle process with calls in flight must still exit when the user is done with it.
    timer.unref();
  };

  const fire = () => {
    timer = undefined;
    armedAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    const due: K[] = [];
    for (const [timeoutMs, group] of groups) {
      for (const [key, deadline] of group) {
        if (deadline > now) {
          next = Math.min(next, deadline);
          break;
        }
        group.delete(key);
        size--;
        due.push(key);
      }
      if (group.size === 0) groups.delete(timeoutMs);
    }
    if (next !== Infinity) arm(next);
    for (const key of due) onExpire(key);
  };

  return {
    add(key, timeoutMs) {
      let group = groups.get(timeoutMs);
      if (!group) groups.set(timeoutMs, (group = new Map()));
      const deadline = Date.now() + timeoutMs;
      group.set(key, deadline);
      size++;
      if (deadline < armedAt) arm(deadline);
    },
    delete(key, timeoutMs) {
      const group = groups.get(timeoutMs);
      if (group?.delete(key)) size--;
    },
    get size() {
      return size;
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      groups.clear();
      size = 0;
    },
  };
}
