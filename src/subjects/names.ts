import { InvalidNameError } from "../errors/index.ts";

// Namespaces and service names become NATS subject tokens, KV keys and (for namespaces) part of a
// JetStream bucket name, whose alphabet is the narrowest of the three.
const NAME = /^[A-Za-z0-9_-]{1,128}$/;

export function validateName(kind: "namespace" | "service" | "host id" | string, name: unknown): string {
  if (typeof name !== "string" || !NAME.test(name)) {
    const shown = typeof name === "string" ? JSON.stringify(name) : String(name);
    throw new InvalidNameError(
      `invalid ${kind} name ${shown}: use 1-128 characters from A-Z a-z 0-9 _ - ` +
        `(no '.', '*', '>', spaces or empty names: they would change the NATS subject it maps to)`,
      { details: { kind, name: typeof name === "string" ? name : shown } },
    );
  }
  return name;
}
