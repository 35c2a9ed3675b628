#!/usr/bin/env node
// An agent-like child process for examples/server.mjs.
//
//   node examples/agent.cjs [N=20] [intervalMs=150]
//
// Prints N numbered progress lines (`line i of N: <step>`) on stdout, one every intervalMs, then
// exits 0. Like a real agent it owns a long-lived grandchild (`sleep 60`, standing in for an MCP
// server or a dev server) which it kills itself on a normal exit. When the run is canceled the
// daemon signals the whole process group, so the grandchild dies with it.
'use strict'
const { spawn } = require('node:child_process')

const total = positiveInt(process.argv[2], 20)
const intervalMs = positiveInt(process.argv[3], 150)
const steps = ['reading the repo', 'planning', 'editing src/app.ts', 'running tests', 'fixing a test', 'summarizing']

// The grandchild stays in this process's group (no `detached`), so a group signal reaches it.
const helper = spawn('sleep', ['60'], { stdio: 'ignore' })

let i = 0
const timer = setInterval(() => {
  i += 1
  process.stdout.write(`line ${i} of ${total}: ${steps[(i - 1) % steps.length]}\n`)
  if (i >= total) {
    clearInterval(timer)
    helper.kill('SIGTERM')
    // Exit once stdout is flushed (it is a pipe, so writes may be asynchronous).
    process.stdout.write('', () => process.exit(0))
  }
}, intervalMs)

function positiveInt(raw, fallback) {
  const n = Number(raw)
  return Number.isInteger(n) && n > 0 ? n : fallback
}
