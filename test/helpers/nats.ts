import { randomBytes } from "node:crypto";

/** URL of the shared test server (see global.ts). */
export function testUrl(): string {
  const url = process.env.NATS_TEST_URL ?? process.env.ACTORBUS_SHARED_TEST_URL;
  if (!url) throw new Error("no test server: run tests through mocha (global fixture) or set NATS_TEST_URL");
  return url;
}

/** A namespace no other test (or earlier run against the same server) uses. */
export function uniqueNamespace(prefix = "t"): string {
  return `${prefix}_${randomBytes(5).toString("hex")}`;
}

/** Polls until `cond` holds; tests use it instead of sleeps. */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = "condition"): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
