// Runs a command while other processes keep every core busy, as on a shared CI machine:
//
//   node scripts/cpu-hog.mjs <command...>
//
// One busy-looping process per core, each ending by itself after 30 minutes at the latest, and
// all stopped by PID as soon as the command ends. Exits with the command's status.
import { spawn, spawnSync } from 'node:child_process'
import { availableParallelism } from 'node:os'

const LIMIT_MS = 30 * 60_000
const hogs = Array.from({ length: availableParallelism() }, () =>
  spawn(process.execPath, ['-e', `const end = Date.now() + ${LIMIT_MS}; while (Date.now() < end);`], {
    stdio: 'ignore',
  }),
)
const stop = () => {
  for (const hog of hogs) if (hog.exitCode === null) process.kill(hog.pid, 'SIGKILL')
}
process.on('exit', stop)
console.log(`cpu-hog: ${hogs.length} busy processes (pids ${hogs.map((hog) => hog.pid).join(', ')})`)
const [command, ...args] = process.argv.slice(2)
const result = spawnSync(command, args, { stdio: 'inherit' })
stop()
if (result.error) throw result.error
process.exit(result.status ?? 1)
