/**
 * Where the user started a task, for a leak report: the stack without its header line and without
 * tether's own frames. Captured only when the scope's policy asks (`captureStacks`), since a stack
 * per task costs CPU on hot paths.
 *
 * @internal
 */
export function captureStack(): string | undefined {
  const holder: { stack?: string } = {}
  Error.captureStackTrace(holder, captureStack)
  // Drop the "Error" header line and tether's own frames; keep where the user started the task.
  return holder.stack
    ?.split('\n')
    .slice(1)
    .filter((line) => !/[\\/]@tether[\\/]core[\\/]|[\\/]packages[\\/]core[\\/]/.test(line))
    .map((line) => line.trim())
    .join('\n')
}
