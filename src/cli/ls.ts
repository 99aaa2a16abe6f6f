import { getServices } from "../registry/index.ts";
import { connectionFrom, parse, table } from "./args.ts";

export async function lsCommand(argv: string[]): Promise<string> {
  const { values } = parse(argv, {});
  const services = await getServices(connectionFrom(values));
  try {
    const status = await services.status();
    if (values.json) return JSON.stringify(status, null, 2);
    if (status.length === 0) return `no services in namespace "${services.namespace}"`;
    const rows = status.flatMap((s) =>
      s.instances.map((i) => [
        s.record.name,
        s.record.className,
        `${i.info.hostId}/${i.info.pid}`,
        i.stats ? i.stats.calls : "-",
        i.stats ? i.stats.errors : "-",
        i.stats ? `${i.stats.running}/${i.stats.queued}` : "-",
        i.stats ? i.stats.p50Ms.toFixed(2) : "-",
        i.error ? `unreachable: ${i.error}` : "ok",
      ]),
    );
    return table(["SERVICE", "CLASS", "HOST/PID", "CALLS", "ERRORS", "RUN/QUEUED", "P50_MS", "STATE"], rows);
  } finally {
    await services.close();
  }
}
