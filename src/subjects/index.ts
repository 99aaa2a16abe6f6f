export { validateName } from "./names.ts";
export { subjectsFor, namespaceOfBucket, replyInbox, replyPrefixOf, microSubjects, QUEUE_ACTORS, QUEUE_INFERENCE, QUEUE_REPLICAS, privateQueue, type Subjects } from "./subjects.ts";
export { subjectMatches } from "./match.ts";
