// list: 10000 registered runs over 100 conversations (10 projects); µs per
// `list({ conversationId })`, cycling through the conversations.
import { gc, makeService, now, report, size } from './_common.mjs'

const RUNS = size(10000)
const CONVERSATIONS = size(100)
const CALLS = size(20000)
const WARMUP = size(1000)

const svc = makeService({})
for (let i = 0; i < RUNS; i++) {
  svc.create({ projectId: `project-${i % 10}`, conversationId: `conversation-${i % CONVERSATIONS}` })
}
const ids = Array.from({ length: CONVERSATIONS }, (_, i) => `conversation-${i}`)
let found = 0
for (let i = 0; i < WARMUP; i++) found += svc.list({ conversationId: ids[i % CONVERSATIONS] }).length
gc()
found = 0
const t0 = now()
for (let i = 0; i < CALLS; i++) found += svc.list({ conversationId: ids[i % CONVERSATIONS] }).length
const ms = now() - t0

const sample = svc.list({ conversationId: ids[7 % CONVERSATIONS] })
report('list', {
  runs: RUNS,
  conversations: CONVERSATIONS,
  calls: CALLS,
  usPerList: (ms * 1000) / CALLS,
  runsPerResult: found / CALLS,
  verified:
    found === CALLS * (RUNS / CONVERSATIONS) && sample.every((run) => run.conversationId === ids[7 % CONVERSATIONS]),
})
process.exit(0)
