export { validateName } from "./names.ts";
export { subjectsFor, replyInbox, microSubjects, QUEUE_ACTORS, QUEUE_INFERENCE, QUEUE_REPLICAS, type Subjects } from "./subjects.ts";
export { subjectMatches } from "./match.ts";
