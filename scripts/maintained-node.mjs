// Runs a command on a maintained Node line (22, 24 or 26): on the running Node if it is one, else
// on Node 24 fetched from the npm registry (scripts/with-node.sh). Node 20 reached its end of life
// in April 2026; a machine that only has it still runs the project's commands as written.
//
//   node scripts/maintained-node.mjs vitest run
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const OLDEST_MAINTAINED = 22
const FALLBACK = '24'
const command = process.argv.slice(2)
const major = Number(process.versions.node.split('.')[0])
if (major < OLDEST_MAINTAINED) {
  console.error(`Node ${process.version} is past its end of life: running \`${command.join(' ')}\` on Node ${FALLBACK}`)
}
const result =
  major >= OLDEST_MAINTAINED
    ? spawnSync(command[0], command.slice(1), { stdio: 'inherit' })
    : spawnSync('bash', [fileURLToPath(new URL('./with-node.sh', import.meta.url)), FALLBACK, ...command], {
        stdio: 'inherit',
      })
if (result.error) throw result.error
process.exit(result.status ?? 1)
