import { createInbox } from "@nats-io/transport-node";
import { expect } from "chai";
import { statusCommand } from "../../src/cli/status.ts";
import { getServices, type Services } from "../../src/registry/index.ts";
import type { ServiceProxy } from "../../src/service/index.ts";
import { testUrl, uniqueNamespace } from "../helpers/nats.ts";
import { Counter } from "../fixtures/replicas/counter.ts";
import { validate } from "../helpers/json-schema.ts";
import { loadSchema, replicaPids } from "../helpers/replicas.ts";

const dec = new TextDecoder();

describe("services: $SRV discovery (ADR-32) and actorbus status", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace("svm");
  let svc: ServiceProxy<Counter>;
  let client: Services;
  let id: string;

  /** Every reply to one request within `ms` (plain $SRV.PING is answered by every service on the server). */
  async function gather(subject: string, ms = 300): Promise<any[]> {
    const nc = client.connection.nc!;
    const inbox = createInbox();
    const replies: any[] = [];
    const sub = nc.subscribe(inbox, { callback: (_e, m) => void replies.push(JSON.parse(dec.decode(m.data))) });
    nc.publish(subject, new Uint8Array(0), { reply: inbox });
    await new Promise((r) => setTimeout(r, ms));
    sub.unsubscribe();
    return replies;
  }

  before(async () => {
    svc = await Counter.options({ numReplicas: 2, servers: testUrl(), namespace: ns, version: "1.2.3", metadata: { team: "rl" } }).asService();
    id = svc.status().controllerId;
    client = await getServices({ namespace: ns, servers: testUrl() });
    await svc.incr();
    await svc.incr();
    await svc.failMe().catch(() => {});
  });

  after(async () => {
    await client?.close();
    await svc?.shutdown();
    expect(replicaPids(ns)).to.deep.equal([]);
  });

  for (const verb of ["PING", "INFO", "STATS"] as const) {
    it(`$SRV.${verb}, $SRV.${verb}.counter and $SRV.${verb}.counter.<id> replies are valid ${verb.toLowerCase()}_response documents`, async () => {
      const schema = loadSchema(`${verb.toLowerCase()}_response` as "ping_response");
      const subjects = [`$SRV.${verb}`, `$SRV.${verb}.counter`, `$SRV.${verb}.counter.${id}`];
      const replies = await Promise.all(subjects.map((s) => gather(s)));
      for (const [i, subject] of subjects.entries()) {
        const ours = replies[i]!.filter((r) => r.id === id);
        expect(ours, subject).to.have.length(1);
        expect(validate(schema, ours[0]), `${subject} against the schema`).to.deep.equal([]);
        expect(ours[0]).to.include({ name: "counter", version: "1.2.3" });
        expect(ours[0].metadata).to.include({ namespace: ns, team: "rl", class: "Counter" });
      }
    });
  }

  it("INFO lists the methods as endpoints; STATS counts requests, errors and nanosecond times", async () => {
    const [infos, statss] = await Promise.all([gather(`$SRV.INFO.counter.${id}`), gather(`$SRV.STATS.counter.${id}`)]);
    const [info] = infos.filter((r) => r.id === id);
    expect(info.endpoints.map((e: any) => e.name)).to.include.members(["incr", "value", "failMe", "whoami"]);
    expect(info.endpoints[0].subject).to.equal(`ab.${ns}.svc.counter`);
    const [stats] = statss.filter((r) => r.id === id);
    const incr = stats.endpoints.find((e: any) => e.name === "incr");
    const fail = stats.endpoints.find((e: any) => e.name === "failMe");
    expect(incr).to.include({ num_requests: 2, num_errors: 0, last_error: "" });
    expect(incr.processing_time).to.be.a("number").and.above(0);
    expect(incr.average_processing_time).to.equal(Math.round(incr.processing_time / 2));
    expect(fail).to.include({ num_requests: 1, num_errors: 1 });
    expect(fail.last_error).to.match(/I was asked to fail/);
    expect(Date.parse(stats.started)).to.be.at.most(Date.now());
    // The schema check is not vacuous: a broken document fails it.
    expect(validate(loadSchema("stats_response"), { ...stats, endpoints: [{ ...incr, processing_time: 1.5 }] })).to.not.deep.equal([]);
  });

  it("actorbus status prints services with replicas, state, calls and latency, and the agents", async () => {
    const lines = [
      await statusCommand(["--servers", testUrl(), "--namespace", ns]),
      await statusCommand(["--servers", testUrl(), "--namespace", ns, "--json"]),
    ];
    const table = lines[0]!.split("\n");
    expect(table[0]).to.match(/^SERVICE\s+REPLICA\s+HOSTS\s+PIDS\s+STATE\s+VERSION\s+IN-FLIGHT\s+CALLS\s+ERRORS\s+P50 MS\s+P99 MS\s+RESTARTS\s+REASON$/);
    const rows = table.filter((l) => l.startsWith("counter "));
    expect(rows).to.have.length(2);
    // Counter has no `version` property: "-".
    for (const [i, row] of rows.entries()) expect(row).to.match(new RegExp(`^counter\\s+${i}\\s+\\S+\\s+\\d+\\s+healthy\\s+-\\s+0\\s+\\d+`));
    expect(lines[0]).to.match(/no agents in namespace/);
    const json = JSON.parse(lines[1]!);
    expect(json.namespace).to.equal(ns);
    expect(json.services[0].replicas.reduce((n: number, r: any) => n + r.calls, 0)).to.equal(3);
    expect(json.services[0].replicas.reduce((n: number, r: any) => n + r.errors, 0)).to.equal(1);
  });
});
