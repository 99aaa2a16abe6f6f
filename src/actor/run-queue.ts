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

  const start = (job: J) => {
    running++;
    let out: Promise<void> | void;
    try {
      out = run(job);
    } catch {
      out = undefined;
    }
    if (out) out.then(done, done);
    else done();
  };

  // One shared continuation for every job: the job itself is not needed to free its slot.
  function done() {
    running--;
    while (running < concurrency && head < waiting.length) {
      const next = waiting[head]!;
      waiting[head++] = undefined as J; // let it be collected while the array lives on
      start(next);
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
      if (running < concurrency && head === waiting.length) start(job);
      else waiting.push(job);
    },
    clear() {
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
