/**
 * Windows of units (SPEC §5). A window gathers parsed messages until it holds
 * `maxUnits` units or its oldest message has waited `maxWaitMs`; once its
 * effects are durable, its commit offsets are safe to commit.
 *
 * @module
 */

import { enrolmentId, type EnrolmentKey, type ParsedMessage, type Unit } from "./event.ts";
import type { CommitOffset, InputMessage } from "./ports.ts";

/** A consumed message with what it amounts to. */
export interface WindowMessage {
  message: InputMessage;
  parsed: ParsedMessage;
}

/** A closed window: its messages in arrival order and where to commit after it. */
export interface Window {
  messages: WindowMessage[];
  /** Every unit of the window's messages, in arrival order. */
  units: Unit[];
  /** Per partition, the offset after the window's last message. */
  commits: CommitOffset[];
  /** Earliest message timestamp, for end-to-end latency. */
  oldestTimestamp: number;
}

/** Limits of one window. */
export interface WindowLimits {
  maxUnits: number;
  maxWaitMs: number;
}

/** Collects messages into the open window and says when it must close. */
export class WindowBuilder {
  #messages: WindowMessage[] = [];
  #unitCount = 0;
  #openedAt: number | null = null;

  constructor(readonly limits: WindowLimits) {}

  /** Units in the open window. */
  get unitCount(): number {
    return this.#unitCount;
  }

  /** Messages in the open window. */
  get messageCount(): number {
    return this.#messages.length;
  }

  /** When the open window's first message arrived, or null when it is empty. */
  get openedAt(): number | null {
    return this.#openedAt;
  }

  /** Whether adding `entry` would push a non-empty window past `maxUnits`. */
  wouldOverflow(entry: WindowMessage): boolean {
    return this.#messages.length > 0 &&
      this.#unitCount + unitsIn(entry).length > this.limits.maxUnits;
  }

  /** Adds a message received at `now`. */
  add(entry: WindowMessage, now: number): void {
    if (this.#openedAt === null) this.#openedAt = now;
    this.#messages.push(entry);
    this.#unitCount += unitsIn(entry).length;
  }

  /** Whether the window holds as many units as it may. */
  isFull(): boolean {
    return this.#unitCount >= this.limits.maxUnits;
  }

  /** When the open window must close by age, or null when it is empty. */
  deadline(): number | null {
    return this.#openedAt === null ? null : this.#openedAt + this.limits.maxWaitMs;
  }

  /** Closes the open window and returns it (null when empty). */
  take(): Window | null {
    if (this.#messages.length === 0) return null;
    const messages = this.#messages;
    this.#messages = [];
    this.#unitCount = 0;
    this.#openedAt = null;
    return closeWindow(messages);
  }
}

function closeWindow(messages: WindowMessage[]): Window {
  const next = new Map<string, CommitOffset>();
  for (const { message } of messages) {
    const id = `${message.topic}\u0000${message.partition}`;
    const offset = (BigInt(message.offset) + 1n).toString();
    const seen = next.get(id);
    if (!seen || BigInt(seen.offset) < BigInt(offset)) {
      next.set(id, { topic: message.topic, partition: message.partition, offset });
    }
  }
  return {
    messages,
    units: messages.flatMap(unitsIn),
    commits: [...next.values()],
    oldestTimestamp: Math.min(...messages.map((m) => m.message.timestamp)),
  };
}

function unitsIn(entry: WindowMessage): Unit[] {
  return entry.parsed.kind === "units" ? entry.parsed.units : [];
}

/** Units of one enrolment within a window. */
export interface EnrolmentGroup {
  key: EnrolmentKey;
  units: Unit[];
}

/** Groups units by enrolment, keeping first-appearance order of enrolments and input order within. */
export function groupByEnrolment(units: Unit[]): EnrolmentGroup[] {
  const groups = new Map<string, EnrolmentGroup>();
  for (const unit of units) {
    const id = enrolmentId(unit);
    let group = groups.get(id);
    if (!group) {
      group = {
        key: { userId: unit.userId, courseId: unit.courseId, batchId: unit.batchId },
        units: [],
      };
      groups.set(id, group);
    }
    group.units.push(unit);
  }
  return [...groups.values()];
}
