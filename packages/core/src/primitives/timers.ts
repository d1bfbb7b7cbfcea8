/**
 * Deadline timers without a timer per deadline. Scopes waiting for a deadline sit in one list per
 * distinct delay (every request of a server with `timeout: 5000` waits in the same list); each list
 * owns one unref'd Node timer, armed for its head.
 *
 * A list that empties keeps its timer (it removes itself when the timer fires), so a server whose
 * requests come and go one at a time does not clear and re-create a timer for each of them. Only
 * one empty list at a time keeps its timer this way, the one emptied last: with budgets from
 * headers nearly every request has a delay of its own, and a timer kept per delay would be a
 * timer per request outliving it. So at most one timer, shared, unref'd and holding nothing, is
 * armed beyond the scopes still waiting. Entering and leaving a list is four pointer
 * writes, where a `setTimeout` per request allocates a Timeout, gives it an async id and inserts it
 * into Node's own lists; this is Node's timer design with the per-request object taken out.
 *
 * Entries of one list are appended in the order they are scheduled, so their due times only grow
 * (the same delay added to a clock that only moves forward; if the wall clock steps back, an entry
 * is inserted in order from the tail instead).
 */

// setTimeout cannot wait longer than this; farther due times are reached in hops.
const MAX_TIMER_DELAY = 2 ** 31 - 1

// The links of an entry in a list, private to this copy of the package: the lists are this
// module's own, and a scope is only ever put into the lists of the copy whose code arms it (a
// parent made by another copy spawns its children through its own code), so no other copy reads
// them. Plain symbols, not `Symbol.for`: the same fields, just not reachable from another copy.
/** @internal */
export const kDue = Symbol('tether.timer.due')
/** @internal */
export const kPrev = Symbol('tether.timer.prev')
/** @internal */
export const kNext = Symbol('tether.timer.next')
/** @internal */
export const kList = Symbol('tether.timer.list')
/** @internal */
export const kExpire = Symbol('tether.timer.expire')

/** Something waiting for a due time: the fields are its links in a list. @internal */
export interface Timed {
  [kDue]: number
  [kPrev]: Timed | undefined
  [kNext]: Timed | undefined
  [kList]: TimerList | undefined
  /** Called once the due time has passed. */
  [kExpire](): void
}

/** How many deadline timers are armed for lists with nobody waiting (at most one). @internal */
export function emptyListsArmed(): number {
  let armed = 0
  for (const list of lists.values()) if (list.timer !== undefined && list.head === undefined) armed++
  return armed
}

/** How many deadline timers are armed. @internal */
export function armedTimers(): number {
  let armed = 0
  for (const list of lists.values()) if (list.timer !== undefined) armed++
  return armed
}

/** @internal */
export class TimerList {
  head: Timed | undefined = undefined
  tail: Timed | undefined = undefined
  timer: NodeJS.Timeout | undefined = undefined

  constructor(readonly delay: number) {}
}

const lists = new Map<number, TimerList>()
// The one empty list allowed to keep its timer armed (see above).
let emptyArmed: TimerList | undefined

/**
 * Calls `entry[kExpire]()` once `due` (epoch ms) has passed, unless {@link cancelTimer} is called
 * first. `now` is the current time, passed in because the caller has usually just read it.
 *
 * @internal
 */
export function startTimer(entry: Timed, due: number, now: number): void {
  const delay = Math.max(1, Math.min(Math.ceil(due - now), MAX_TIMER_DELAY))
  let list = lists.get(delay)
  if (list === undefined) {
    list = new TimerList(delay)
    lists.set(delay, list)
  } else if (list === emptyArmed) {
    emptyArmed = undefined
  }
  entry[kDue] = due
  entry[kList] = list
  let before = list.tail
  while (before !== undefined && before[kDue] > due) before = before[kPrev]
  const after = before === undefined ? list.head : before[kNext]
  entry[kPrev] = before
  entry[kNext] = after
  if (before === undefined) list.head = entry
  else before[kNext] = entry
  if (after === undefined) list.tail = entry
  else after[kPrev] = entry
  if (list.timer === undefined) arm(list, now)
}

/** Takes an entry out of its list, if it is in one. @internal */
export function cancelTimer(entry: Timed): void {
  const list = entry[kList]
  if (list === undefined) return
  const prev = entry[kPrev]
  const next = entry[kNext]
  if (prev === undefined) list.head = next
  else prev[kNext] = next
  if (next === undefined) list.tail = prev
  else next[kPrev] = prev
  entry[kPrev] = entry[kNext] = entry[kList] = undefined
  if (list.head === undefined && list.timer !== undefined && list !== emptyArmed) {
    // This list keeps its timer; the one that kept it before gives its timer back.
    const previous = emptyArmed
    emptyArmed = list
    if (previous !== undefined && previous.head === undefined) release(previous)
  }
}

function release(list: TimerList): void {
  if (list.timer !== undefined) clearTimeout(list.timer)
  list.timer = undefined
  lists.delete(list.delay)
}

function arm(list: TimerList, now: number): void {
  const head = list.head as Timed
  const wait = Math.max(1, Math.min(Math.ceil(head[kDue] - now), MAX_TIMER_DELAY))
  list.timer = setTimeout(fire, wait, list)
  list.timer.unref()
}

function fire(list: TimerList): void {
  list.timer = undefined
  const now = Date.now()
  let entry = list.head
  while (entry !== undefined && entry[kDue] <= now) {
    cancelTimer(entry)
    entry[kExpire]()
    entry = list.head
  }
  if (list.head === undefined) {
    lists.delete(list.delay)
    if (emptyArmed === list) emptyArmed = undefined
  } else if (list.timer === undefined) arm(list, now)
}
