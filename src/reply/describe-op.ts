import { brief } from "../connection/index.ts";

/** Names a hostile op value for an error message without JSON.stringify, which throws on BigInt. */
export function describeOp(op: unknown): string {
  if (typeof op !== "string") return op === null ? "null" : typeof op;
  return JSON.stringify(brief(op, 100));
}
