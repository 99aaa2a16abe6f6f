export { startDashboard, type Dashboard } from "./dashboard.ts";
export { dashboardOptions, type DashboardOptions } from "./options.ts";
export { ASSET_FILES } from "./assets.ts";
export { ACTION_HEADER } from "./http.ts";
export { kindOf, serviceViews, replicaViews } from "./views.ts";
export type { NamespaceSnapshot, ServiceView, ReplicaView, AgentView, InferenceView, ExecutorView, DashboardEvent, HistoryPoint, ServiceKind } from "./types.ts";
