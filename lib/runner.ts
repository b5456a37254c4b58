/**
 * The consumer loop: messages go into the open window; a window closes on
 * size or age, or at once when no other window is being processed; closed
 * windows are processed one at a time, in order, and their offsets committed
 * only once their effects are durable (SPEC §5).
 *
 * One window is processed while the next one fills; once that one is closed
 * too, consumption waits, so memory holds about two windows and the rest of
 * one fetch. Processing windows strictly in order means a user's events are
 * applied in input order and offsets only ever move forward.
 *
 * A batch of consumed messages is handed back as soon as it is taken, so the
 * next fetch overlaps the window in flight and the open window fills from
 * several fetches. Before the input gives up a partition (a rebalance) it
 * awaits {@linkcode Runner.quiesce}: every message taken is committed (or
 * abandoned before its effects, on a stop) first, so two members of a group
 * never apply the same message.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { logger } from "./log.ts";
import type { ParsedMessage } from "./event.ts";
import type { JobMetrics } from "./metrics.ts";
import type { WindowSummary } from "./pipeline.ts";
import type { Clock, InputMessage, InputSource } from "./ports.ts";
import { type Window, WindowBuilder, type WindowLimits } from "./window.ts";

const log = logger("runner");

/** What the runner drives. */
export interface RunnerDeps {
  source: InputSource;
  /** What a consumed message amounts to (SPEC §3, §13). */
  parse: (message: InputMessage) => ParsedMessage;
  /** Processes a window until its effects are durable; rejects when the window is abandoned. */
  process: (window: Window, signal: AbortSignal) => Promise<WindowSummary>;
  clock: Clock;
  limits: WindowLimits;
  metrics: JobMetrics;
  /**
   * Called once after each committed window, when its data has become
   * garbage, in a later turn of the event loop: by then the next fetch or
   * the next window's first requests are in flight, so work done here (a
   * garbage collection) overlaps their round trips instead of delaying them.
   */
  afterWindow?: () => void;
}

/** Runs the consumer loop until {@linkcode Runner.stop} or a permanent failure. */
export class Runner {
  readonly #deps: RunnerDeps;
  readonly #builder: WindowBuilder;
  /** Closed windows, the first in flight. */
  readonly #waiting: Window[] = [];
  readonly #abort = new AbortController();
  readonly #done = Promise.withResolvers<void>();
  #draining: Promise<void> | null = null;
  #cancelTimer: (() => void) | null = null;
  #closeScheduled = false;
  #progress = Promise.withResolvers<void>();
  #stopping = false;

  constructor(deps: RunnerDeps) {
    this.#deps = deps;
    this.#builder = new WindowBuilder(deps.limits);
  }

  /** Starts consuming; resolves after a graceful stop, rejects on a permanent failure. */
  async run(): Promise<void> {
    await this.#deps.source.start({
      handle: (messages) => this.handleBatch(messages),
      quiesce: () => this.quiesce(),
    });
    return this.#done.promise;
  }

  /** Units in the open window and when it opened, for metrics and health. */
  get openWindow(): { units: number; openedAt: number | null } {
    return { units: this.#builder.unitCount, openedAt: this.#builder.openedAt };
  }

  /**
   * Takes consumed messages of one partition, in order; resolves once all
   * are taken, which waits while a closed window queues behind the one in
   * flight.
   */
  async handleBatch(messages: InputMessage[]): Promise<void> {
    for (const message of messages) await this.#take(message);
    // Nothing in flight: at low load a batch waits for one round of
    // processing rather than for the interval (SPEC §5).
    if (this.#draining === null) this.#closeSoon();
  }

  /**
   * Closes the open window and resolves once every message taken so far is
   * committed, or abandoned uncommitted. Windows closed later are not waited
   * for, so messages that keep arriving cannot hold it up.
   */
  async quiesce(): Promise<void> {
    this.#closeWindow();
    // Windows are processed in order: once the newest is out of the queue, so is every older one.
    const newest = this.#waiting.at(-1);
    while (newest && this.#waiting.includes(newest)) await this.#progress.promise;
  }

  /** Takes one consumed message; resolves when the loop may take the next. */
  async #take(message: InputMessage): Promise<void> {
    // After a stop, a message is left uncommitted: the next run reads it again.
    if (this.#stopping) return;
    const entry = { message, parsed: this.#deps.parse(message) };
    if (this.#builder.wouldOverflow(entry)) this.#closeWindow();
    this.#builder.add(entry, this.#deps.clock.now());
    if (this.#builder.messageCount === 1) {
      this.#cancelTimer = this.#deps.clock.setTimer(
        () => this.#closeWindow(),
        this.#deps.limits.maxWaitMs,
      );
    }
    if (this.#builder.isFull()) this.#closeWindow();
    while (this.#waiting.length > 1 && !this.#stopping) await this.#progress.promise;
  }

  /**
   * Stops consuming, processes and commits what was consumed, and resolves
   * `run`. Work still unfinished after `timeoutMs` (an outage) is abandoned
   * uncommitted, to be read again on the next start.
   */
  async stop(timeoutMs: number): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = true;
      this.#deps.source.pause();
      this.#closeWindow();
      this.#notify();
    }
    const cancel = this.#deps.clock.setTimer(
      () => this.#abort.abort(new Error(`shutdown timeout of ${timeoutMs} ms reached`)),
      timeoutMs,
    );
    try {
      await this.idle();
    } finally {
      cancel();
    }
    this.#done.resolve();
  }

  /**
   * Ends the loop with `error` (the input cannot go on): nothing more is
   * processed or committed, and `run` rejects with `error`.
   */
  abort(error: unknown): void {
    this.#abort.abort(error);
    this.#fail(error, { force: true });
  }

  /** Resolves once every closed window has been processed or abandoned. */
  async idle(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  /**
   * Closes the open window once this turn of the event loop is over, if
   * nothing is in flight by then: the other partitions' batches of the same
   * fetch, handed over in this turn, join it instead of waiting for a
   * window of their own.
   */
  #closeSoon(): void {
    if (this.#closeScheduled) return;
    this.#closeScheduled = true;
    setImmediate(() => {
      this.#closeScheduled = false;
      if (this.#draining === null) this.#closeWindow();
    });
  }

  #closeWindow(): void {
    this.#cancelTimer?.();
    this.#cancelTimer = null;
    const window = this.#builder.take();
    if (window === null) return;
    this.#waiting.push(window);
    this.#drain();
  }

  #drain(): void {
    if (this.#draining) return;
    this.#draining = (async () => {
      try {
        while (this.#waiting.length > 0) {
          await this.#finish(this.#waiting[0]);
          this.#waiting.shift();
          this.#notify();
          // Nothing else in flight: the open window need not wait for its timer.
          if (this.#waiting.length === 0) this.#closeWindow();
          const afterWindow = this.#deps.afterWindow;
          if (afterWindow) setImmediate(afterWindow);
        }
      } catch (error) {
        this.#waiting.length = 0;
        this.#fail(error);
      } finally {
        this.#draining = null;
        this.#notify();
      }
    })();
  }

  async #finish(window: Window): Promise<void> {
    const started = performance.now();
    const summary = await this.#deps.process(window, this.#abort.signal);
    try {
      await this.#deps.source.commit(window.commits);
    } catch (error) {
      // Commits are cumulative: the next window's commit covers this one, and a
      // replay after a restart is absorbed by de-duplication.
      this.#deps.metrics.inc("commitFailures");
      log.warn("offset commit failed: {error}", { error: String(error) });
    }
    const now = this.#deps.clock.now();
    for (const { message } of window.messages) {
      this.#deps.metrics.latency.observe(Math.max(0, now - message.timestamp) / 1000);
    }
    const seconds = (performance.now() - started) / 1000;
    this.#deps.metrics.windowDuration.observe(seconds);
    log.info("window done", {
      ...summary,
      durationMs: Math.round(seconds * 1000),
      commits: window.commits,
    });
  }

  #fail(error: unknown, opts: { force?: boolean } = {}): void {
    if (this.#abort.signal.aborted && !opts.force) {
      log.warn("window abandoned uncommitted: {reason}", { reason: String(error) });
      return;
    }
    this.#stopping = true;
    this.#deps.source.pause();
    this.#notify();
    this.#done.reject(error);
  }

  #notify(): void {
    this.#progress.resolve();
    this.#progress = Promise.withResolvers<void>();
  }
}
