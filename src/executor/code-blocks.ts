/**
 * Fenced Python blocks of an LLM reply, in order. Only ```python (or ```py / ```python3) fences
 * count: ```bash or bare ``` blocks are not run. The closing fence may be followed by anything
 * on its line (chat templates append tokens such as <|im_end|>).
 */
const FENCE = /```(?:python3?|py)[ \t]*\r?\n([\s\S]*?)\r?\n[ \t]*```/g;

export function extractPythonBlocks(reply: string): string[] {
  return [...reply.matchAll(FENCE)].map((m) => m[1]!);
}

/** The tool message for one block, as TorchRL's PythonInterpreter formats it. */
export function formatBlockMessage(index: number, r: { success: boolean; stdout: string; stderr: string }): string {
  return r.success ? `Code block ${index + 1} executed successfully:\n${r.stdout}` : `Code block ${index + 1} failed:\n${r.stderr}`;
}
