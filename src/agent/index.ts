export { startAgent, type Agent } from "./agent.ts";
export { parseAgentRequest } from "./requests.ts";
export { resolveAgentOptions, defaultHostId, type AgentOptions, type ResolvedAgentOptions } from "./options.ts";
export { createSupervisor, REPLICA_ENTRY, type Supervisor, type SupervisorParams } from "./supervisor.ts";
export { procConnectionFor } from "./proc-connection.ts";
export type { ProcSpec, ProcInfo, ProcConnection, ProcExitEvent, HostRecord, AgentRequest, StartMessage, ProcMessage } from "./protocol.ts";
