import { type EventLoopUtilization, performance } from 'node:perf_hooks'

/**
 * Admission before the handler runs, for the `admission` option of `tether()`: a request whose
 * budget cannot cover the time requests are taking to get through the server right now is
 * answered 503 at once, before any of its work has started.
 *
 * Requests in flight share one event loop, so a newcomer gets through in about
 * `(inflight + 1) × cost`, where `cost` is the event loop's busy time per request completed, read
 * over the last windows from `performance.eventLoopUtilization()`. Both are measured, not
 * configured: there is nothing to tune per workload, and the estimate does not depend on the
 * arrival rate (a rate-based one, Little's law with the completion rate, reads a lightly loaded
 * server as slow, because few requests complete when few arrive).
 *
 * Without admission, every request that arrives shares the loop with all the others, so under
 * overload each slows every other and most answers, the 503s included, arrive after their callers
 * have given up (the SRE book's "Handling Overload" and "Addressing Cascading Failures": shed
 * early, before doing work that cannot be used).
 *
 * @internal
 */

// The cost per request is re-read once per window: long enough to hold a few completions where
// admission matters, short enough to follow a change of load within a fraction of a second.
const WINDOW_MS = 100
// Each new window moves the estimate by half: it follows a change of load within a few windows,
// while one window of noise (a GC pause, a burst) moves it only part of the way.
const COST_WEIGHT = 0.5
// Requests are shed when the expected time exceeds this share of their budget: in a server where
// requests share the CPU, the time each takes grows with the number in flight, which jitters, and
// an answer that lands at the budget's very end is as lost as one that lands after it.
const BUDGET_SHARE = 0.5

/** The admission state of one `tether()` middleware or plugin. @internal */
export class Admission {
  /** Requests admitted and not yet ended. */
  inflight = 0
  #completed = 0
  #windowStart = 0
  #utilization: EventLoopUtilization | undefined = undefined
  /** Event-loop busy milliseconds per completed request; 0 until measured. */
  #cost = 0

  /**
   * Whether a request arriving at `now` with `budget` ms left should be served.
   * @param now - `Date.now()`, already read by the caller
   */
  admit(now: number, budget: number): boolean {
    if (now - this.#windowStart >= WINDOW_MS) this.#roll(now)
    const inflight = this.inflight
    // Alone, a request has the server to itself; without a measured cost there is nothing to judge
    // by. Admitting then is also what keeps the estimate fresh.
    return inflight === 0 || (inflight + 1) * this.#cost <= budget * BUDGET_SHARE
  }

  /** A request was attached: it is in flight until {@link end}. */
  enter(): void {
    this.inflight++
  }

  /** An attached request ended; `completed` when it was answered normally. */
  end(completed: boolean): void {
    this.inflight--
    if (completed) this.#completed++
  }

  #roll(now: number): void {
    const elapsed = now - this.#windowStart
    this.#windowStart = now
    const completed = this.#completed
    this.#completed = 0
    const previous = this.#utilization
    const current = performance.eventLoopUtilization()
    this.#utilization = current
    // Nothing completed: no sample (the cost of what is in flight is still unknown). A window that
    // spans an idle spell holds busy time of other things than requests (startup, other routes).
    if (previous === undefined || completed === 0 || elapsed > 3 * WINDOW_MS) return
    const sample = (current.active - previous.active) / completed
    this.#cost = this.#cost === 0 ? sample : this.#cost + (sample - this.#cost) * COST_WEIGHT
  }
}
