//! Helpers shared by the unit tests of the `impl Service` files.

use crate::config::{LogLayout, ServiceConfig};
use crate::history::EventName;
use crate::log_writer::{LogLimits, LogShared};
use crate::lookup::LookupKeys;
use crate::service::{CreateMeta, Service};

/// A pid no process can have (above Linux's largest `pid_max`, 2^22, and macOS's 99,999).
pub const NO_SUCH_PID: u32 = 2_000_000_000;

pub fn service(max_events: Option<usize>, log: Option<LogLayout>) -> Service {
    Service::new(
        ServiceConfig {
            max_events,
            log,
            log_limits: LogLimits::default(),
        },
        LogShared::new(None),
    )
}

pub fn meta(project: &str, conversation: &str) -> CreateMeta {
    CreateMeta {
        project_id: Some(project.into()),
        conversation_id: Some(conversation.into()),
        ..CreateMeta::default()
    }
}

/// Lookup keys (LC-3's `clientRequestId`, HF-8's plugin workflow id).
pub fn keys(request: Option<&str>, workflow: Option<&str>) -> LookupKeys {
    LookupKeys {
        client_request_id: request.map(str::to_owned),
        plugin_workflow_id: workflow.map(str::to_owned),
    }
}

/// `create(meta)`'s input for a run of `project` with lookup `keys` and the host's state-file
/// values `host` (a JSON text), as the facade passes them with logging on.
pub fn keyed_meta(project: Option<&str>, keys: LookupKeys, host: &str) -> CreateMeta {
    CreateMeta::from_lowered(
        project.map(str::to_owned),
        None,
        None,
        None,
        keys,
        Some(host),
    )
}

/// An `stdout` event with `data` at time 10.
pub fn emit(svc: &mut Service, slot: u32, data: &str) -> u64 {
    svc.emit(slot, EventName::Text("stdout"), Some(data), true, 10.0)
        .unwrap()
}

/// Ends the run `succeeded` with exit code 0 at `now` (`finish`, no hook between the verdict
/// and its `'end'` record).
pub fn succeed(svc: &mut Service, slot: u32, now: f64) {
    svc.finish(slot, Some("succeeded".into()), Some(0.0), None, "{}", now)
        .unwrap();
}

/// The ids `replay` sends for `cursor`.
pub fn replay_ids(svc: &Service, slot: u32, cursor: f64) -> Vec<u64> {
    let replay = svc.replay(slot, cursor).unwrap();
    let parsed: Vec<serde_json::Value> = serde_json::from_str(&replay.records_json).unwrap();
    parsed.iter().filter_map(|r| r["id"].as_u64()).collect()
}

/// A fresh directory under the system temp dir, and its log layout.
pub fn log_dir(name: &str) -> (std::path::PathBuf, LogLayout) {
    let dir = std::env::temp_dir().join(format!("chat-run-core-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let layout = LogLayout {
        prefix: format!("{}/", dir.display()),
        suffix: "/events.jsonl".into(),
    };
    (dir, layout)
}

/// A file under the system temp dir, removed when the guard is dropped (a failing test's too),
/// so `cargo test` leaves nothing behind.
pub struct TempFile(std::path::PathBuf);

impl TempFile {
    /// `chat-run-<pid>-<name>` under the system temp dir, holding `text` (the pid first, so a
    /// name's extension stays the last part and a sibling made with `with_extension` is this
    /// process's too).
    pub fn with_text(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("chat-run-{}-{name}", std::process::id()));
        let file = Self(path);
        std::fs::write(&file.0, text).unwrap();
        file
    }

    /// Takes charge of `path`, which a test is about to create (anything there is removed first).
    pub fn at(path: std::path::PathBuf) -> Self {
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl std::ops::Deref for TempFile {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempFile {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Waits for the writer to carry out everything queued so far.
pub fn flush(svc: &Service) {
    let (tx, rx) = std::sync::mpsc::channel();
    svc.flush(Box::new(move || {
        let _ = tx.send(());
    }));
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
}

/// A process a test started: when the guard goes, whether the test passed or failed, the process
/// and what it has started since are SIGKILLed by identity and the process is reaped. Nothing is
/// signalled once the test has reaped it itself (its pid may belong to another process by then).
#[cfg(target_os = "linux")]
pub struct Spawned(pub std::process::Child);

#[cfg(target_os = "linux")]
impl Drop for Spawned {
    fn drop(&mut self) {
        use crate::tree::{Kill, ProcessTable, System};
        // Not yet reaped: the pid is still this test's child, so its descendants are the test's.
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let root = i32::try_from(self.0.id())
            .ok()
            .and_then(|pid| System.probe(pid));
        if let Some(root) = root {
            for p in System.descendants(&[root.id]).unwrap_or_default() {
                System.signal(p.id, Kill::Kill);
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(target_os = "linux")]
impl std::ops::Deref for Spawned {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

#[cfg(target_os = "linux")]
impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
