export { getServices, BACKENDS, type Backend, type GetServicesOptions } from "./get-services.ts";
export { createRegistry, type RegistryParams } from "./services.ts";
export type { Services, ServiceClient, OwnerLifecycleMethod, ServiceFactory, FactoryArgs, FactoryInstance, HandleOptions, WatchOptions, RegistryEvent, RegistryWatch, ServiceStatus, InstanceStatus } from "./types.ts";
export type { ServiceRecord, InstanceRecord, RegistrationKind } from "./records.ts";
export { encodeRecord, decodeRecord, RECORD_KIND, recordKindOf } from "./records.ts";
export type { RegistryStore, StoreEntry, StoreChange, StoreWatch } from "./store.ts";
export { pingInstance, type Liveness } from "./liveness.ts";
export { listNamespaces } from "./namespaces.ts";
