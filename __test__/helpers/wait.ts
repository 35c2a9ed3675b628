// Waiting: fixed sleeps and polling until a condition holds.

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** A few milliseconds: lets pending promise callbacks (a starter's rejection, a waiter) run. */
export const flush = (): Promise<void> => sleep(5)

/** Polls `condition` every 10 ms; true as soon as it holds, false once `ms` have passed without. */
export async function waitFor(condition: () => boolean, ms = 2000): Promise<boolean> {
  const deadline = Date.now() + ms
  for (;;) {
    if (condition()) return true
    if (Date.now() > deadline) return false
    await sleep(10)
  }
}

/**
 * Polls an (async) producer until it returns a truthy value and returns that value; throws an error
 * naming `what` after `timeoutMs`.
 */
export async function waitForValue<T>(
  what: string,
  produce: () => T | Promise<T>,
  timeoutMs = 10_000,
  everyMs = 25,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await produce()
    if (value) return value as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(everyMs)
  }
}
