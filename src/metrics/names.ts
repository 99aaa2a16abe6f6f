/**
 * Every metric family actorbus exports: Prometheus names (base units, `_total` counters,
 * `_seconds` durations) and their help. One table, so the README's list and the exposition agree.
 */
export const FAMILIES = {
  actorbus_calls_total: { type: "counter", help: "Calls answered by actor hosts in this process, by namespace, service, method and outcome code (OK or the error's code)." },
  actorbus_call_duration_seconds: { type: "histogram", help: "Time from a call starting to run on its host to its reply, seconds." },
  actorbus_client_calls_total: { type: "counter", help: "Calls made through handles in this process, by namespace, service, method and outcome code." },
  actorbus_client_call_duration_seconds: { type: "histogram", help: "Time from sending a call through a handle to its reply or error, seconds." },
  actorbus_calls_in_flight: { type: "gauge", help: "Calls running on the actor hosts of a service in this process." },
  actorbus_queue_depth: { type: "gauge", help: "Calls waiting in the mailboxes of a service's hosts in this process." },
  actorbus_overload_rejections_total: { type: "counter", help: "Calls refused with OVERLOADED because a host's mailbox was full (maxPending)." },
  actorbus_replicas: { type: "gauge", help: "Replicas of a service launched from this process, by state." },
  actorbus_replica_restarts_total: { type: "counter", help: "Restarts of a replica after its process died." },
  actorbus_replica_calls_in_flight: { type: "gauge", help: "Calls the controller has outstanding on a replica." },
  actorbus_replica_calls_total: { type: "counter", help: "Calls the controller routed to a replica that ended, by outcome (ok or error)." },
  actorbus_agent_processes: { type: "gauge", help: "Replica processes an agent runs." },
  actorbus_agent_slots: { type: "gauge", help: "An agent's capacity: process slots and GPUs, by kind and whether used." },
  actorbus_agent_process_exits_total: { type: "counter", help: "Replica processes of an agent that exited, by whether the exit was asked for." },
  actorbus_executor_interpreters: { type: "gauge", help: "Python interpreters of an executor pool, by state (idle, busy, starting, down)." },
  actorbus_executor_queue_depth: { type: "gauge", help: "Executions waiting for an interpreter." },
  actorbus_executor_executions_total: { type: "counter", help: "Executions run by an executor pool, by outcome (ok, timeout, crash)." },
  actorbus_executor_interpreter_restarts_total: { type: "counter", help: "Interpreters an executor pool replaced." },
  actorbus_inference_requests_total: { type: "counter", help: "Requests an inference server answered with a model call." },
  actorbus_inference_batches_total: { type: "counter", help: "Model calls of an inference server, by outcome (ok or failed)." },
  actorbus_inference_batch_size: { type: "histogram", help: "Requests per model call of an inference server." },
  actorbus_inference_model_duration_seconds: { type: "histogram", help: "Duration of an inference server's model calls alone (collate and split excluded), seconds." },
  actorbus_inference_queue_depth: { type: "gauge", help: "Requests waiting for an inference server's next batch." },
  actorbus_registry_watch_lag_seconds: { type: "histogram", help: "Time from a registry change being written (the NATS server's timestamp) to a watch in this process seeing it, seconds." },
} as const;

export type FamilyName = keyof typeof FAMILIES;
