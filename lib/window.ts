/**
 * Windows of units (SPEC §5). A window gathers parsed messages until it holds
 * `maxUnits` units or its oldest message has waited `maxWaitMs`; once its
 * effects are durable, its commit offsets are safe to commit.
 *
 * @module
 */

import { enrolmentId, type EnrolmentKey, type ParsedMessage, type Unit } from "./event.ts";
import type { MessageSource } from "./output.ts";
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
}

/** Limits of one window. */
export interface WindowLimits {
  maxUnits: number;
  maxWaitMs: number;
}

/** Collects messages into the open window and says when it must close. */
export class WindowBuilder {
  #messages: WindowMessage[] = [];
  #weight = 0;
  #openedAt: number | null = null;

  constructor(readonly limits: WindowLimits) {}

  /** Units in the open window, each message without units counted as one. */
  get unitCount(): number {
    return this.#weight;
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
    return this.#messages.length > 0 && this.#weight + weightOf(entry) > this.limits.maxUnits;
  }

  /** Adds a message received at `now`. */
  add(entry: WindowMessage, now: number): void {
    if (this.#openedAt === null) this.#openedAt = now;
    this.#messages.push(entry);
    this.#weight += weightOf(entry);
  }

  /** Whether the window holds as many units as it may. */
  isFull(): boolean {
    return this.#weight >= this.limits.maxUnits;
  }

  /** Closes the open window and returns it (null when empty). */
  take(): Window | null {
    if (this.#messages.length === 0) return null;
    const messages = this.#messages;
    this.#messages = [];
    this.#weight = 0;
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
  return { messages, units: messages.flatMap(unitsIn), commits: [...next.values()] };
}

function unitsIn(entry: WindowMessage): Unit[] {
  return entry.parsed.kind === "units" ? entry.parsed.units : [];
}

/**
 * A message's share of the window: its units, or one for a message without
 * any (a sync request, a skipped or failed message), so that no flood of them
 * grows a window without bound.
 */
function weightOf(entry: WindowMessage): number {
  return Math.max(1, unitsIn(entry).length);
}

/** What a window holds for one enrolment. */
export interface EnrolmentGroup {
  key: EnrolmentKey;
  /** Its units in input order, repeats included. */
  units: Unit[];
  /** Whether a sync request (SPEC §13) asked for it. */
  sync: boolean;
  /** The last message it was built from, named by a failed enrolment. */
  source: MessageSource;
}

/**
 * Groups the window's units and sync requests by enrolment, keeping
 * first-appearance order of enrolments and input order within.
 */
export function groupByEnrolment(messages: WindowMessage[]): EnrolmentGroup[] {
  const groups = new Map<string, EnrolmentGroup>();
  for (const { message, parsed } of messages) {
    if (parsed.kind !== "units" && parsed.kind !== "sync") continue;
    const id = enrolmentId(parsed.key);
    let group = groups.get(id);
    if (!group) {
      group = { key: parsed.key, units: [], sync: false, source: sourceOf(message) };
      groups.set(id, group);
    }
    if (parsed.kind === "units") group.units.push(...parsed.units);
    else group.sync = true;
    group.source = sourceOf(message);
  }
  return [...groups.values()];
}

/** Where `message` came from. */
export function sourceOf(message: InputMessage): MessageSource {
  return { topic: message.topic, partition: message.partition, offset: message.offset };
}
