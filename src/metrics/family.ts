/** One sample of a family at scrape time; `suffix` names a histogram's _bucket/_sum/_count. */
export interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

export type Push = (labels: Record<string, string | number>, value: number, metricName?: string) => void;
export type Reader = (push: Push) => void;

/**
 * A metric family whose samples are read from actorbus' own figures when Prometheus scrapes,
 * shaped as prom-client's Registry expects of a metric (name, help, type, get()). The call path
 * therefore never touches prom-client (its label hashing allocates per observation); it bumps
 * plain numbers that a reader turns into samples here.
 */
export class CollectedFamily {
  readonly aggregator = "sum";
  private readonly readers = new Set<Reader>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge" | "histogram",
  ) {}

  /** Adds a source of samples; the returned function removes it (a host or service that stopped). */
  from(reader: Reader): () => void {
    this.readers.add(reader);
    return () => void this.readers.delete(reader);
  }

  get(): { name: string; help: string; type: string; values: Sample[]; aggregator: string } {
    const values: Sample[] = [];
    const push: Push = (labels, value, metricName) => void values.push(metricName ? { labels, value, metricName } : { labels, value });
    for (const r of this.readers) r(push);
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  // Registry.resetMetrics() calls it; the figures belong to their sources, which keep counting.
  reset(): void {}
}
