// The example daemon (examples/server.mjs) driven by a real browser: Debian's chromium, headless,
// through playwright-core (no browser download). The page uses the browser's own EventSource, so
// the reconnect after a dropped connection (with Last-Event-ID) is the browser's, not ours.
//
// Needs /usr/bin/chromium. When it is missing the test tries `apt-get install -y chromium` (as
// root, up to 5 minutes); when that fails, or playwright-core cannot be imported, the suite is
// skipped with a message saying why. Linux only. The DOM types are for the callbacks that run in
// the page.
/// <reference lib="dom" />
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { groupAlive, notLinux, waitForValue } from './helpers'

const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

function ensureChromium(): string | null {
  // Linux only: Debian's chromium, and /proc to see the agent's process group.
  if (notLinux) return `Linux only, not ${process.platform}`
  if (fs.existsSync(CHROMIUM)) return null
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    return `${CHROMIUM} is missing and we are not root, so we cannot run "apt-get install -y chromium"`
  }
  console.log(
    `[browser.test] ${CHROMIUM} is missing: running apt-get update && apt-get install -y chromium (up to 5 min)`,
  )
  const started = Date.now()
  const run = (args: string[]) =>
    spawnSync('apt-get', args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeout: Math.max(1_000, 300_000 - (Date.now() - started)),
      encoding: 'utf8',
    })
  for (const args of [['update'], ['install', '-y', 'chromium']]) {
    const r = run(args)
    if (r.error || r.status !== 0) {
      const why = r.error
        ? r.error.message
        : `exit ${r.status}: ${String(r.stderr).trim().split('\n').slice(-2).join(' / ')}`
      return `${CHROMIUM} is missing and "apt-get ${args.join(' ')}" failed (${why})`
    }
  }
  return fs.existsSync(CHROMIUM) ? null : `apt-get installed chromium but ${CHROMIUM} still does not exist`
}

type Playwright = typeof import('playwright-core')
let playwright: Playwright | null = null
let skipReason = ensureChromium()
if (!skipReason) {
  try {
    playwright = await import('playwright-core')
  } catch (err) {
    skipReason = `playwright-core cannot be imported (${(err as Error).message}); run "npm install"`
  }
}
if (skipReason) console.warn(`[browser.test] SKIPPED: ${skipReason}`)

describe.skipIf(skipReason !== null)('example daemon in a real browser (chromium + EventSource)', () => {
  const LINES = 25
  const INTERVAL_MS = 80
  let server: Awaited<ReturnType<typeof import('../examples/server.mjs').startServer>>
  let browser: import('playwright-core').Browser
  let page: import('playwright-core').Page
  let runsLogDir: string
  const startedGroups = new Set<number>()

  beforeAll(async () => {
    runsLogDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-run-browser-'))
    const { startServer } = await import('../examples/server.mjs')
    server = await startServer({
      port: 0,
      runsLogDir,
      agentLines: LINES,
      lineIntervalMs: INTERVAL_MS,
      testEndpoints: true,
    })
    browser = await playwright!.chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS })
  }, 60_000)

  afterEach(async () => {
    await page?.close().catch(() => {})
  })

  afterAll(async () => {
    await browser?.close().catch(() => {})
    await server?.close().catch(() => {})
    for (const pgid of startedGroups) {
      if (pgid >= 2 && pgid !== process.pid && groupAlive(pgid)) {
        try {
          process.kill(-pgid, 'SIGKILL')
        } catch {}
      }
    }
    if (runsLogDir) fs.rmSync(runsLogDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 })
  }, 60_000)

  async function openPage() {
    page = await browser.newPage()
    await page.goto(`${server.url}/`)
    expect(await page.locator('#status').textContent()).toBe('idle') // a wrong page would fail here
  }

  async function startRunFromPage(lines?: number) {
    if (lines) await page.fill('#line-count', String(lines))
    await page.click('#start')
    const runId = await waitForValue('the page to show the run id', () => page.locator('#run-id').textContent())
    // The agent is spawned detached, so it leads a process group whose id is its pid.
    const pgid = await waitForValue('the agent to be spawned', async () => {
      const body = await (await fetch(`${server.url}/api/runs/${runId}`)).json()
      return body.childPid as number | null
    })
    startedGroups.add(pgid)
    return { runId: runId!, pgid }
  }

  const lineCount = () => page.locator('#lines li').count()

  it('streams every line exactly once, in order, across a dropped connection', async () => {
    await openPage()
    const { runId } = await startRunFromPage()

    await waitForValue('8 lines in the page', async () => (await lineCount()) >= 8, 15_000)
    const cut = await (await fetch(`${server.url}/api/runs/${runId}/drop-connections`, { method: 'POST' })).json()
    expect(cut.dropped).toBeGreaterThanOrEqual(1)
    // The run must still be going, or the reconnect would only replay a finished run.
    expect((await (await fetch(`${server.url}/api/runs/${runId}`)).json()).status).toBe('running')

    await waitForValue(
      'the final status',
      async () => (await page.locator('#status').getAttribute('data-final')) === 'true',
      30_000,
    )
    expect(await page.locator('#status').textContent()).toBe('succeeded')

    const items = await page
      .locator('#lines li')
      .evaluateAll((lis) =>
        lis.map((li) => ({ id: Number((li as HTMLElement).dataset.id), text: li.textContent ?? '' })),
      )
    const numbers = items.map(({ text }) => Number(/^line (\d+) of (\d+): /.exec(text)?.[1]))
    expect(numbers).toEqual(Array.from({ length: LINES }, (_, i) => i + 1))
    expect(items.every(({ text }) => text.includes(` of ${LINES}: `))).toBe(true)
    expect(items.map(({ id }) => id)).toEqual(Array.from({ length: LINES }, (_, i) => i + 1))

    // The browser really reconnected, and said where it was: a second attach with Last-Event-ID.
    const attaches = server.attachments.filter((a) => a.runId === runId)
    expect(attaches.length).toBeGreaterThanOrEqual(2)
    expect(attaches[0].lastEventId).toBeNull()
    const resumedAt = Number(attaches[1].lastEventId)
    expect(resumedAt).toBeGreaterThanOrEqual(8)
    expect(resumedAt).toBeLessThan(LINES)
    expect(Number(await page.locator('#opens').textContent())).toBeGreaterThanOrEqual(2)

    // The JSONL log has every line plus the end record.
    const log = fs
      .readFileSync(path.join(runsLogDir, runId, 'events.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(log.map((r) => r.event)).toEqual([...Array(LINES).fill('stdout'), 'end'])
    expect(log.at(-1).data).toMatchObject({ code: 0, signal: null, status: 'succeeded' })
  }, 60_000)

  it('cancels from the page and the agent process group is gone', async () => {
    await openPage()
    const { runId, pgid } = await startRunFromPage(400) // ~32 s unless canceled
    await waitForValue('2 lines in the page', async () => (await lineCount()) >= 2, 15_000)
    expect(groupAlive(pgid)).toBe(true) // the agent and its `sleep 60` grandchild are running

    await page.click('#cancel')
    await waitForValue(
      'the final status',
      async () => (await page.locator('#status').getAttribute('data-final')) === 'true',
      15_000,
    )
    expect(await page.locator('#status').textContent()).toBe('canceled')

    const body = await (await fetch(`${server.url}/api/runs/${runId}`)).json()
    expect(body).toMatchObject({ status: 'canceled', cancelRequested: true, processGroupId: pgid })
    // Group members die a moment after the signal.
    await waitForValue(`process group ${pgid} to be gone`, () => !groupAlive(pgid), 5_000)
    expect(groupAlive(pgid)).toBe(false)
  }, 60_000)
})
