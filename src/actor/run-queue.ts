/**
 * At most `concurrency` jobs run at once; the rest wait in arrival order. Below the cap a job
 * starts in the call that pushes it: no task object, no promise, no event per call — a general
 * task queue (p-queue) costs more per call than the echo it schedules, and an actor below its
 * cap is the common case.
 */
export interface RunQueue<J> {
  /** Jobs running now. */
  readonly running: number;
  /** Jobs waiting for a slot. */
  readonly waiting: number;
  push(job: J): void;
  /**
   * A job that runs alone (a rolling update's call on a replica): after the jobs before it have
   * finished, and before any job pushed after it starts.
   */
  pushExclusive(job: J): void;
  /** Drops the waiting jobs and returns them. */
  clear(): J[];
  /** Resolves when nothing runs or waits. */
  onIdle(): Promise<void>;
}

/** `run` must not reject: its failures are its own to report. */
export function createRunQueue<J>(concurrency: number, run: (job: J) => Promise<void> | void): RunQueue<J> {
  let waiting: J[] = [];
  let head = 0;
  let running = 0;
  let idle: (() => void)[] = [];
  // Exclusive jobs waiting, and whether one runs: rare, so the common path tests a size and a flag.
  const exclusive = new Set<J>();
  let alone = false;

  const start = (job: J) => {
    running++;
    const single = exclusive.size > 0 && exclusive.delete(job);
    if (single) alone = true;
    let out: Promise<void> | void;
    try {
      out = run(job);
    } catch {
      out = undefined;
    }
    const end = single ? doneAlone : done;
    if (out) out.then(end, end);
    else end();
  };

  function doneAlone() {
    alone = false;
    done();
  }

  // Set while done() starts waiting jobs: a job that finishes in the call that started it
  // (a method answered at once) frees its slot there, and the loop below goes on with the next,
  // instead of recursing once per queued job.
  let starting = false;

  // One shared continuation for every job: the job itself is not needed to free its slot.
  function done() {
    running--;
    if (starting) return;
    starting = true;
    try {
      while (running < concurrency && head < waiting.length && !alone) {
        const next = waiting[head]!;
        // An exclusive job waits at the head until the running ones have finished.
        if (exclusive.size > 0 && exclusive.has(next) && running > 0) break;
        waiting[head++] = undefined as J; // let it be collected while the array lives on
        start(next);
      }
    } finally {
      starting = false;
    }
    if (head > 1024 && head * 2 > waiting.length) {
      waiting = waiting.slice(head);
      head = 0;
    }
    if (running === 0 && head === waiting.length && idle.length > 0) {
      const resolve = idle;
      idle = [];
      for (const r of resolve) r();
    }
  }

  return {
    get running() {
      return running;
    },
    get waiting() {
      return waiting.length - head;
    },
    push(job) {
      if (running < concurrency && head === waiting.length && !alone) start(job);
      else waiting.push(job);
    },
    pushExclusive(job) {
      exclusive.add(job);
      if (running === 0 && head === waiting.length) start(job);
      else waiting.push(job);
    },
    clear() {
      exclusive.clear();
      const dropped = waiting.slice(head);
      waiting = [];
      head = 0;
      return dropped;
    },
    onIdle() {
      if (running === 0 && head === waiting.length) return Promise.resolve();
      return new Promise((resolve) => idle.push(resolve));
    },
  };
}
