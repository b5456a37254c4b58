/**
 * The system clock: the {@linkcode Clock} the adapters use in production.
 * Tests give a fake one instead.
 *
 * @module
 */

import type { Clock } from "./ports.ts";

/** The system clock and timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    const id = setTimeout(fn, ms);
    return () => clearTimeout(id);
  },
};
