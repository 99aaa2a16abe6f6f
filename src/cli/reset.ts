import { getServices } from "../registry/index.ts";
import { connectionFrom, parse, UsageError } from "./args.ts";

export async function resetCommand(argv: string[]): Promise<string> {
  const { values } = parse(argv, {});
  // Destructive across every worker of the namespace: never default it.
  if (!values.namespace) throw new UsageError("reset stops every service of a namespace: name it with --namespace N");
  const services = await getServices(connectionFrom(values));
  try {
    const before = await services.list();
    await services.reset();
    return `reset namespace "${services.namespace}": stopped ${before.length} service(s)${before.length ? ` (${before.join(", ")})` : ""}`;
  } finally {
    await services.close();
  }
}
