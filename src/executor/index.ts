export { PythonExecutorService } from "./service.ts";
export { PythonInterpreter, INTERPRETER_BACKENDS, type PythonInterpreterOptions, type RunResult } from "./interpreter-tool.ts";
export { InterpreterStartError } from "./errors.ts";
export { extractPythonBlocks, formatBlockMessage } from "./code-blocks.ts";
export { createExecutorPool, type ExecutorPool, type ExecutorStats, type InterpreterStats } from "./pool.ts";
export {
  resolveExecutorOptions,
  EXECUTOR_DEFAULTS,
  SANDBOX_DEFAULTS,
  type PythonExecutorOptions,
  type SandboxOptions,
  type ExecuteOptions,
  type ResolvedExecutorOptions,
} from "./options.ts";
export type { ExecutionResult } from "./result.ts";
export type { SandboxInfo } from "./sandbox.ts";
