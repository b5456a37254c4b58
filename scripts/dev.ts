/**
 * `deno task dev`: a guided local run. With the stack up (scripts/dev.sh), it
 * seeds a small demo (two courses with units, enrolled learners, their
 * consumption rows as the course service writes them), starts the job, sends
 * sample events, shows what happened, and keeps the job running until Ctrl-C.
 *
 * @module
 */

import { structureKey } from "../lib/aggregate.ts";
import { enrolmentUpdate } from "../lib/event.ts";
import { JobProcess, Stack, unique, waitFor } from "../tests/support/stack.ts";

/** A course: units (child collections) with their leaf contents; the last content is optional. */
const COURSES: Record<string, Record<string, string[]>> = {
  "do_physics": { "do_physics_u1": ["phy-1", "phy-2"], "do_physics_u2": ["phy-3", "phy-4"] },
  "do_maths": { "do_maths_u1": ["mat-1", "mat-2", "mat-3"] },
};

/** Each learner's completed contents, one event per content. */
const LEARNERS: Record<string, Record<string, string[]>> = {
  asha: { do_physics: ["phy-1", "phy-2", "phy-3"], do_maths: ["mat-1"] },
  bruno: { do_physics: ["phy-1"] },
  chen: { do_maths: ["mat-1", "mat-2"] },
};

function courseSets(courseId: string, units: Record<string, string[]>) {
  const leaves = Object.values(units).flat();
  const sets: Record<string, string[]> = {
    [structureKey.leafNodes(courseId, courseId)]: leaves,
    [structureKey.optionalNodes(courseId, courseId)]: [leaves.at(-1)!],
  };
  for (const [unit, contents] of Object.entries(units)) {
    sets[structureKey.leafNodes(courseId, unit)] = contents;
    for (const c of contents) sets[structureKey.ancestors(courseId, c)] = [unit, courseId];
  }
  sets[structureKey.optionalNodes(courseId, Object.keys(units).at(-1)!)] = [leaves.at(-1)!];
  return sets;
}

const say = (line = "") => console.log(`dev | ${line}`);

const stack = await Stack.open({ jobEnv: Deno.env.get("JOB_ENV") ?? "local", searchPort: 19000 });
const run = unique("r").slice(2, 8);
const batchId = `batch-${run}`;
say(
  `seeding demo run ${run}: ${Object.keys(COURSES).length} courses, ${
    Object.keys(LEARNERS).length
  } learners`,
);
for (const [courseId, units] of Object.entries(COURSES)) {
  await stack.seedSets(courseSets(courseId, units));
}
const events: unknown[] = [];
const enrolments = [];
for (const [name, courses] of Object.entries(LEARNERS)) {
  for (const [courseId, contents] of Object.entries(courses)) {
    const key = { userId: `${name}-${run}`, courseId, batchId };
    await stack.seedEnrolment(key, 1);
    enrolments.push(key);
    for (const contentId of contents) {
      await stack.seedConsumption(key, { contentId, status: 2 });
      events.push(enrolmentUpdate(key, [{ contentId, status: 2 }]));
    }
  }
}
events.push("a message that is not JSON, to show the failed topic");

const job = new JobProcess(
  stack.envForJob({ LOG_LEVEL: Deno.env.get("LOG_LEVEL") ?? "info", HTTP_PORT: "9464" }),
  ["run"],
  { echo: true },
);
Deno.addSignalListener("SIGINT", () => job.kill("SIGTERM"));
await job.ready();
const certs = await stack.collect(stack.topics.cert);
const failed = await stack.collect(stack.topics.failed);
const before = await stack.committedInput();
say(`job ready; metrics on ${job.opsUrl}/metrics; sending ${events.length} events`);
await stack.produce(events);
await waitFor(
  "the demo events to be committed",
  async () => (await stack.committedInput()) >= before + events.length,
);

say();
say("learner        course       progress  status        completed on");
for (const key of enrolments) {
  const row = await stack.enrolment(key);
  const status = row?.status === 2 ? "2 completed" : `${row?.status} in progress`;
  say(
    `${key.userId.padEnd(14)} ${key.courseId.padEnd(12)} ${String(row?.progress).padEnd(9)} ` +
      `${status.padEnd(13)} ${row?.completedOn?.toISOString() ?? "-"}`,
  );
}
const mine = (userId: unknown) => typeof userId === "string" && userId.endsWith(run);
await waitFor(
  "the demo's output events",
  () => certs.some((c) => mine((c.edata as { userIds: string[] }).userIds[0])),
);
say();
say(
  `certificate requests: ${
    certs.filter((c) => mine((c.edata as { userIds: string[] }).userIds[0])).length
  }`,
);
say(`failed events on ${stack.topics.failed}: ${failed.length} (all runs)`);
say();
say("the job keeps running; press Ctrl-C to stop it");
const status = await job.exited;
await stack.close();
Deno.exit(status.code);
