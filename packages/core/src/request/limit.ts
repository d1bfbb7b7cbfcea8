/**
 * The adaptive concurrency limit behind `tether({ concurrency: 'auto' })`: a gradient limit, as
 * Envoy's adaptive concurrency filter computes it (and Netflix's concurrency-limits Gradient), fed
 * with how long each request's handler took.
 *
 * Why a gradient, and why this one:
 *
 * - A Node server is one event loop. Handlers that do CPU work in async slices (parse, query,
 *   render) share it, so each one's latency grows with how many run at once: latency against the
 *   latency of a handler running alone measures the queueing the server inflicts on itself, and
 *   the ratio of the two is the factor by which there are too many.
 * - A gradient moves the limit multiplicatively, once per window (at most halving it, at most
 *   doubling it plus headroom), so it falls within a few windows when a burst makes latency climb
 *   and climbs back as fast when latency recovers. Vegas moves it additively (±1 or ±log10 of the
 *   limit per update): after a burst, the walk back takes as many updates as the distance.
 * - The latency it compares against is measured, as Envoy does, with the limit pinned at its floor
 *   (one handler at a time) whenever it is stale and requests are waiting, or latency has stayed
 *   far above it whatever the limit did (Envoy's escape hatch), and from requests that ran alone
 *   at any time. Vegas (which resets its no-load latency to the next sample) and
 *   Gradient2 (which compares against a long-term average) measure it from loaded samples, and
 *   under sustained overload their reference follows the load up, and the limit with it.
 * - Like Gradient2, a window in which fewer than half the slots were used does not move the limit:
 *   at low load the limit is not what holds the work back, so latency then says nothing about it.
 *   A server at low load is never throttled by noise, and a burst meets a limit near the
 *   concurrency the server was running at rather than one grown without bound while idle.
 *
 * Pure arithmetic on the numbers it is given: no clock, no timers. The caller passes the time of
 * each sample, so tests drive it with synthetic latencies.
 *
 * @internal
 */

/** The floor of the limit, and the concurrency the baseline is measured at: one handler at a time. */
export const MIN_LIMIT = 1
/** The ceiling of the limit (Envoy's default). */
export const MAX_LIMIT = 1000
/** A window closes once it has lasted this long (ms, Envoy's update interval)... */
export const WINDOW_MS = 100
/** ...and holds at least this many samples: fewer say too little about a median. */
export const WINDOW_SAMPLES = 5
/** Latencies of handlers that ran alone whose median becomes the baseline. */
export const BASELINE_SAMPLES = 10
/** How much latency above the baseline is tolerated before the limit shrinks (Envoy's default). */
export const BUFFER = 0.25
/**
 * How long a baseline is trusted (ms) before it is measured again, the next time requests wait for
 * the limit; stretched by up to {@link JITTER} at random, so a fleet does not measure in lockstep.
 */
export const REFRESH_MS = 30_000
/** The share of {@link REFRESH_MS} added at random to each refresh interval. */
export const JITTER = 0.15
/**
 * Windows in a row whose latency was so far above the baseline that the gradient was at its
 * floor (one half), after which the baseline is measured again at once (Envoy's escape hatch).
 * Latency that stays that high whatever the limit does is not explained by concurrency: the
 * server got slower alone (a slow dependency), and a limit measured against the old baseline
 * would settle at a couple of handlers at once, starving it.
 */
export const STRANDED_WINDOWS = 5
// Samples kept per window: enough for a median; beyond it the newest replace the oldest.
const WINDOW_CAPACITY = 256

/** Options of {@link GradientLimit}, for tests. @internal */
export interface GradientLimitOptions {
  /**
   * A number in [0, 1) drawn for each refresh interval's jitter.
   * @default Math.random
   */
  readonly random?: () => number
}

/** The median of the first `count` values of `values` (sorted in place). */
function median(values: Float64Array, count: number): number {
  const sorted = values.subarray(0, count).sort()
  const mid = count >> 1
  return count % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

// Latencies below a microsecond are read as one: a ratio of zeros means nothing.
const atLeastAMicrosecond = (ms: number) => Math.max(ms, 0.001)

/**
 * A concurrency limit that adapts from latency samples (see the module comment for the algorithm
 * and why). Each window of at least {@link WINDOW_MS} and {@link WINDOW_SAMPLES} samples computes
 *
 *     gradient = clamp(baseline × (1 + BUFFER) / median latency of the window, 0.5, 2)
 *     limit    = clamp(limit × gradient + √(limit × gradient), MIN_LIMIT, MAX_LIMIT)
 *
 * where the baseline is the median latency of handlers that ran alone (lowered to a window's
 * median when a window is faster: it was measured while the server was slowed by something else).
 * It starts at its floor,
 * measuring the baseline; it measures it again, with the limit pinned at the floor until
 * {@link BASELINE_SAMPLES} handlers have run alone, once the baseline is older than
 * {@link REFRESH_MS} while requests wait for the limit, or after {@link STRANDED_WINDOWS} windows
 * of latency far above it. The limit held before is restored after.
 *
 * @internal
 */
export class GradientLimit {
  #limit = MIN_LIMIT
  #baseline = 0
  #probing = true
  #restore = MIN_LIMIT
  #refreshAt = 0
  readonly #base = new Float64Array(BASELINE_SAMPLES)
  #baseCount = 0
  #baseSince = 0
  readonly #window = new Float64Array(WINDOW_CAPACITY)
  #windowCount = 0
  #windowStart = 0
  #windowPeak = 0
  #windowQueued = false
  #stranded = 0
  readonly #random: () => number

  /** @param options - see {@link GradientLimitOptions} */
  constructor(options?: GradientLimitOptions) {
    this.#random = options?.random ?? Math.random
  }

  /** The current limit: an integer from {@link MIN_LIMIT} to {@link MAX_LIMIT}. */
  get limit(): number {
    return Math.floor(this.#limit)
  }

  /** The median latency of handlers that ran alone, in ms; `0` until measured. */
  get baseline(): number {
    return this.#baseline
  }

  /** Whether the limit is pinned at its floor while the baseline is measured. */
  get probing(): boolean {
    return this.#probing
  }

  /**
   * Feeds one handler's latency.
   *
   * @param now - when it ended, in ms on any monotonic clock (`performance.now()`)
   * @param latency - how long it ran, in ms (from admission to the end of its response)
   * @param inflight - the most handlers running under the limit, itself included, when it started
   *   or when it ended: `1` means it ran alone
   * @param queued - requests waiting for the limit when it ended
   * @returns the limit after this sample
   */
  sample(now: number, latency: number, inflight: number, queued: number): number {
    if (!(latency >= 0 && latency < Number.POSITIVE_INFINITY)) return this.limit
    // Samples taken while the limit is pinned measure the baseline and nothing else.
    const probing = this.#probing
    if (inflight <= MIN_LIMIT) this.#baselineSample(now, latency)
    if (probing) return this.limit
    let count = this.#windowCount
    if (count === 0) this.#windowStart = now
    this.#window[count % WINDOW_CAPACITY] = latency
    this.#windowCount = ++count
    if (inflight > this.#windowPeak) this.#windowPeak = inflight
    if (queued > 0) this.#windowQueued = true
    if (count >= WINDOW_SAMPLES && now - this.#windowStart >= WINDOW_MS) this.#closeWindow(now)
    return this.limit
  }

  /** A handler ran alone: its latency counts towards the next baseline. */
  #baselineSample(now: number, latency: number): void {
    // Samples gathered over longer than a refresh interval describe different servers.
    if (this.#baseCount > 0 && now - this.#baseSince > REFRESH_MS) this.#baseCount = 0
    if (this.#baseCount === 0) this.#baseSince = now
    this.#base[this.#baseCount++] = latency
    if (this.#baseCount < BASELINE_SAMPLES) return
    this.#baseline = atLeastAMicrosecond(median(this.#base, BASELINE_SAMPLES))
    this.#baseCount = 0
    this.#refreshAt = now + REFRESH_MS * (1 + JITTER * this.#random())
    if (this.#probing) {
      this.#probing = false
      this.#limit = this.#restore
      // The window restarts: latencies under the pinned limit say nothing about the restored one.
      this.#resetWindow()
    }
  }

  #closeWindow(now: number): void {
    const latency = atLeastAMicrosecond(median(this.#window, Math.min(this.#windowCount, WINDOW_CAPACITY)))
    const peak = this.#windowPeak
    const queued = this.#windowQueued
    this.#resetWindow()
    if (queued && now >= this.#refreshAt) {
      // The baseline is stale and the limit is holding requests back: measure it again.
      this.#probe()
      return
    }
    // Handlers ran faster than the baseline says they can alone: it was measured while the server
    // was slowed by something else (a slow dependency, a GC storm), and is stale.
    if (latency < this.#baseline) this.#baseline = latency
    // App-limited: fewer than half the slots were used, so the limit was not what held the work
    // back, and the latency says nothing about it (Gradient2's rule).
    if (peak < this.#limit / 2) return
    const raw = (this.#baseline * (1 + BUFFER)) / latency
    if (raw > 0.5) this.#stranded = 0
    else if (++this.#stranded >= STRANDED_WINDOWS) {
      this.#probe()
      return
    }
    const gradient = Math.min(2, Math.max(0.5, raw))
    const scaled = this.#limit * gradient
    // √limit of headroom (Envoy's burst headroom): room for a burst above the limit the latency
    // supports, and the step that lets a limit at its floor climb again.
    this.#limit = Math.min(MAX_LIMIT, Math.max(MIN_LIMIT, scaled + Math.sqrt(scaled)))
  }

  /** Pins the limit at its floor to measure the baseline, one handler at a time; restored after. */
  #probe(): void {
    this.#restore = this.#limit
    this.#limit = MIN_LIMIT
    this.#probing = true
    this.#baseCount = 0
    this.#stranded = 0
  }

  #resetWindow(): void {
    this.#windowCount = 0
    this.#windowPeak = 0
    this.#windowQueued = false
  }
}
