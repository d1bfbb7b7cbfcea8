// What the benchmark scripts share: core pinning, medians, and a server child process spoken to
// over IPC (one question, one answer, in order).
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

/** Whether `command` is on PATH. */
export function has(command) {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/**
 * Installs Debian packages with apt-get when the script runs as root on a machine that has it, as a
 * fresh CI machine does; returns whether it did. The benchmarks need no network otherwise.
 */
export function aptInstall(packages) {
  if (process.getuid?.() !== 0 || !has('apt-get')) return false
  console.error(`> apt-get install -y ${packages.join(' ')}`)
  try {
    execFileSync('apt-get', ['update'], { stdio: 'ignore' })
    execFileSync('apt-get', ['install', '-y', ...packages], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/**
 * The preferred load generator `command` (from Debian's `pkg`), installed if missing and possible;
 * `undefined` when it cannot be had, and the script falls back to its Node one.
 */
export function generatorFrom(command, pkg) {
  if (has(command) || (aptInstall([pkg]) && has(command))) return command
  console.error(`${command} is not installed (apt-get install ${pkg}): falling back to a Node load generator`)
  return undefined
}

/** Pins processes to cores with taskset, where the machine has it. */
export const pinned = has('taskset')

/** The command line `argv`, pinned to `core` when taskset is there. */
export function onCore(core, argv) {
  return pinned ? ['taskset', '-c', String(core), ...argv] : argv
}

/**
 * One window of wrk's keep-alive load on `url` from core 1 (the server is on core 0): one thread,
 * `connections` connections, for `seconds` (whole seconds, wrk's unit); the requests it completed
 * and their rate.
 */
export async function wrkWindow(url, connections, seconds) {
  const out = await runCapture(onCore(1, ['wrk', '-t1', `-c${connections}`, `-d${seconds}s`, url]))
  const requests = Number(/(\d+) requests in/.exec(out)?.[1])
  const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1])
  return { requests, rate }
}

/** Runs a command (a load generator) and resolves with what it printed; rejects on failure. */
export function runCapture(argv) {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
    })
    child.on('error', reject)
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv.join(' ')} exited ${code}`))))
  })
}

/** The median of a list of numbers. */
export function median(list) {
  const sorted = [...list].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/**
 * Measures `baseline` and `candidate` alternately for `rounds` rounds (A B, B A, ...) with
 * `measure(contender)` (a cost per operation, sync or async), and returns the median of each and
 * the median of per-round ratios, candidate ÷ baseline. Warm-up is the caller's.
 */
export async function alternate(rounds, baseline, candidate, measure) {
  const b = []
  const c = []
  const ratios = []
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? [baseline, candidate] : [candidate, baseline]
    const results = new Map()
    for (const contender of order) results.set(contender, await measure(contender))
    b.push(results.get(baseline))
    c.push(results.get(candidate))
    ratios.push(results.get(candidate) / results.get(baseline))
  }
  return { baselineNs: median(b), candidateNs: median(c), ratio: median(ratios) }
}

/**
 * Starts a Node script as a server child process on core 0, with an IPC channel. `ask(message)`
 * sends a message and resolves with the next one the child sends back; `ask()` with nothing waits
 * for the child's first message (its "ready").
 */
export function startServer(script, args = [], nodeFlags = []) {
  const command = onCore(0, [process.execPath, ...nodeFlags, script, ...args])
  const child = spawn(command[0], command.slice(1), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const replies = []
  child.on('message', (message) => replies.shift()?.(message))
  const ask = (message) =>
    new Promise((resolve) => {
      replies.push(resolve)
      if (message !== undefined) child.send(message)
    })
  return { child, ask, stop: () => child.send('exit') }
}

/**
 * The rounds of one pair measured in one process, A and B alternating (A B, B A, ...) after two
 * warm-up rounds: each round's windows and its ratios.
 */
async function measureRounds(pair, rounds, measure) {
  for (let i = 0; i < 2; i++) {
    await measure(pair.baseline)
    await measure(pair.candidate)
  }
  const measured = { cpuRatios: [], rateRatios: [], baseline: [], candidate: [] }
  for (let round = 0; round < rounds; round++) {
    const first = round % 2 === 0
    const a = first ? await measure(pair.baseline) : undefined
    const b = await measure(pair.candidate)
    const baseline = a ?? (await measure(pair.baseline))
    measured.baseline.push(baseline)
    measured.candidate.push(b)
    measured.cpuRatios.push(baseline.cpuPerRequest / b.cpuPerRequest)
    measured.rateRatios.push(b.rate / baseline.rate)
  }
  return measured
}

/** A pair's figures: medians over every round of every process that measured it. */
function summarize(pair, parts) {
  const all = (key) => parts.flatMap((part) => part[key])
  const baseline = all('baseline')
  const candidate = all('candidate')
  const cpuRatios = all('cpuRatios')
  return {
    ...pair,
    cpuRatio: median(cpuRatios),
    cpuRatios,
    rateRatio: median(all('rateRatios')),
    baselineCpuUs: median(baseline.map((w) => w.cpuPerRequest)),
    candidateCpuUs: median(candidate.map((w) => w.cpuPerRequest)),
    baselineRate: median(baseline.map((w) => w.rate)),
    candidateRate: median(candidate.map((w) => w.rate)),
  }
}

/**
 * Compares the two contenders of an HTTP `pair` side by side, by server CPU time per request: both
 * live in one server process (bench/http-server.mjs, pinned to core 0) and are loaded in
 * alternating windows, and the figure is the median of per-round ratios. The rounds are shared out
 * over `processes` fresh processes in turn, the contenders built in alternating order: which of
 * the two a process favours (JIT, heap layout) differs from process to process, by as much as the
 * overheads measured (two identical apps came out 0.90 to 1.02 of each other in one-process runs).
 *
 * @param load - runs one load window against a URL; resolves with `{ requests, rate }`
 * @returns the pair's figures, and the Node version the server ran
 */
export async function comparePair(pair, { rounds, processes, load }) {
  if (!Number.isInteger(processes) || processes < 1) {
    throw new RangeError(`--processes must be a whole number ≥ 1, got ${processes}`)
  }
  const script = fileURLToPath(new URL('./http-server.mjs', import.meta.url))
  const count = Math.min(processes, rounds)
  const parts = []
  let node
  for (let index = 0; index < count; index++) {
    const server = startServer(
      script,
      index % 2 === 0 ? [pair.baseline, pair.candidate] : [pair.candidate, pair.baseline],
    )
    const ready = await server.ask()
    node = ready.node
    const measure = async (contender) => {
      await server.ask('begin')
      const { requests, rate } = await load(`http://127.0.0.1:${ready.ports[contender]}${pair.path}`)
      const { cpuMicros } = await server.ask('end')
      return { cpuPerRequest: cpuMicros / requests, rate }
    }
    // This process's share of the rounds, as even as whole rounds allow.
    const share = Math.floor((rounds * (index + 1)) / count) - Math.floor((rounds * index) / count)
    parts.push(await measureRounds(pair, share, measure))
    server.stop()
  }
  return { result: summarize(pair, parts), node }
}

/**
 * A checkout of tether at `ref`, installed with that commit's package manager and built: made once
 * per commit in the system's temporary folder (a git worktree), then reused. For comparing this
 * checkout with an earlier commit (bench/versus.mjs, bench/diagnostics.mjs).
 */
export function buildAt(ref) {
  const git = (...args) => execFileSync('git', args, { cwd: root, encoding: 'utf8' }).trim()
  const sha = git('rev-parse', '--verify', `${ref}^{commit}`)
  const dir = join(tmpdir(), `tether-build-${sha.slice(0, 12)}`)
  if (existsSync(join(dir, 'packages', 'fastify', 'dist', 'index.js'))) return { sha, dir }
  rmSync(dir, { recursive: true, force: true })
  git('worktree', 'prune')
  git('worktree', 'add', '--detach', dir, sha)
  const { packageManager = 'pnpm' } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
  // Its output goes to stderr: stdout carries the calling script's answer.
  const pnpm = (...args) => execFileSync('npx', ['-y', packageManager, ...args], { cwd: dir, stdio: ['ignore', 2, 2] })
  console.error(`> building ${ref} (${sha.slice(0, 12)}) in ${dir}`)
  pnpm('install', '--frozen-lockfile', '--prefer-offline')
  pnpm('-r', '--filter', './packages/*', 'build')
  return { sha, dir }
}
