import type { Server } from 'node:http'
import type { Http2SecureServer, Http2Server } from 'node:http2'

/**
 * One checker per server: `hardenServer()` bounds delivery (slow readers), idle keep-alive
 * connections and HTTP/2 sessions, all on the same `checkInterval`. One interval running every
 * check in turn, rather than one per concern, keeps a single timer per server however many
 * bounds are on.
 */
interface Checker {
  timer: NodeJS.Timeout | undefined
  ms: number
  readonly checks: Map<symbol, () => void>
}

// Shared, with the slots of the checks (delivery.ts, idle.ts, sessions.ts): hardening one server
// from two copies (the Fastify plugin's `harden` and the app's own hardenServer()) leaves one
// interval and one check per concern, the later call replacing the earlier as within one copy.
const kChecker = Symbol.for('tether.checker')
type CheckedServer = (Server | Http2Server | Http2SecureServer) & { [kChecker]?: Checker }

function runChecks(checker: Checker): void {
  for (const check of checker.checks.values()) check()
}

/**
 * Runs `check` every `ms` while `server` is open, under `slot`: a later call for the same slot
 * replaces the earlier check (`hardenServer()` called again), and `check` undefined removes it.
 * Every check of a server runs from one unref'd interval, cleared when the server closes or has
 * no check left.
 *
 * @param server - the server the checks watch
 * @param slot - which check (delivery, idle, HTTP/2 sessions)
 * @param ms - the check interval: the latest call's applies to every check of the server
 * @param check - what to run, or `undefined` to stop this check
 * @internal
 */
export function setCheck(
  server: Server | Http2Server | Http2SecureServer,
  slot: symbol,
  ms: number,
  check: (() => void) | undefined,
): void {
  const target = server as CheckedServer
  let checker = target[kChecker]
  if (checker === undefined) {
    if (check === undefined) return
    const created: Checker = { timer: undefined, ms, checks: new Map() }
    checker = created
    target[kChecker] = created
    server.once('close', () => {
      if (created.timer !== undefined) clearInterval(created.timer)
      created.timer = undefined
      created.checks.clear()
      if (target[kChecker] === created) target[kChecker] = undefined
    })
  }
  if (check === undefined) checker.checks.delete(slot)
  else checker.checks.set(slot, check)
  if (checker.timer !== undefined && (checker.ms !== ms || checker.checks.size === 0)) {
    clearInterval(checker.timer)
    checker.timer = undefined
  }
  checker.ms = ms
  if (checker.timer === undefined && checker.checks.size > 0) {
    const running = checker
    running.timer = setInterval(() => runChecks(running), ms)
    running.timer.unref()
  }
}
