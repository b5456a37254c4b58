/**
 * Just enough of the Prometheus text format to read the job's `/metrics`:
 * plain samples and histogram buckets, with quantiles estimated the way
 * PromQL's `histogram_quantile` does (linear within a bucket).
 *
 * @module
 */

/** One histogram: cumulative bucket counts by upper bound, plus sum and count. */
export interface Histogram {
  buckets: { le: number; count: number }[];
  sum: number;
  count: number;
}

/** Every unlabelled sample of `text`, by metric name. */
export function samples(text: string): Map<string, number> {
  const result = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.includes("{")) continue;
    const [name, value] = line.trim().split(/\s+/);
    if (name && value !== undefined) result.set(name, Number(value));
  }
  return result;
}

/** The histogram `name` of `text` (unlabelled), or null when absent. */
export function histogram(text: string, name: string): Histogram | null {
  const buckets: Histogram["buckets"] = [];
  const bucket = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\}\\s+(\\S+)`);
  for (const line of text.split("\n")) {
    const match = bucket.exec(line);
    if (match) {
      buckets.push({
        le: match[1] === "+Inf" ? Infinity : Number(match[1]),
        count: Number(match[2]),
      });
    }
  }
  if (buckets.length === 0) return null;
  const plain = samples(text);
  buckets.sort((a, b) => a.le - b.le);
  return { buckets, sum: plain.get(`${name}_sum`) ?? NaN, count: plain.get(`${name}_count`) ?? 0 };
}

/**
 * The `q` quantile (0–1) of `h`, interpolated linearly inside the bucket it
 * falls in (the lower bound of the first bucket is 0). A quantile in the
 * `+Inf` bucket answers the highest finite bound, as PromQL does: read it as
 * "at least".
 */
export function quantile(h: Histogram, q: number): number {
  if (h.count === 0) return NaN;
  const rank = q * h.count;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const { le, count } of h.buckets) {
    if (count >= rank) {
      if (le === Infinity) return lowerBound;
      const inBucket = count - lowerCount;
      return inBucket === 0
        ? le
        : lowerBound + (le - lowerBound) * ((rank - lowerCount) / inBucket);
    }
    lowerBound = le;
    lowerCount = count;
  }
  return lowerBound;
}

/** Non-cumulative counts per bucket, as `≤le: n` strings for a compact table cell. */
export function distribution(h: Histogram): string {
  let previous = 0;
  const parts: string[] = [];
  for (const { le, count } of h.buckets) {
    const n = count - previous;
    previous = count;
    if (n > 0) parts.push(`${le === Infinity ? ">last" : `≤${le}`}: ${n}`);
  }
  return parts.join(", ");
}

/** `later − earlier`: what a histogram observed between two scrapes. */
export function subtract(later: Histogram, earlier: Histogram | null): Histogram {
  if (!earlier) return later;
  const before = new Map(earlier.buckets.map((b) => [b.le, b.count]));
  return {
    buckets: later.buckets.map((b) => ({ le: b.le, count: b.count - (before.get(b.le) ?? 0) })),
    sum: later.sum - earlier.sum,
    count: later.count - earlier.count,
  };
}
