//! What the core alone costs on the benchmark's workloads, without Node or the napi layer:
//! the figures `bench/README.md` quotes as "the core" come from here.
//!
//! ```sh
//! cargo run --release -p chat-run-core --example core_cost            # every workload, 3 rounds
//! cargo run --release -p chat-run-core --example core_cost -- nolog   # one of nolog, persist, lifecycle
//! ```
//!
//! The records reach the core as the facade hands them over (`Service::emit_staged`, SPEC
//! BND-6): batches of 128 records (a header of five numbers per record and one text of their
//! data JSON), the event name interned, the data 80 bytes of `text_delta` JSON as in
//! `bench/scenarios/_common.mjs`.
//!
//! - `nolog`: 2,000,000 records round-robin over 1000 runs, `maxEvents` 2000, no log
//!   (`emit-nolog`); ns per record.
//! - `persist`: 400,000 records round-robin over 200 runs with a log per run, then the flush
//!   barrier (`emit-persist`); ns per record until the batches are applied, and until every
//!   line is on disk. The logs go to a directory under the system temp dir, removed at the end.
//! - `lifecycle`: 100,000 runs, each created, given 10 records in one batch and finished
//!   (`lifecycle`); µs per run, split into the three steps.

use std::error::Error;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chat_run_core::batch::{DATA_IN_TEXT, FIELDS_PER_RECORD, PERSIST};
use chat_run_core::emit::Verdict;
use chat_run_core::log_writer::{LogLimits, LogShared};
use chat_run_core::{CreateMeta, LogLayout, Service, ServiceConfig};

const BATCH: usize = 128;
const ROUNDS: usize = 3;

type Outcome = Result<(), Box<dyn Error>>;
/// A workload by name.
type Workload = (&'static str, fn() -> Outcome);

fn main() -> Outcome {
    let only = std::env::args().nth(1);
    let workloads: [Workload; 3] = [
        ("nolog", nolog),
        ("persist", persist),
        ("lifecycle", lifecycle),
    ];
    if let Some(name) = only.as_deref() {
        if !workloads.iter().any(|(known, _)| *known == name) {
            return Err(
                format!("unknown workload {name:?}, expected nolog, persist or lifecycle").into(),
            );
        }
    }
    for (name, run) in workloads {
        if only.as_deref().is_none_or(|wanted| wanted == name) {
            run()?;
        }
    }
    Ok(())
}

/// 256 data texts of 80 bytes, `{"type":"text_delta","delta":"<48 characters>"}`.
fn deltas() -> Vec<String> {
    const WORDS: [&str; 16] = [
        "the", "agent", "reads", "file", "and", "writes", "a", "patch", "to", "src", "index",
        "then", "runs", "tests", "ok", "next",
    ];
    (0..256)
        .map(|i: usize| {
            let mut delta = String::new();
            let mut k = i;
            while delta.len() < 48 {
                delta.push_str(WORDS[k % WORDS.len()]);
                delta.push(' ');
                k = k / 3 + 7;
            }
            delta.truncate(48);
            format!("{{\"type\":\"text_delta\",\"delta\":\"{delta}\"}}")
        })
        .collect()
}

fn service(log: Option<LogLayout>) -> Service {
    Service::new(
        ServiceConfig {
            max_events: Some(2000),
            log,
            log_limits: LogLimits::default(),
        },
        LogShared::new(None),
    )
}

/// A batch being filled, as `lib/staging.js` fills it.
#[derive(Default)]
struct Batch {
    header: Vec<f64>,
    text: String,
}

impl Batch {
    fn push(&mut self, slot: u32, id: f64, name: f64, data: &str, now: f64) {
        let flags = f64::from(DATA_IN_TEXT | PERSIST);
        self.header
            .extend_from_slice(&[f64::from(slot), id, name, flags, now]);
        self.text.push_str(data);
        self.text.push('\n');
    }

    fn len(&self) -> usize {
        self.header.len() / FIELDS_PER_RECORD
    }

    fn apply(&mut self, svc: &mut Service) -> Outcome {
        if self.len() > 0 {
            svc.emit_staged(&self.header, &self.text)?;
        }
        self.header.clear();
        self.text.clear();
        Ok(())
    }
}

/// Records round-robin over `runs` runs, `per_run` each, in batches of [`BATCH`].
fn interleaved(svc: &mut Service, runs: usize, per_run: usize) -> Result<usize, Box<dyn Error>> {
    let data = deltas();
    let name = f64::from(svc.intern_event("text_delta"));
    let slots: Vec<u32> = (0..runs)
        .map(|_| svc.create(CreateMeta::default(), 0.0).slot)
        .collect();
    let mut batch = Batch::default();
    let mut records = 0usize;
    for round in 0..per_run {
        let id = (round + 1) as f64;
        for (r, &slot) in slots.iter().enumerate() {
            batch.push(slot, id, name, &data[(round * 7 + r) % data.len()], 1.7e12);
            records += 1;
            if batch.len() == BATCH {
                batch.apply(svc)?;
            }
        }
    }
    batch.apply(svc)?;
    Ok(records)
}

fn nolog() -> Outcome {
    for round in 0..ROUNDS {
        let mut svc = service(None);
        let start = Instant::now();
        let records = interleaved(&mut svc, 1000, 2000)?;
        let ns = start.elapsed().as_nanos() as f64 / records as f64;
        println!("nolog     round {round}: {records} records, {ns:.1} ns/record");
    }
    Ok(())
}

/// Removes the log directory however the workload ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn persist() -> Outcome {
    for round in 0..ROUNDS {
        let dir = TempDir(
            std::env::temp_dir().join(format!("chat-run-core-cost-{}-{round}", std::process::id())),
        );
        let layout = LogLayout {
            prefix: format!("{}/", dir.0.display()),
            suffix: "/events.jsonl".into(),
        };
        let mut svc = service(Some(layout));
        let start = Instant::now();
        let records = interleaved(&mut svc, 200, 2000)?;
        let applied = start.elapsed();
        let (done, flushed) = mpsc::channel();
        svc.flush(Box::new(move || {
            let _ = done.send(());
        }));
        flushed.recv_timeout(Duration::from_secs(120))?;
        let on_disk = start.elapsed();
        let per = |d: Duration| d.as_nanos() as f64 / records as f64;
        println!(
            "persist   round {round}: {records} records, {:.1} ns/record applied, {:.1} ns/record on disk",
            per(applied),
            per(on_disk)
        );
    }
    Ok(())
}

fn lifecycle() -> Outcome {
    const RUNS: usize = 100_000;
    let data = deltas();
    for round in 0..ROUNDS {
        let mut svc = service(None);
        let name = f64::from(svc.intern_event("text_delta"));
        let mut batch = Batch::default();
        let (mut create, mut emits, mut finish) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let start = Instant::now();
        for i in 0..RUNS {
            let t0 = Instant::now();
            let meta = CreateMeta {
                project_id: Some("bench".into()),
                conversation_id: Some(format!("conv-{}", i % 100)),
                ..CreateMeta::default()
            };
            let slot = svc.create(meta, 1.0).slot;
            let t1 = Instant::now();
            for k in 0..10 {
                batch.push(slot, (k + 1) as f64, name, &data[(i + k) % data.len()], 1.0);
            }
            batch.apply(&mut svc)?;
            let t2 = Instant::now();
            let verdict = Verdict {
                status: Some("succeeded".into()),
                exit_code: Some(0.0),
                signal: None,
            };
            svc.finish_begin(slot, verdict, None, 2.0)?;
            svc.finish_end(
                slot,
                r#"{"code":0,"signal":null,"status":"succeeded"}"#,
                2.0,
            )?;
            let t3 = Instant::now();
            create += t1 - t0;
            emits += t2 - t1;
            finish += t3 - t2;
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6 / RUNS as f64;
        println!(
            "lifecycle round {round}: {RUNS} runs, {:.2} us/run (create {:.2}, 10 records {:.2}, finish {:.2})",
            us(start.elapsed()),
            us(create),
            us(emits),
            us(finish)
        );
    }
    Ok(())
}
