import { describe, expect, it } from 'vitest'
import {
  BASELINE_SAMPLES,
  GradientLimit,
  JITTER,
  MAX_LIMIT,
  MIN_LIMIT,
  REFRESH_MS,
  STRANDED_WINDOWS,
  WINDOW_MS,
  WINDOW_SAMPLES,
} from '../src/request/limit.js'

// The limit is driven by synthetic latencies on a synthetic clock: nothing here reads the time, so
// every figure is exact and the machine's speed does not matter.

/** A server, as the limit sees it: how long a handler takes with `inflight` running at once. */
type Model = (inflight: number) => number

/** Handlers that share one CPU: each takes `ms` times the number running at once. */
const cpuBound =
  (ms: number): Model =>
  (inflight) =>
    ms * inflight
/** Handlers that wait on something else: `ms` however many run at once. */
const ioBound =
  (ms: number): Model =>
  () =>
    ms

class Driver {
  now = 0
  readonly limits: number[] = []
  /** Whether each window ended with the limit pinned to measure the baseline. */
  readonly pinned: boolean[] = []
  /** When each re-measurement of the baseline (the limit pinned at its floor) began. */
  readonly probes: number[] = []
  constructor(readonly limit = new GradientLimit({ random: () => 0 })) {}

  /**
   * Runs `windows` windows of `perWindow` samples spread over WINDOW_MS, with `demand` requests
   * wanting to run at once: min(limit, demand) run, the rest wait. Records the limit after each.
   */
  run(windows: number, demand: number, model: Model, perWindow = 10): this {
    for (let w = 0; w < windows; w++) {
      for (let i = 0; i < perWindow; i++) {
        this.now += WINDOW_MS / perWindow
        const inflight = Math.min(this.limit.limit, demand)
        const probing = this.limit.probing
        this.limit.sample(this.now, model(inflight), inflight, Math.max(0, demand - inflight))
        if (!probing && this.limit.probing) this.probes.push(this.now)
      }
      this.limits.push(this.limit.limit)
      this.pinned.push(this.limit.probing)
    }
    return this
  }

  /** Forgets the limits recorded so far. */
  reset(): this {
    this.limits.length = 0
    this.pinned.length = 0
    return this
  }

  /** Feeds handlers that ran alone until the baseline is measured. */
  alone(latency: number, count = BASELINE_SAMPLES): this {
    for (let i = 0; i < count; i++) {
      this.now += latency
      this.limit.sample(this.now, latency, 1, 0)
    }
    return this
  }
}

describe('GradientLimit', () => {
  it('starts at its floor, measuring the baseline from handlers that ran alone', () => {
    const { limit } = new Driver()
    expect(limit.limit).toBe(MIN_LIMIT)
    expect(limit.probing).toBe(true)
    expect(limit.baseline).toBe(0)
    const latencies = [9, 4, 5, 6, 5, 100, 5, 4, 6, 5]
    expect(latencies).toHaveLength(BASELINE_SAMPLES)
    let now = 0
    for (const latency of latencies) {
      now += latency
      limit.sample(now, latency, 1, 3)
    }
    // The median: one slow outlier (a GC pause) does not move it.
    expect(limit.baseline).toBe(5)
    expect(limit.probing).toBe(false)
  })

  it('does not count a handler that ran beside others towards the baseline', () => {
    const { limit } = new Driver()
    for (let i = 0; i < 50; i++) limit.sample(i * 10, 10, 2, 0)
    expect(limit.baseline).toBe(0)
    expect(limit.probing).toBe(true)
    expect(limit.limit).toBe(MIN_LIMIT)
  })

  it('closes a window only after WINDOW_MS and WINDOW_SAMPLES, whichever comes last', () => {
    const driver = new Driver().alone(10)
    const { limit } = driver
    // Binding (requests wait), latency at the baseline: each closed window raises the limit.
    let now = driver.now
    const at = (ms: number) => {
      now += ms
      return now
    }
    for (let i = 0; i < WINDOW_SAMPLES - 1; i++) limit.sample(at(50), 10, 1, 5)
    expect(limit.limit).toBe(MIN_LIMIT) // 200 ms, but one sample short
    limit.sample(at(50), 10, 1, 5)
    expect(limit.limit).toBeGreaterThan(MIN_LIMIT)
    const after = limit.limit
    for (let i = 0; i < 20; i++) limit.sample(at(1), 10, after, 5)
    expect(limit.limit).toBe(after) // 20 samples, but not yet WINDOW_MS
  })

  it('climbs while latency stays at the baseline and requests wait, up to the ceiling', () => {
    const driver = new Driver().alone(50).run(30, 5_000, ioBound(50))
    // Never by more than doubling plus headroom in a window.
    for (let i = 1; i < driver.limits.length; i++) {
      const before = driver.limits[i - 1] as number
      expect(driver.limits[i]).toBeLessThanOrEqual(2 * before + Math.sqrt(2 * before) + 1)
    }
    expect(driver.limit.limit).toBe(MAX_LIMIT)
  })

  it('falls to a few handlers at once when they share one CPU (latency grows with concurrency)', () => {
    const driver = new Driver().alone(50).run(40, 5_000, ioBound(50))
    expect(driver.limit.limit).toBeGreaterThan(100)
    const high = driver.limit.limit
    driver.reset()
    driver.run(40, 5_000, cpuBound(5))
    // Never by more than half in a window (but for re-measurements of the baseline, after which
    // the limit comes back to where it was).
    let previous = high
    driver.limits.forEach((limit, i) => {
      if (driver.pinned[i]) return
      expect(limit).toBeGreaterThanOrEqual(Math.floor(previous / 2))
      previous = limit
    })
    // Latency of a handler that shares the CPU with n-1 others is n times its own: the limit
    // settles where latency stays within the buffer, a couple of handlers at once.
    expect(driver.limits.slice(-10).every((limit) => limit >= 1 && limit <= 3)).toBe(true)
  })

  it('climbs back within a couple of seconds after a burst', () => {
    const driver = new Driver().alone(20).run(20, 200, ioBound(20))
    const before = driver.limit.limit
    expect(before).toBeGreaterThanOrEqual(200)
    // A burst the server cannot absorb: its handlers slow each other down.
    driver.reset()
    driver.run(15, 2_000, cpuBound(20))
    expect(driver.limit.limit).toBeLessThanOrEqual(5)
    // The burst is over: latency is back to what it was.
    driver.reset()
    driver.run(10, 200, ioBound(20))
    driver.run(10, 200, ioBound(20))
    const back = driver.limits.findIndex((limit) => limit >= 200)
    expect(back).toBeGreaterThanOrEqual(0)
    // From a handful to 200 at a gradient of 1.25 plus headroom per window: about 1.2 s.
    expect(back).toBeLessThan(15)
  })

  it('is not moved by windows in which fewer than half its slots were used (low load)', () => {
    const driver = new Driver().alone(10).run(20, 40, ioBound(10))
    const settled = driver.limit.limit
    expect(settled).toBeGreaterThanOrEqual(40)
    // Low load: a handful at once, and slow, noisy latencies (3x the baseline): no reason to
    // throttle, since the limit is not what holds the work back.
    driver.reset()
    driver.run(50, 3, ioBound(30))
    expect(driver.limits.every((limit) => limit === settled)).toBe(true)
    // Nor grown without bound while idle: a burst then meets a limit near what the server ran at.
    expect(settled).toBeLessThanOrEqual(2 * 40 + 2 * Math.sqrt(2 * 40))
  })

  it('does not starve a server at low load that needs more than one handler at a time', () => {
    // Two to three requests at once, each waiting 100 ms on a database: the floor of one must not
    // last.
    const driver = new Driver().alone(100).run(10, 3, ioBound(100))
    expect(driver.limit.limit).toBeGreaterThanOrEqual(3)
    driver.run(100, 3, ioBound(100))
    expect(driver.limits.slice(10).every((limit) => limit >= 3)).toBe(true)
  })

  it('recovers when handlers get slower for a reason concurrency does not explain', () => {
    // A dependency slows down fourfold under heavy load: the limit first reads it as
    // self-inflicted and falls; latency stays far above the baseline whatever the limit does, so
    // after STRANDED_WINDOWS windows the baseline is measured again, and the limit climbs back.
    const driver = new Driver().alone(10).run(20, 1_000, ioBound(10))
    const before = driver.limit.limit
    expect(before).toBeGreaterThanOrEqual(1_000)
    driver.reset()
    driver.run(40, 1_000, ioBound(40))
    expect(driver.probes).toHaveLength(1)
    const pinnedAt = driver.pinned.indexOf(true)
    expect(pinnedAt).toBeGreaterThanOrEqual(STRANDED_WINDOWS)
    expect(Math.min(...driver.limits.slice(0, pinnedAt))).toBeLessThan(before / 8)
    expect(driver.limit.baseline).toBe(40)
    expect(driver.limit.limit).toBe(MAX_LIMIT)
    // The dependency recovers: a window faster than the baseline lowers it at once.
    driver.run(3, 1_000, ioBound(10))
    expect(driver.limit.baseline).toBe(10)
    expect(driver.limit.limit).toBe(MAX_LIMIT)
  })

  it('measures the baseline again once it is stale and requests wait, then restores the limit', () => {
    const driver = new Driver().alone(10).run(20, 5_000, ioBound(10))
    const held = driver.limit.limit
    expect(held).toBe(MAX_LIMIT)
    const measuredAt = driver.now - driver.limits.length * WINDOW_MS
    driver.reset()
    // Past the refresh interval (plus the jitter drawn, here 0), requests waiting all along; the
    // handlers have become slower (12 ms instead of 10), too little to move the limit.
    driver.run(Math.ceil(REFRESH_MS / WINDOW_MS) + 10, 5_000, ioBound(12))
    expect(driver.probes).toHaveLength(1)
    expect(driver.probes[0]).toBeGreaterThanOrEqual(measuredAt + REFRESH_MS)
    expect(driver.limit.probing).toBe(false)
    expect(driver.limit.baseline).toBe(12)
    // The limit held before the re-measurement is restored, not rebuilt from the floor.
    const pinnedAt = driver.pinned.indexOf(true)
    expect(pinnedAt).toBeGreaterThan(0)
    expect(driver.limits.slice(pinnedAt + 1).every((limit) => limit === held)).toBe(true)
  })

  it('does not pin the limit to re-measure while no request waits', () => {
    const driver = new Driver().alone(10).run(10, 20, ioBound(10)).reset()
    // Stale for ten intervals, but never binding: nothing to gain, throughput to lose.
    driver.run(Math.ceil((10 * REFRESH_MS) / WINDOW_MS), 15, ioBound(10))
    expect(driver.probes).toHaveLength(0)
    expect(driver.limits.every((limit) => limit > MIN_LIMIT)).toBe(true)
  })

  it('spreads re-measurements with jitter, up to JITTER of the interval', () => {
    for (const drawn of [0, 0.5, 0.999]) {
      const driver = new Driver(new GradientLimit({ random: () => drawn })).alone(10)
      const measuredAt = driver.now
      driver.run(Math.ceil(((1 + JITTER) * REFRESH_MS) / WINDOW_MS) + 2, 5_000, ioBound(10))
      expect(driver.probes).toHaveLength(1)
      const due = measuredAt + REFRESH_MS * (1 + JITTER * drawn)
      // Due then (or a little later: the first window after the measurement, at a limit of one,
      // measured it again); taken at the end of the first window that closes after it.
      expect(driver.probes[0]).toBeGreaterThanOrEqual(due)
      expect(driver.probes[0]).toBeLessThan(due + 3 * WINDOW_MS)
    }
  })

  it('ignores latencies that are not finite non-negative numbers', () => {
    const { limit } = new Driver()
    for (const latency of [Number.NaN, -1, Number.POSITIVE_INFINITY]) {
      for (let i = 0; i < BASELINE_SAMPLES; i++) limit.sample(i, latency, 1, 0)
    }
    expect(limit.baseline).toBe(0)
    expect(limit.probing).toBe(true)
  })
})
