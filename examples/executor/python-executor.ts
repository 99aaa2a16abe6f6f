/**
 * The seed's Python Executor Service: one process registers a pool of sandboxed interpreters,
 * and many "environments" share it through PythonInterpreter, each with its own session state.
 *
 *   npx tsx examples/executor/python-executor.ts                 # NATS (NATS_URL, else local/dev server)
 *   ACTORBUS_EXAMPLE_BACKEND=local npx tsx examples/executor/python-executor.ts
 */
import { getServices, PythonExecutorService, PythonInterpreter } from "../../src/index.ts";

const backend = (process.env.ACTORBUS_EXAMPLE_BACKEND ?? "nats") as "nats" | "local";
const namespace = process.env.ACTORBUS_EXAMPLE_NAMESPACE ?? "python_executor_example";
const ENVS = 8;

const services = await getServices({ backend, namespace });
try {
  // Register once. The pool queues by itself (sessions stick to the interpreter holding their
  // state), so let the actor admit more calls than there are interpreters.
  if (!(await services.has("python_executor"))) {
    await services.registerWithOptions("python_executor", PythonExecutorService, { maxConcurrency: 64 }, { poolSize: 4, timeoutMs: 5_000 });
  }
  const executor = await services.get<PythonExecutorService>("python_executor");
  const r = await executor.execute("x = 6 * 5\nprint(f'Result: {x}')");
  console.log(`[direct] success=${r.success} stdout=${JSON.stringify(r.stdout)}`);

  // Eight environments share four interpreters; each keeps its own variables. Each block may run
  // for up to a second here.
  const envs = Array.from({ length: ENVS }, () => new PythonInterpreter({ services: backend, namespace, registry: services, timeoutMs: 1_000 }));
  await Promise.all(envs.map((interp, i) => interp.run(`Setting up.\n\`\`\`python\nenv_id = ${i}\ntotal = 0\n\`\`\``, { sessionId: `env-${i}` })));
  const replies = await Promise.all(
    envs.map((interp, i) =>
      interp.run(
        [
          "Let me add some numbers.",
          "```python",
          `total += sum(range(${i + 1}))`,
          "print(f'env {env_id}: total={total}')",
          "```",
          "And check the input:",
          "```python",
          "int('not a number')",
          "```<|im_end|>",
        ].join("\n"),
        { sessionId: `env-${i}` },
      ),
    ),
  );
  replies.forEach((out, i) => {
    console.log(`[env-${i}] ${JSON.stringify(out.messages[0])}`);
    if (i === 0) console.log(`[env-0] second block: ${JSON.stringify(out.messages[1]!.split("\n").slice(-2)[0])}`);
  });

  // Runaway code is cut off: the interpreter is replaced and only that session loses its state.
  const spin = await envs[0]!.run("```python\nwhile True:\n    pass\n```", { sessionId: "env-0" });
  console.log(`[env-0] runaway: timedOut=${spin.results[0]!.timedOut} stateReset=${spin.results[0]!.stateReset}`);
  const after = await envs[1]!.run("```python\nprint(env_id, total)\n```", { sessionId: "env-1" });
  console.log(`[env-1] after env-0's timeout: ${JSON.stringify(after.messages[0])}`);

  await envs[1]!.reset("env-1");
  const reset = await envs[1]!.run("```python\nprint(total)\n```", { sessionId: "env-1" });
  console.log(`[env-1] after reset: ${reset.results[0]!.success ? "state kept" : "NameError (state cleared)"}`);

  const stats = await executor.stats();
  console.log(
    `[stats] ${stats.poolSize} interpreters for ${ENVS} environments, ${stats.sessions} sessions, ${stats.executions} executions, ` +
      `${stats.timeouts} timeout, ${stats.restarts} restart`,
  );
  console.log(`[sandbox] network ${stats.sandbox.network}, dedicated uid ${stats.sandbox.dedicatedUid}, unavailable: ${JSON.stringify(stats.sandbox.unavailable)}`);
  await Promise.all(envs.map((e) => e.close()));
} finally {
  await services.reset();
  await services.close();
}
console.log("[main] done");
