/**
 * The consumer loop: messages go into the open window; a window closes on
 * size or age; closed windows are processed one at a time, in order, and
 * their offsets committed only once their effects are durable (SPEC §5).
 *
 * One window is processed while the next one fills; when a second closed
 * window is waiting, consumption waits too, so memory stays bounded by about
 * three windows. Processing windows strictly in order means a user's events
 * are applied in input order and offsets only ever move forward.
 *
 * @module
 */

import { logger } from "./log.ts";
import { parseMessage } from "./event.ts";
import type { JobMetrics } from "./metrics.ts";
import type { WindowSummary } from "./pipeline.ts";
import type { Clock, InputMessage, InputSource } from "./ports.ts";
import { type Window, WindowBuilder, type WindowLimits } from "./window.ts";

const log = logger("runner");

/** What the runner drives. */
export interface RunnerDeps {
  source: InputSource;
  /** Processes a window until its effects are durable; rejects when the window is abandoned. */
  process: (window: Window, signal: AbortSignal) => Promise<WindowSummary>;
  clock: Clock;
  limits: WindowLimits;
  metrics: JobMetrics;
}

/** Runs the consumer loop until {@linkcode Runner.stop} or a permanent failure. */
export class Runner {
  readonly #deps: RunnerDeps;
  readonly #builder: WindowBuilder;
  readonly #waiting: Window[] = [];
  readonly #abort = new AbortController();
  readonly #done = Promise.withResolvers<void>();
  #draining: Promise<void> | null = null;
  #cancelTimer: (() => void) | null = null;
  #progress = Promise.withResolvers<void>();
  #stopping = false;

  constructor(deps: RunnerDeps) {
    this.#deps = deps;
    this.#builder = new WindowBuilder(deps.limits);
  }

  /** Starts consuming; resolves after a graceful stop, rejects on a permanent failure. */
  async run(): Promise<void> {
    await this.#deps.source.start((message) => this.handle(message));
    return this.#done.promise;
  }

  /** Whether the runner is stopping or stopped. */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** Units in the open window and when it opened, for metrics and health. */
  get openWindow(): { units: number; openedAt: number | null } {
    return { units: this.#builder.unitCount, openedAt: this.#builder.openedAt };
  }

  /** Takes one consumed message; resolves when the loop may take the next. */
  async handle(message: InputMessage): Promise<void> {
    // After a stop, a message is left uncommitted: the next run reads it again.
    if (this.#stopping) return;
    const entry = { message, parsed: parseMessage(message.value) };
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
    const timer = setTimeout(
      () => this.#abort.abort(new Error(`shutdown timeout of ${timeoutMs} ms reached`)),
      timeoutMs,
    );
    try {
      await this.#draining;
    } finally {
      clearTimeout(timer);
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
        }
      } catch (error) {
        this.#waiting.length = 0;
        this.#fail(error);
      } finally {
        this.#draining = null;
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
    log.info("window done", { ...summary, durationMs: Math.round(seconds * 1000) });
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
