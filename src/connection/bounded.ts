/**
 * Waits for `p` at most `ms`, then goes on (resolving undefined). For shutdown steps that talk to
 * a server which may be unreachable: a stop() must finish whether or not the network does.
 */
export async function bounded<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p.catch(() => undefined), new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
