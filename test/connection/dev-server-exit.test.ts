import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { until } from "../helpers/nats.ts";

const devServer = fileURLToPath(new URL("../../src/connection/dev-server.ts", import.meta.url));

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("startNatsServer when its process exits without stop()", function () {
  this.timeout(30_000);

  for (const how of ["process.exit(0)", "an uncaught error"] as const) {
    it(`stops the server and removes its temp dir (${how})`, async () => {
      const end = how === "process.exit(0)" ? "process.exit(0);" : 'setImmediate(() => { throw new Error("boom"); });';
      const script = `const { startNatsServer } = await import(${JSON.stringify(devServer)});
        const a = await startNatsServer();
        const b = await startNatsServer({ jetstream: false });
        console.log(JSON.stringify([a.pid, a.storeDir, b.pid, b.storeDir]));
        ${end}`;
      const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 20_000 });
      const line = r.stdout.trim().split("\n").pop()!;
      const [pidA, dirA, pidB, dirB] = JSON.parse(line) as [number, string, number, string];
      await until(() => !alive(pidA) && !alive(pidB), 10_000, "both nats-servers gone");
      expect(existsSync(dirA), dirA).to.equal(false);
      expect(existsSync(dirB), dirB).to.equal(false);
    });
  }
});
