import { describe, expect, it } from 'vitest'
import { fixture, runNodeSync } from './helpers'

// Handle lifetimes only show under garbage collection, so this runs a fixture in its own
// `node --expose-gc` process and checks its report.
describe('native handle lifetimes under garbage collection', () => {
  const result = runNodeSync(['--expose-gc', fixture('gc-lifetimes.cjs')], { timeout: 30_000 })
  const report = JSON.parse(result.stdout.trim().split('\n').at(-1) || '{}')

  it("a collected service never takes a live service's runs with it (service ids are not reused)", () => {
    expect(report.error).toBeUndefined()
    expect(report.brokenSurvivors).toBe(0)
  })

  it('an eviction timer that outlives its run never evicts a newer run in a reused slot', () => {
    expect(report.freshStillRegistered).toBe(true)
  })

  it('runs that left the registry and that nothing holds give their native slots back; registered ones keep theirs', () => {
    expect(report.leftRunsReleased).toEqual({ live: 2, registered: 2 })
    expect(report.keptRunsReachable).toBe(true)
  })

  it('a service the host let go of is freed at once, though its finished runs await their TTL eviction', () => {
    expect(report.droppedServicesFreed).toBe(20)
  })

  it("a service the host let go of is freed while its run's child lives on (the tree watch holds it weakly)", () => {
    expect(report.servicesWithLiveChildrenFreed).toBe(5)
  })

  it("services of a module copy a test runner's isolation loaded and dropped are freed too", () => {
    expect(report.droppedCopiesServicesFreed).toBe(10)
  })

  it('runs that left the registry report their native history to V8 as external memory until they are collected, or their service is', () => {
    const { whileHeld, afterRelease, whileServiceHeld, afterService } = report.externalReported
    // 50 runs of 400 records each: at least some hundred kilobytes of compressed history.
    expect(whileHeld).toBeGreaterThan(100_000)
    expect(Math.abs(afterRelease)).toBeLessThan(whileHeld / 10)
    expect(whileServiceHeld).toBeGreaterThan(100_000)
    expect(Math.abs(afterService)).toBeLessThan(whileServiceHeld / 10)
  })
})
