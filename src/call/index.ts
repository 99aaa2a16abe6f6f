export { currentCall, activeCall, runInCall, type CallContext } from "./context.ts";
export { withOptions, WITH_OPTIONS, type OptionsBinder } from "./with-options.ts";
export { abortSignalOption, callOptions, callSettings, mergeCallOptions, type CallOptions, type ResolvedCallOptions, type CallSettings } from "./options.ts";
export { CALL_HEADER, META_HEADER, encodeCallHeader, parseCallHeader, parseMetadata, sendableMethod, checkMetadata, type CallHeader } from "./wire.ts";
export { createCallIds } from "./ids.ts";
export { MIN_VERSION_HEADER, encodeMinVersion, parseMinVersion } from "./min-version.ts";
export { ROLLING, ROLLING_HEADER, rollingOptions, encodeRolling, parseRolling, type RollingOptions, type ResolvedRollingOptions } from "./rolling.ts";
