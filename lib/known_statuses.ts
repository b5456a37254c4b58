/**
 * An in-process memory of enrolment statuses in front of the progress store:
 * an enrolment seen in consecutive windows reads its `user_enrolments` row
 * once, not once per window.
 *
 * @module
 */

import { enrolmentId, type EnrolmentKey } from "./event.ts";
import type { EnrolmentRow, EnrolmentWrite, ProgressStore, ProgressWrites } from "./ports.ts";

/** Options of {@linkcode KnownStatusStore}. */
export interface KnownStatusOptions {
  /** Most enrolments remembered; the least recently used go first. */
  maxEntries: number;
  /** Called for each enrolment read answered from memory. */
  onHit?: () => void;
}

/**
 * A {@linkcode ProgressStore} that remembers the enrolment rows it has read
 * at status 1 or 2, and the rows it has written. Step 8 needs only the
 * status, and within one group member only this process moves it: the
 * Kafka input gives up no partition with a window in flight, and
 * {@linkcode KnownStatusStore.forget} is called whenever the member joins
 * the group again. A status moved by another writer in between (a
 * `reconcile` run elsewhere) is still guarded where it matters: the status
 * move itself is conditional (`IF status != 2`) and a certificate is sent
 * once per completion marker.
 *
 * Missing rows and status 0 are never remembered: the LMS creates and
 * starts enrolments.
 */
export class KnownStatusStore implements ProgressStore {
  readonly #inner: ProgressStore;
  readonly #maxEntries: number;
  readonly #onHit: () => void;
  /** Map order is recency: a hit moves its entry to the end, the first entry goes first. */
  readonly #rows = new Map<string, EnrolmentRow>();

  /** Wraps `inner`; see {@linkcode KnownStatusOptions}. */
  constructor(inner: ProgressStore, opts: KnownStatusOptions) {
    this.#inner = inner;
    this.#maxEntries = opts.maxEntries;
    this.#onHit = opts.onHit ?? (() => {});
  }

  /** Forgets every status (the member's partitions may have changed hands). */
  forget(): void {
    this.#rows.clear();
  }

  /** Enrolments remembered now. */
  get size(): number {
    return this.#rows.size;
  }

  /** Reads through to the store: consumption rows change upstream (SPEC §1). */
  readConsumption(key: EnrolmentKey) {
    return this.#inner.readConsumption(key);
  }

  /** The remembered row, or the store's (remembered when at status 1 or 2). */
  async readEnrolment(key: EnrolmentKey): Promise<EnrolmentRow | null> {
    const id = enrolmentId(key);
    const known = this.#rows.get(id);
    if (known) {
      this.#remember(id, known);
      this.#onHit();
      return { ...known };
    }
    const row = await this.#inner.readEnrolment(key);
    if (row && (row.status === 1 || row.status === 2)) this.#remember(id, { ...row });
    return row;
  }

  /** Writes through, then remembers the enrolment rows written. */
  async writeProgress(writes: ProgressWrites): Promise<void> {
    await this.#written(writes.enrolments, () => this.#inner.writeProgress(writes));
  }

  /** Writes through, then remembers the enrolment rows written. */
  async writeEnrolments(writes: EnrolmentWrite[]): Promise<void> {
    await this.#written(writes, () => this.#inner.writeEnrolments(writes));
  }

  /**
   * Runs `write`, forgetting `writes`' enrolments while it is in flight: a
   * failed write leaves their status unknown. A status 2 is never moved back
   * (the store's guard), and a write without a status change keeps the status.
   */
  async #written(writes: EnrolmentWrite[], write: () => Promise<void>): Promise<void> {
    const before = writes.map((w) => {
      const id = enrolmentId(w.key);
      const status = this.#rows.get(id)?.status ?? null;
      this.#rows.delete(id);
      return { id, w, status };
    });
    await write();
    for (const { id, w, status } of before) {
      const after = status === 2 ? 2 : w.statusChange?.status ?? status;
      if (after === 1 || after === 2) this.#remember(id, { status: after, progress: w.progress });
    }
  }

  #remember(id: string, row: EnrolmentRow): void {
    this.#rows.delete(id);
    this.#rows.set(id, row);
    if (this.#rows.size > this.#maxEntries) {
      this.#rows.delete(this.#rows.keys().next().value!);
    }
  }
}
