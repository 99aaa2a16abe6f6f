export { validateName } from "./names.ts";
export { subjectsFor, replyInbox, microSubjects, QUEUE_ACTORS, QUEUE_INFERENCE, type Subjects } from "./subjects.ts";
export { subjectMatches } from "./match.ts";
