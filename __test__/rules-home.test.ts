// Each rule has one home, in the Rust core; where the facade keeps a hot-path copy, this file
// checks that the copy answers as the core does (MOD-1, OPT-2 defaults, TMR-1/TMR-2).
import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { TERMINAL_RUN_STATUSES, createChatRunService } from '../index.js'

const requireNode = createRequire(import.meta.url)
const native = requireNode('../loader.js') as {
  terminalStatuses(): string[]
  serviceDefaults(): string
  timerDelay(ms: number): number | null
  openDesignPluginId(): string
}

const options = { createSseResponse: () => ({ send() {}, end() {}, cleanup() {} }), createSseErrorPayload: () => ({}) }

describe('the facade follows the core rules', () => {
  it('MOD-1: the exported Set is the core terminal list, in its order', () => {
    expect([...TERMINAL_RUN_STATUSES]).toEqual(native.terminalStatuses())
    expect([...TERMINAL_RUN_STATUSES]).toEqual(['succeeded', 'failed', 'canceled'])
  })

  it('MOD-1: isTerminal (the hot-path copy) agrees with the core list', () => {
    const { isTerminal } = createChatRunService(options)
    for (const status of native.terminalStatuses()) expect(isTerminal(status)).toBe(true)
    for (const status of ['queued', 'running', 'Succeeded', '', null, undefined, 1])
      expect(isTerminal(status)).toBe(false)
  })

  it('OPT-2: the defaults a service applies are the core defaults', () => {
    const defaults = JSON.parse(native.serviceDefaults())
    expect(defaults).toMatchObject({ maxEvents: 2000, ttlMs: 1_800_000, shutdownGraceMs: 3000 })
  })

  it('HF-8: the plugin id create() attributes runs of is the one the core indexes state files by', () => {
    expect(native.openDesignPluginId()).toBe('open-design')
    const { create } = createChatRunService(options)
    const id = native.openDesignPluginId()
    expect(create({ analyticsHints: { externalPluginId: id } }).externalPluginAnalytics).toMatchObject({
      externalPluginId: id,
    })
  })

  it('TMR-1/TMR-2: the timer clamp', () => {
    expect(native.timerDelay(Infinity)).toBeNull()
    expect(native.timerDelay(Number.NaN)).toBe(1)
    expect(native.timerDelay(0)).toBe(1)
    expect(native.timerDelay(-5)).toBe(1)
    expect(native.timerDelay(250)).toBe(250)
    expect(native.timerDelay(2 ** 40)).toBe(2147483647)
  })
})
