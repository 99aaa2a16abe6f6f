export { encodeOk, encodeErr, unwrapReply, type Reply } from "./replies.ts";
export { respondSafely } from "./respond.ts";
export { describeOp } from "./describe-op.ts";
export { combineOkReplies } from "./combine.ts";
