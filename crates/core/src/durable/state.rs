//! `state.json` (LC-1): its typed form, the values the host owns in it, and writing it.
//!
//! The file carries, in this order: `schemaVersion` (1), `id`, `projectId`, `conversationId`,
//! `assistantMessageId`, `clientRequestId`, `requestFingerprint`, `agentId`, `status`,
//! `createdAt`, `updatedAt`, `terminalAt`, `exitCode`, `signal`, `error`, `errorCode`,
//! `failureCategory`, `failureDetail`, `failureAction`, `cancelOrigin`, `terminalTrigger`,
//! `terminalRecoveryReason`, `resumable`, `endedWithUnfinishedWork`, then every other field:
//! `workspaceScope`, the host's `durableFields`, and whatever unknown field a file read back
//! held (kept on rewrite).
//!
//! Some of these live in the core ([`crate::RunState`]: ids, status, times, the verdict, the
//! terminal facts); the others live on the host's run object. Those cross as one JSON text
//! ([`HostFields`]) with the native call that writes the file, and only with it: the facade
//! builds that text at the lifecycle points, never on an ordinary emit. The core keeps the last
//! one, so a write the core makes on its own (the cancel origin, hydration) has them too.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::lenient;
use crate::error::CoreResult;
use crate::log_writer::{LogFailure, LogOperation};
use crate::run::RunState;
use crate::service::Service;

/// File name of the durable state inside a run's directory.
pub const STATE_FILE: &str = "state.json";
/// `schemaVersion` of the files this version reads and writes.
pub const SCHEMA_VERSION: u64 = 1;
/// The largest state file (`state.json`, or an old `run.json`) read back, and written. A run's
/// state is a few kilobytes; a larger file in `runsLogDir` is not a state file of ours, and
/// reading it whole at every scan and lookup would cost its size in memory and time.
pub const MAX_STATE_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Every key the file's typed part writes. An extra field by one of these names (from the host
/// or a file) is dropped, so no key is ever written twice.
pub const STATE_KEYS: [&str; 24] = [
    "schemaVersion",
    "id",
    "projectId",
    "conversationId",
    "assistantMessageId",
    "clientRequestId",
    "requestFingerprint",
    "agentId",
    "status",
    "createdAt",
    "updatedAt",
    "terminalAt",
    "exitCode",
    "signal",
    "error",
    "errorCode",
    "failureCategory",
    "failureDetail",
    "failureAction",
    "cancelOrigin",
    "terminalTrigger",
    "terminalRecoveryReason",
    "resumable",
    "endedWithUnfinishedWork",
];

/// The host fields that describe one attempt of a run (SPEC HF-6): `prepareRestart` drops them
/// from the file, and the facade (reading this list through the binding, `attemptFields`) from
/// the run.
pub const ATTEMPT_FIELDS: [&str; 11] = [
    "artifactCount",
    "artifactPaths",
    "removedPaths",
    "artifactOutcome",
    "artifactDelivery",
    "deliverableValid",
    "deliverableValidation",
    "deliverableEntryFile",
    "deliverableArtifactKind",
    "terminalLifecycle",
    "runtimeGenerationId",
];

/// HF-20: how a run's last state-file write went, as the terminal lifecycle record reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatePersistence {
    /// No write was attempted (no `runsLogDir`, or the run was dropped).
    #[default]
    NotWritten,
    /// The file holds what was written.
    Acknowledged,
    /// The write failed for this reason.
    Failed(PersistenceFailure),
}

/// HF-20: why a state-file write failed, in the classes the daemon's analytics report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistenceFailure {
    PermissionDenied,
    ReadOnlyStorage,
    StorageFull,
    StorageUnavailable,
    SerializationFailed,
    Unknown,
}

impl PersistenceFailure {
    /// The class a host's writer named (`"storage_full"`, ...); any other name is `Unknown`.
    pub fn from_name(name: &str) -> Self {
        match name {
            "permission_denied" => Self::PermissionDenied,
            "read_only_storage" => Self::ReadOnlyStorage,
            "storage_full" => Self::StorageFull,
            "storage_unavailable" => Self::StorageUnavailable,
            "serialization_failed" => Self::SerializationFailed,
            _ => Self::Unknown,
        }
    }

    /// The class of an I/O error of the write.
    pub fn of(error: &io::Error) -> Self {
        use io::ErrorKind as Kind;
        match error.kind() {
            Kind::PermissionDenied => return Self::PermissionDenied,
            Kind::ReadOnlyFilesystem => return Self::ReadOnlyStorage,
            Kind::StorageFull | Kind::QuotaExceeded => return Self::StorageFull,
            Kind::NotFound => return Self::StorageUnavailable,
            _ => {}
        }
        #[cfg(unix)]
        {
            match error.raw_os_error() {
                Some(libc::EPERM) => return Self::PermissionDenied,
                Some(libc::EIO) => return Self::StorageUnavailable,
                _ => {}
            }
        }
        Self::Unknown
    }
}

impl std::fmt::Display for PersistenceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PermissionDenied => "permission_denied",
            Self::ReadOnlyStorage => "read_only_storage",
            Self::StorageFull => "storage_full",
            Self::StorageUnavailable => "storage_unavailable",
            Self::SerializationFailed => "serialization_failed",
            Self::Unknown => "unknown",
        })
    }
}

/// Host fields the host's text replaces (SPEC LC-10): a text without one removes it from the file
/// (every other extra field a text leaves out keeps the file's value). A resume attempt's
/// reservation is cleared by leaving it out.
pub const REPLACED_FIELDS: [&str; 1] = ["pendingManualResumeAttemptCount"];

/// The values of `state.json` that the host's run object holds: the facade passes them as one
/// JSON text at each write; a hydrated run starts from what its file held. Lenient: a value of
/// the wrong type reads as the field's default.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HostFields {
    #[serde(deserialize_with = "lenient")]
    pub assistant_message_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub client_request_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub request_fingerprint: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub agent_id: Option<String>,
    /// Any JSON value the host assigned (`null` when none).
    pub failure_category: Value,
    pub failure_detail: Value,
    pub failure_action: Value,
    #[serde(deserialize_with = "lenient")]
    pub terminal_recovery_reason: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub resumable: bool,
    #[serde(deserialize_with = "lenient")]
    pub ended_with_unfinished_work: bool,
    /// `workspaceScope`, the host's durable fields, and unknown fields of a file read back, in
    /// the order they were first seen.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl HostFields {
    /// The facade's JSON text; `None` when it is not a JSON object.
    pub fn parse(text: &str) -> Option<Self> {
        let fields = super::parse_object(text)?;
        serde_json::from_value::<Self>(Value::Object(fields))
            .ok()
            .map(Self::without_reserved)
    }

    /// The run's lookup keys as this file (or the host's text) holds them (LC-3, HF-8).
    pub fn lookup_keys(&self) -> crate::lookup::LookupKeys {
        crate::lookup::LookupKeys {
            client_request_id: self.client_request_id.clone().filter(|id| !id.is_empty()),
            plugin_workflow_id: crate::lookup::plugin_workflow_id(
                self.extra.get("externalPluginAnalytics"),
            ),
        }
    }

    /// HF-6: forgets what the previous attempt observed ([`ATTEMPT_FIELDS`]); the next host
    /// text brings the new attempt's values.
    pub fn forget_attempt(&mut self) {
        self.extra
            .retain(|key, _| !ATTEMPT_FIELDS.contains(&key.as_str()));
    }

    fn without_reserved(mut self) -> Self {
        self.extra
            .retain(|key, _| !STATE_KEYS.contains(&key.as_str()));
        self
    }

    /// Takes the host's newer values: every typed field, and each extra field the newer text
    /// carries (an extra field it does not carry keeps its earlier value, so a field a file
    /// held survives the host's writes, except [`REPLACED_FIELDS`], which go with the text).
    pub fn merge(&mut self, newer: HostFields) {
        let HostFields {
            assistant_message_id,
            client_request_id,
            request_fingerprint,
            agent_id,
            failure_category,
            failure_detail,
            failure_action,
            terminal_recovery_reason,
            resumable,
            ended_with_unfinished_work,
            extra,
        } = newer;
        self.assistant_message_id = assistant_message_id;
        self.client_request_id = client_request_id;
        self.request_fingerprint = request_fingerprint;
        self.agent_id = agent_id;
        self.failure_category = failure_category;
        self.failure_detail = failure_detail;
        self.failure_action = failure_action;
        self.terminal_recovery_reason = terminal_recovery_reason;
        self.resumable = resumable;
        self.ended_with_unfinished_work = ended_with_unfinished_work;
        for name in REPLACED_FIELDS {
            if !extra.contains_key(name) {
                self.extra.remove(name);
            }
        }
        for (key, value) in extra {
            self.extra.insert(key, value);
        }
    }
}

/// A `state.json` read back: the core's fields, and the host's ([`HostFields`], unknown fields
/// included). Lenient per field; [`StateFile::parse`] rejects what is not a state file at all.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StateFile {
    /// Must be the number 1.
    pub schema_version: Value,
    #[serde(deserialize_with = "lenient")]
    pub id: String,
    #[serde(deserialize_with = "lenient")]
    pub project_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub conversation_id: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub status: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub created_at: Option<f64>,
    #[serde(deserialize_with = "lenient")]
    pub updated_at: Option<f64>,
    #[serde(deserialize_with = "lenient")]
    pub terminal_at: Option<f64>,
    #[serde(deserialize_with = "lenient")]
    pub exit_code: Option<f64>,
    #[serde(deserialize_with = "lenient")]
    pub signal: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub error: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub error_code: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub cancel_origin: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub terminal_trigger: Option<String>,
    #[serde(flatten)]
    pub host: HostFields,
}

impl StateFile {
    /// A state file of run `id` (LC-2's validation: a JSON object, `schemaVersion === 1`, `id`
    /// equal to the directory name); `None` for anything else.
    pub fn parse(text: &str, id: &str) -> Option<Self> {
        let fields = super::parse_object(text)?;
        let mut file: Self = serde_json::from_value(Value::Object(fields)).ok()?;
        let version_ok = file.schema_version.as_f64() == Some(SCHEMA_VERSION as f64);
        if !version_ok || file.id != id {
            return None;
        }
        file.host = std::mem::take(&mut file.host).without_reserved();
        Some(file)
    }
}

/// A JS number as `JSON.stringify` writes it: an integral value without a fraction, a
/// non-finite one as `null`.
fn js_number<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if !value.is_finite() {
        serializer.serialize_none()
    } else if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f64(*value)
    }
}

fn js_number_or_null<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => js_number(value, serializer),
        None => serializer.serialize_none(),
    }
}

/// The file as written, borrowed from the run.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateOut<'a> {
    schema_version: u64,
    id: &'a str,
    project_id: Option<&'a str>,
    conversation_id: Option<&'a str>,
    assistant_message_id: Option<&'a str>,
    client_request_id: Option<&'a str>,
    request_fingerprint: Option<&'a str>,
    agent_id: Option<&'a str>,
    status: Option<&'a str>,
    #[serde(serialize_with = "js_number")]
    created_at: f64,
    #[serde(serialize_with = "js_number")]
    updated_at: f64,
    #[serde(serialize_with = "js_number_or_null")]
    terminal_at: Option<f64>,
    #[serde(serialize_with = "js_number_or_null")]
    exit_code: Option<f64>,
    signal: Option<&'a str>,
    error: Option<&'a str>,
    error_code: Option<&'a str>,
    failure_category: &'a Value,
    failure_detail: &'a Value,
    failure_action: &'a Value,
    cancel_origin: Option<&'a str>,
    terminal_trigger: Option<&'a str>,
    terminal_recovery_reason: Option<&'a str>,
    resumable: bool,
    ended_with_unfinished_work: bool,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl RunState {
    /// The run's `state.json` as of now (one JSON object, no newline).
    pub fn state_json(&self) -> CoreResult<String> {
        let host = &self.host;
        let filled = with_always_written(&host.extra);
        let out = StateOut {
            schema_version: SCHEMA_VERSION,
            id: &self.id,
            project_id: self.project_id.as_deref(),
            conversation_id: self.conversation_id.as_deref(),
            assistant_message_id: host.assistant_message_id.as_deref(),
            client_request_id: host.client_request_id.as_deref(),
            request_fingerprint: host.request_fingerprint.as_deref(),
            agent_id: host.agent_id.as_deref(),
            status: self.status.as_deref(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            terminal_at: self.terminal_at,
            exit_code: self.exit_code,
            signal: self.signal.as_deref(),
            error: self.error.as_deref(),
            error_code: self.error_code.as_deref(),
            failure_category: &host.failure_category,
            failure_detail: &host.failure_detail,
            failure_action: &host.failure_action,
            cancel_origin: self.cancel_origin.as_deref(),
            terminal_trigger: self.terminal_trigger.as_deref(),
            terminal_recovery_reason: host.terminal_recovery_reason.as_deref(),
            resumable: host.resumable,
            ended_with_unfinished_work: host.ended_with_unfinished_work,
            extra: filled.as_ref().unwrap_or(&host.extra),
        };
        Ok(serde_json::to_string(&out)?)
    }
}

/// HF-4's two host fields that every state file carries, for a write whose values did not come
/// from the host's run object (a hydration marking a run interrupted, a `run.json` migrated, a
/// file written by a module that leaves them out): `artifactCount` (`0` when absent)
/// and `appliedPluginSnapshotId` (`null` when absent). `None` when `extra` has both already (the
/// usual case: the facade's text always carries them; a value of another shape there is the
/// host's durable field of that name, written as it is).
fn with_always_written(extra: &Map<String, Value>) -> Option<Map<String, Value>> {
    let count_ok = extra.contains_key("artifactCount");
    let snapshot_ok = extra.contains_key("appliedPluginSnapshotId");
    if count_ok && snapshot_ok {
        return None;
    }
    let mut filled = extra.clone();
    if !count_ok {
        filled.insert("artifactCount".into(), Value::from(0));
    }
    if !snapshot_ok {
        filled.insert("appliedPluginSnapshotId".into(), Value::Null);
    }
    Some(filled)
}

/// What a restart would not read back is not written (the previous file stays).
fn check_state_size(json: &str) -> io::Result<()> {
    let size = json.len() as u64 + 1;
    if size > MAX_STATE_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the run's state is {size} bytes, more than the {MAX_STATE_FILE_BYTES} a restart reads back (the host's durable fields are too large)"
            ),
        ));
    }
    Ok(())
}

/// A state-file write the host makes (LC-1 with a host writer): the file `path` of the run
/// `id` at `slot` is to hold `json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostStateWrite {
    pub slot: u32,
    pub id: String,
    pub path: PathBuf,
    pub json: String,
}

/// Writes `json` and a newline as `<dir>/state.json`, atomically: a temp file
/// `state.json.<pid>.<uuid>.tmp` (mode 0600) in the same directory, then moved over the old
/// file. The directory is created when missing. A failed write removes its temp file. Not
/// fsynced: the file survives a crash of the daemon, not a power cut.
///
/// On Linux the new file and the old one swap names in one step (`renameat2` with
/// `RENAME_EXCHANGE`, as atomic for a reader as `rename`), then the old content, now under the
/// temp name, is removed. Replacing a file with `rename` makes ext4 start writing the new file's
/// data back at once (`auto_da_alloc`), which is most of the cost of a state write while the old
/// file has not been written back yet (the usual case: `create` wrote it seconds before):
/// 18-31 µs for the rename against about 6 µs for the swap and the removal, measured here.
///
/// Once the old content has been written back (a run's `create` wrote it more than a few
/// seconds before its verdict, so nearly every terminal write), removing it frees its blocks,
/// 85-145 µs here, all of it inside the caller's call. So before the old content's name is
/// removed it is opened, and the returned handle keeps it: the blocks are freed when the
/// handle is dropped, which the service does on its log writer's thread
/// ([`crate::log_writer::LogWriter::release`]). `None` when there is nothing to release.
pub fn write_state_file(dir: &Path, json: &str) -> io::Result<Option<fs::File>> {
    check_state_size(json)?;
    let mut uuid = uuid::Uuid::encode_buffer();
    let tmp = dir.join(format!(
        "{STATE_FILE}.{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().hyphenated().encode_lower(&mut uuid)
    ));
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        // The directory exists but for a run's first write: try first, create when missing.
        let mut file = match options.open(&tmp) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir)?;
                options.open(&tmp)?
            }
            opened => opened?,
        };
        let mut bytes = Vec::with_capacity(json.len() + 1);
        bytes.extend_from_slice(json.as_bytes());
        bytes.push(b'\n');
        file.write_all(&bytes)?;
        drop(file);
        let dest = dir.join(STATE_FILE);
        // Swapped only with a regular file: a directory (or anything else) in its place would
        // end up under the temp name, where no sweep removes it; the rename below fails on it
        // instead, and the failure is counted.
        let regular = fs::symlink_metadata(&dest).is_ok_and(|meta| meta.file_type().is_file());
        if regular && exchange(&tmp, &dest) {
            // The new content is in place; what is left under the temp name is the old one.
            // (Best effort: the write itself has succeeded. Only a regular file is held, and
            // opening never blocks: `files::open_read`.)
            let old = crate::files::open_read(&tmp).ok();
            let _ = fs::remove_file(&tmp);
            return Ok(old);
        }
        replace(&tmp, &dest).map(|()| None)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Moves `tmp` over `dest`. On Windows a file that is open elsewhere cannot always be replaced:
/// where the system or file system lacks POSIX rename semantics (Wine, older Windows, some
/// network shares) the move fails with `ERROR_ACCESS_DENIED` or `ERROR_SHARING_VIOLATION` for
/// as long as any handle to the old file is open, even one that allows deletion. Such handles
/// are short-lived: a restarted service's index scan or a hydration reading the file (both open
/// it with every share mode and read it at once), a virus scanner or an indexer. So the move is
/// tried again for a moment before the write counts as failed (LC-1), as npm's graceful-fs does
/// for its renames on Windows.
fn replace(tmp: &Path, dest: &Path) -> io::Result<()> {
    crate::files::while_held(|| fs::rename(tmp, dest), crate::files::Held::Replace)
}

/// Swaps the names of two existing files in one atomic step; false when that did not happen
/// (`to` does not exist yet, or the system or file system cannot swap, which is remembered:
/// the caller then renames).
#[cfg(target_os = "linux")]
fn exchange(from: &Path, to: &Path) -> bool {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return false;
    }
    let (Ok(from), Ok(to)) = (
        CString::new(from.as_os_str().as_bytes()),
        CString::new(to.as_os_str().as_bytes()),
    ) else {
        return false;
    };
    // SAFETY: both paths are NUL-terminated strings that live across the call; renameat2 reads
    // them and touches no other memory. The raw syscall avoids needing glibc 2.28's wrapper.
    let done = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    } == 0;
    if !done {
        let errno = io::Error::last_os_error().raw_os_error();
        if matches!(errno, Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) {
            UNSUPPORTED.store(true, Ordering::Relaxed);
        }
    }
    done
}

#[cfg(not(target_os = "linux"))]
fn exchange(_from: &Path, _to: &Path) -> bool {
    false
}

/// Removes the temp files that writers which no longer run left in the run directory `dir`
/// (LC-1: a daemon killed between a state write's first step and its last leaves
/// `state.json.<pid>.<uuid>.tmp`, as the previous version could leave `run.json.tmp-<pid>`).
/// A temp file is left alone while the process its name gives may still be writing it: this
/// process, a live process with that pid (another daemon on the same `runsLogDir`, or an
/// unrelated process that took the pid: a leftover then stays until a later sweep), or any
/// process where this OS cannot be asked. Only names of exactly these shapes are touched.
/// Best effort: what cannot be read or removed stays. Returns how many were removed.
pub(crate) fn sweep_stale_temps(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_writer) else {
            continue;
        };
        if writer_may_run(pid) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The writer's pid in a temp file name of a state write (`state.json.<pid>.<uuid>.tmp`) or of
/// the previous version's snapshot (`run.json.tmp-<pid>`); `None` for any other name.
fn temp_writer(name: &str) -> Option<u32> {
    if let Some(rest) = name
        .strip_prefix(STATE_FILE)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(".tmp"))
    {
        let (pid, uuid) = rest.split_once('.')?;
        return super::is_run_id(uuid).then(|| parse_pid(pid)).flatten();
    }
    name.strip_prefix(super::SNAPSHOT_FILE)
        .and_then(|rest| rest.strip_prefix(".tmp-"))
        .and_then(parse_pid)
}

/// A pid as `std::process::id()` formats it: decimal digits only.
fn parse_pid(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Whether process `pid` may still be writing its temp file.
fn writer_may_run(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    {
        use crate::tree::ProcessTable;
        i32::try_from(pid).is_ok_and(|pid| crate::tree::System.probe(pid).is_some_and(|p| p.alive))
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    {
        true
    }
}

/// The directory of a run whose journal is at `log_path`.
pub(crate) fn run_dir(log_path: &Path) -> PathBuf {
    log_path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

impl Service {
    /// LC-1: writes the run's `state.json` now (synchronously, before returning), with the
    /// host values the facade passed last. Nothing without logging, nothing for a dropped run.
    /// A disk failure is counted and reported (OBS-2); the run goes on in memory.
    pub fn persist_state(&mut self, slot: u32) -> CoreResult<bool> {
        self.persist_state_with(slot, None)
    }

    /// [`Service::persist_state`], first taking the host's values (`host_json`, see
    /// [`HostFields`]; a text that is not a JSON object changes nothing).
    ///
    /// A write that fails leaves the host's values as the last file had them: a durable field
    /// the host then leaves `undefined` keeps the value the file had, never one no file holds
    /// (so a value too large to write, once cleared, does not fail every later write).
    /// `Ok(true)` when the file was written, `Ok(false)` when nothing was (no log, a dropped
    /// run, or a failed write).
    pub fn persist_state_with(&mut self, slot: u32, host_json: Option<&str>) -> CoreResult<bool> {
        let run = self.run_mut(slot)?;
        let before = host_json.and_then(HostFields::parse).map(|host| {
            let before = run.host.clone();
            run.host.merge(host);
            before
        });
        let written = self.write_state(slot);
        if !written {
            if let (Some(before), Ok(run)) = (before, self.run_mut(slot)) {
                run.host = before;
            }
        }
        Ok(written)
    }

    /// Writes the run's state file; false when nothing was written (no log, dropped, or the
    /// write failed, which is counted and reported). With a host writer
    /// ([`Service::use_host_state_writer`]) the write is queued for the host instead, and true.
    pub(crate) fn write_state(&mut self, slot: u32) -> bool {
        let Ok(run) = self.run(slot) else {
            return false;
        };
        let Some(target) = run.log.clone() else {
            return false;
        };
        if run.dropped {
            return false;
        }
        let dir = run_dir(&target.path);
        let json = run.state_json().map_err(|error| {
            (
                PersistenceFailure::SerializationFailed,
                io::Error::other(error.to_string()),
            )
        });
        if self.host_state_writes.is_some() {
            let id = run.id.to_string();
            let json = json.and_then(|json| match check_state_size(&json) {
                Ok(()) => Ok(json),
                Err(error) => Err((PersistenceFailure::of(&error), error)),
            });
            let json = match json {
                Ok(json) => json,
                Err((failure, error)) => {
                    self.state_write_failed(slot, &dir, failure, &error);
                    return false;
                }
            };
            let write = HostStateWrite {
                slot,
                id,
                path: dir.join(STATE_FILE),
                json,
            };
            if let Some(outbox) = self.host_state_writes.as_mut() {
                outbox.push(write);
            }
            return true;
        }
        let written = json.and_then(|json| {
            write_state_file(&dir, &json).map_err(|error| (PersistenceFailure::of(&error), error))
        });
        match written {
            Ok(old) => {
                if let Some(old) = old {
                    // (Without a writer, the old content is freed here, as before.)
                    if let Ok(writer) = self.writer() {
                        writer.release(old);
                    }
                }
                // The journal's directory exists now: its first line needs no mkdir.
                target
                    .dir_ready
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                self.state_write_acknowledged(slot);
                true
            }
            Err((failure, error)) => {
                self.state_write_failed(slot, &dir, failure, &error);
                false
            }
        }
    }

    fn state_write_acknowledged(&mut self, slot: u32) {
        if let Ok(run) = self.run_mut(slot) {
            run.state_persistence = StatePersistence::Acknowledged;
        }
        self.disk.stats.state_written += 1;
        // (A run the index sweep forgot while its directory was missing goes back in.)
        if let Some(run) = self.run(slot).ok().filter(|run| self.disk.lacks(&run.id)) {
            let (id, project_id, keys) = (run.id.clone(), run.project_id.clone(), run.keys.clone());
            let created_at = run.created_at;
            self.disk.add(&id, project_id, keys, created_at);
        }
    }

    fn state_write_failed(
        &mut self,
        slot: u32,
        dir: &Path,
        failure: PersistenceFailure,
        error: &io::Error,
    ) {
        if let Ok(run) = self.run_mut(slot) {
            run.state_persistence = StatePersistence::Failed(failure);
        }
        self.disk.stats.state_failed += 1;
        self.log_shared.fail(0, || {
            LogFailure::io(dir.join(STATE_FILE), LogOperation::StateFile, error)
        });
    }

    /// LC-1 with a host writer (the facade's `writeDurableState` option): from now on every
    /// state-file write of this service is queued for the host ([`Service::take_host_state_writes`])
    /// and its outcome comes back through [`Service::host_state_write_outcome`]. Called once,
    /// before the first run exists.
    pub fn use_host_state_writer(&mut self) {
        if self.host_state_writes.is_none() {
            self.host_state_writes = Some(Vec::new());
        }
    }

    /// The state-file writes queued for the host since the last call, oldest first (none
    /// without a host writer).
    pub fn take_host_state_writes(&mut self) -> Vec<HostStateWrite> {
        self.host_state_writes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// How the host's write of a queued state file went: `Ok` when the file holds it, else the
    /// failure's class. Counted and reported as a write of the core's own; an outcome for a run
    /// no longer at `slot` (dropped, its slot reused) changes nothing.
    pub fn host_state_write_outcome(
        &mut self,
        slot: u32,
        id: &str,
        outcome: Result<(), PersistenceFailure>,
    ) {
        let Some(dir) = self
            .run(slot)
            .ok()
            .filter(|run| &*run.id == id)
            .and_then(|run| run.log.as_ref().map(|target| run_dir(&target.path)))
        else {
            return;
        };
        match outcome {
            Ok(()) => self.state_write_acknowledged(slot),
            Err(failure) => {
                let error =
                    io::Error::other(format!("the host's writeDurableState reported {failure}"));
                self.state_write_failed(slot, &dir, failure, &error);
            }
        }
    }

    /// Removes the run's state file, and its directory when the run never queued a journal line
    /// (`drop`: as far as a later service can tell, the run never existed). The directory of a run
    /// with lines stays for its journal (LOG-7): the log writer may still be writing there, and a
    /// directory removed under it would lose them. Best effort.
    pub(crate) fn delete_state(&mut self, slot: u32) {
        let Ok(run) = self.run(slot) else {
            return;
        };
        if let Some(target) = run.log.as_ref() {
            let dir = run_dir(&target.path);
            let _ = fs::remove_file(dir.join(STATE_FILE));
            if !run.log_lines_queued {
                // Fails, harmlessly, when something else is there.
                let _ = fs::remove_dir(&dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_20_write_failures_fall_in_the_reported_classes() {
        let class =
            |kind: io::ErrorKind| PersistenceFailure::of(&io::Error::from(kind)).to_string();
        assert_eq!(class(io::ErrorKind::PermissionDenied), "permission_denied");
        assert_eq!(
            class(io::ErrorKind::ReadOnlyFilesystem),
            "read_only_storage"
        );
        assert_eq!(class(io::ErrorKind::StorageFull), "storage_full");
        assert_eq!(class(io::ErrorKind::QuotaExceeded), "storage_full");
        assert_eq!(class(io::ErrorKind::NotFound), "storage_unavailable");
        assert_eq!(class(io::ErrorKind::Interrupted), "unknown");
        #[cfg(unix)]
        {
            let raw =
                |code| PersistenceFailure::of(&io::Error::from_raw_os_error(code)).to_string();
            assert_eq!(raw(libc::ENOSPC), "storage_full");
            assert_eq!(raw(libc::EROFS), "read_only_storage");
            assert_eq!(raw(libc::EACCES), "permission_denied");
            assert_eq!(raw(libc::EPERM), "permission_denied");
            assert_eq!(raw(libc::EIO), "storage_unavailable");
        }
        assert_eq!(
            PersistenceFailure::SerializationFailed.to_string(),
            "serialization_failed"
        );
    }

    #[test]
    fn lc_1_host_fields_read_leniently_and_keep_extras_in_order() {
        let host = HostFields::parse(
            r#"{"assistantMessageId":"m","clientRequestId":5,"failureCategory":{"a":1},
                "resumable":"yes","endedWithUnfinishedWork":true,"workspaceScope":{"w":1},
                "zeta":1,"alpha":2,"status":"running","id":"x"}"#,
        )
        .unwrap();
        assert_eq!(host.assistant_message_id.as_deref(), Some("m"));
        assert_eq!(host.client_request_id, None);
        assert_eq!(host.failure_category, serde_json::json!({ "a": 1 }));
        assert!(!host.resumable);
        assert!(host.ended_with_unfinished_work);
        let keys: Vec<&str> = host.extra.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            vec!["workspaceScope", "zeta", "alpha"],
            "reserved keys dropped"
        );
        assert_eq!(HostFields::parse("[1]"), None);
        assert_eq!(HostFields::parse("nope"), None);
    }

    #[test]
    fn lc_10_a_reservation_goes_with_the_host_text_that_leaves_it_out() {
        let mut host =
            HostFields::parse(r#"{"pendingManualResumeAttemptCount":2,"kept":1}"#).unwrap();
        host.merge(HostFields::parse(r#"{"pendingManualResumeAttemptCount":3}"#).unwrap());
        assert_eq!(
            Value::Object(host.extra.clone()),
            serde_json::json!({ "pendingManualResumeAttemptCount": 3, "kept": 1 })
        );
        host.merge(HostFields::parse(r#"{"other":true}"#).unwrap());
        assert_eq!(
            Value::Object(host.extra),
            serde_json::json!({ "kept": 1, "other": true }),
            "cleared, while the other extras stay"
        );
    }

    #[test]
    fn lc_1_a_newer_host_text_replaces_typed_fields_and_overlays_extras() {
        let mut host = HostFields::parse(r#"{"agentId":"a","kept":1,"changed":1}"#).unwrap();
        host.merge(HostFields::parse(r#"{"changed":2,"added":3}"#).unwrap());
        assert_eq!(host.agent_id, None);
        assert_eq!(
            Value::Object(host.extra),
            serde_json::json!({ "kept": 1, "changed": 2, "added": 3 })
        );
    }

    #[test]
    fn hf_4_every_write_carries_artifact_count_and_applied_plugin_snapshot_id() {
        use crate::service::CreateMeta;
        use crate::test_support::{log_dir, service};
        let (dir, layout) = log_dir("state-always-written");
        let mut svc = service(Some(10), Some(layout));
        let created = svc.create(CreateMeta::default(), 1.0);
        let path = dir.join(&created.id).join(STATE_FILE);
        let read = || -> Value {
            serde_json::from_str(&fs::read_to_string(&path).unwrap_or_default()).unwrap_or_default()
        };
        // A text without them (a file another module wrote, read back): filled in.
        svc.persist_state_with(created.slot, Some(r#"{"model":"m"}"#))
            .unwrap();
        let state = read();
        assert_eq!(state["artifactCount"], serde_json::json!(0));
        assert_eq!(state["appliedPluginSnapshotId"], Value::Null);
        assert!(state
            .as_object()
            .is_some_and(|o| o.contains_key("appliedPluginSnapshotId")));
        // The host's own values are written as they are (a durable field of that name may have
        // any shape: HF-4).
        svc.persist_state_with(
            created.slot,
            Some(r#"{"artifactCount":"3","appliedPluginSnapshotId":"snap"}"#),
        )
        .unwrap();
        let state = read();
        assert_eq!(state["artifactCount"], serde_json::json!("3"));
        assert_eq!(state["appliedPluginSnapshotId"], serde_json::json!("snap"));
        svc.persist_state_with(created.slot, Some(r#"{"artifactCount":4}"#))
            .unwrap();
        assert_eq!(read()["artifactCount"], serde_json::json!(4));
        assert_eq!(read()["model"], serde_json::json!("m"), "extras kept");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_1_a_failed_write_leaves_the_host_values_the_file_had() {
        use crate::service::CreateMeta;
        use crate::test_support::{log_dir, service};
        let (dir, layout) = log_dir("state-failed-write");
        let mut svc = service(Some(10), Some(layout));
        let created = svc.create(CreateMeta::default(), 1.0);
        let path = dir.join(&created.id).join(STATE_FILE);
        let read = || -> Value {
            serde_json::from_str(&fs::read_to_string(&path).unwrap_or_default()).unwrap_or_default()
        };
        svc.persist_state_with(created.slot, Some(r#"{"model":"m"}"#))
            .unwrap();
        let written = svc.disk.stats.state_written;
        // Too large to write (LC-1's size bound): not written, the file stays as it was.
        let big = format!(
            r#"{{"model":"m2","output":"{}"}}"#,
            "x".repeat(MAX_STATE_FILE_BYTES as usize)
        );
        svc.persist_state_with(created.slot, Some(&big)).unwrap();
        assert_eq!(svc.disk.stats.state_written, written);
        assert_eq!(read()["model"], serde_json::json!("m"));
        // The host cleared the field (absent from its values): the next write is the file's
        // values and the new ones, without the value no file held.
        svc.persist_state_with(created.slot, Some(r#"{"agentId":"a"}"#))
            .unwrap();
        assert_eq!(svc.disk.stats.state_written, written + 1);
        let state = read();
        assert_eq!(state["agentId"], serde_json::json!("a"));
        assert_eq!(state["model"], serde_json::json!("m"));
        assert!(state.get("output").is_none(), "{state}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_1_a_host_writer_is_handed_each_write_and_its_outcome_is_the_runs() {
        use crate::service::CreateMeta;
        use crate::test_support::{log_dir, service};
        let (dir, layout) = log_dir("state-host-writer");
        let mut svc = service(Some(10), Some(layout));
        svc.use_host_state_writer();
        let created = svc.create(CreateMeta::default(), 1.0);
        let writes = svc.take_host_state_writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].slot, created.slot);
        assert_eq!(writes[0].id, &*created.id);
        assert_eq!(writes[0].path, dir.join(&created.id).join(STATE_FILE));
        let state: Value = serde_json::from_str(&writes[0].json).unwrap();
        assert_eq!(state["id"], serde_json::json!(&*created.id));
        assert_eq!(state["status"], serde_json::json!("queued"));
        assert!(!writes[0].path.exists(), "the core writes nothing itself");
        assert!(
            svc.take_host_state_writes().is_empty(),
            "each write is handed once"
        );
        assert_eq!(
            svc.state(created.slot).unwrap().state_persistence,
            StatePersistence::NotWritten
        );
        svc.host_state_write_outcome(created.slot, &created.id, Ok(()));
        assert_eq!(
            svc.state(created.slot).unwrap().state_persistence,
            StatePersistence::Acknowledged
        );
        assert_eq!(svc.disk.stats.state_written, 1);

        svc.persist_state(created.slot).unwrap();
        let write = svc.take_host_state_writes().remove(0);
        // An outcome for another run (a stale slot) changes nothing.
        svc.host_state_write_outcome(
            created.slot,
            "22222222-2222-4222-8222-222222222222",
            Err(PersistenceFailure::StorageFull),
        );
        assert_eq!(svc.disk.stats.state_failed, 0);
        svc.host_state_write_outcome(
            write.slot,
            &write.id,
            Err(PersistenceFailure::from_name("storage_full")),
        );
        assert_eq!(
            svc.state(created.slot).unwrap().state_persistence,
            StatePersistence::Failed(PersistenceFailure::StorageFull)
        );
        assert_eq!(svc.disk.stats.state_failed, 1);
        assert_eq!(
            PersistenceFailure::from_name("disk on fire"),
            PersistenceFailure::Unknown
        );
        // A dropped run's queued write is never handed over (its file is gone for good).
        let other = svc.create(CreateMeta::default(), 2.0);
        svc.persist_state(created.slot).unwrap();
        svc.drop_run(other.slot, 3.0).unwrap();
        let left = svc.take_host_state_writes();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].slot, created.slot);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_a_state_file_is_validated_by_version_and_id() {
        let id = "11111111-1111-4111-8111-111111111111";
        let ok =
            format!(r#"{{"schemaVersion":1,"id":"{id}","status":"running","exitCode":"x","x":1}}"#);
        let file = StateFile::parse(&ok, id).unwrap();
        assert_eq!(file.status.as_deref(), Some("running"));
        assert_eq!(file.exit_code, None);
        assert_eq!(file.host.extra.get("x"), Some(&serde_json::json!(1)));
        assert!(StateFile::parse(&ok, "22222222-2222-4222-8222-222222222222").is_none());
        for bad in [
            format!(r#"{{"schemaVersion":2,"id":"{id}"}}"#),
            format!(r#"{{"schemaVersion":"1","id":"{id}"}}"#),
            format!(r#"{{"id":"{id}"}}"#),
            format!(r#"{{"schemaVersion":1,"id":"{id}""#),
            "[]".to_owned(),
            String::new(),
        ] {
            assert!(StateFile::parse(&bad, id).is_none(), "{bad}");
        }
    }

    #[test]
    fn hf_6_prepare_restart_drops_the_previous_attempts_fields_from_the_file() {
        use crate::service::CreateMeta;
        use crate::test_support::{log_dir, service};
        let (dir, layout) = log_dir("state-attempt");
        let mut svc = service(Some(10), Some(layout));
        let created = svc.create(CreateMeta::default(), 1.0);
        let attempt = r#"{"artifactCount":2,"artifactPaths":["a.png"],"removedPaths":["b"],"deliverableValid":true,"model":"m","designSystemScope":{"d":1}}"#;
        svc.persist_state_with(created.slot, Some(attempt)).unwrap();
        svc.finish(
            created.slot,
            Some("failed".into()),
            Some(1.0),
            None,
            "{}",
            2.0,
        )
        .unwrap();
        let read = |path: &std::path::Path| -> Value {
            serde_json::from_str(&fs::read_to_string(path).unwrap_or_default()).unwrap_or_default()
        };
        let path = dir.join(&created.id).join(STATE_FILE);
        assert_eq!(read(&path)["artifactPaths"], serde_json::json!(["a.png"]));
        // The facade's text for the new attempt carries only what the run still holds.
        let restarted = svc
            .prepare_restart(created.slot, Some(r#"{"artifactCount":0}"#), 3.0)
            .unwrap();
        assert_eq!(restarted, Some(2.0));
        let state = read(&path);
        for gone in ["artifactPaths", "removedPaths", "deliverableValid"] {
            assert!(state.get(gone).is_none(), "{gone} was dropped: {state}");
        }
        assert_eq!(state["artifactCount"], 0);
        assert_eq!(state["model"], "m", "not an attempt's observation");
        assert_eq!(state["designSystemScope"], serde_json::json!({ "d": 1 }));
        assert_eq!(state["status"], "queued");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_1_create_writes_the_file_drop_removes_it_and_a_dropped_run_is_never_written_again() {
        use crate::test_support::{keyed_meta, keys, log_dir, service};
        let (dir, layout) = log_dir("state-create-drop");
        let mut svc = service(Some(10), Some(layout));
        let created = svc.create(
            keyed_meta(
                Some("p"),
                keys(Some("req"), None),
                r#"{"clientRequestId":"req","requestFingerprint":"fp","workspaceScope":{"w":1}}"#,
            ),
            1_717_171_717_171.0,
        );
        let path = dir.join(&created.id).join(STATE_FILE);
        let state: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let keys: Vec<&str> = state
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected: Vec<&str> = STATE_KEYS.to_vec();
        // The host's text, then HF-4's two fields every file carries (this text leaves them out).
        expected.extend(["workspaceScope", "artifactCount", "appliedPluginSnapshotId"]);
        assert_eq!(keys, expected);
        assert_eq!(state["createdAt"], serde_json::json!(1_717_171_717_171_u64));
        assert_eq!(state["requestFingerprint"], "fp");
        assert_eq!(svc.stats().state_file.written, 1);
        svc.persist_state_with(created.slot, Some(r#"{"failureCategory":"x"}"#))
            .unwrap();
        let state: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(state["failureCategory"], "x");
        assert_eq!(
            state["workspaceScope"],
            serde_json::json!({ "w": 1 }),
            "kept"
        );
        assert_eq!(state["requestFingerprint"], Value::Null, "replaced");
        let names: Vec<String> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![STATE_FILE.to_owned()], "no temp file left");
        assert!(svc.drop_run(created.slot, 2.0).unwrap());
        assert!(
            !dir.join(&created.id).exists(),
            "an empty run directory goes too"
        );
        svc.persist_state(created.slot).unwrap();
        assert!(!path.exists());
        assert_eq!(svc.hydrate(&created.id, 3.0).unwrap(), None);
        assert_eq!(svc.stats().state_file.written, 2);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_1_a_state_file_another_handle_holds_open_is_still_replaced() {
        // A reader (another service's index scan, a hydration, a virus scanner) holds the old
        // file open for a moment while the state changes: the write waits it out (Windows
        // without POSIX rename semantics) or replaces it at once, and never fails for it.
        let dir = std::env::temp_dir().join(format!("chat-run-state-held-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert!(write_state_file(&dir, r#"{"n":0}"#).is_ok());
        for n in 1..=20 {
            let path = dir.join(STATE_FILE);
            let held = crate::files::open_read(&path).unwrap();
            let reader = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(5));
                drop(held);
            });
            let written = write_state_file(&dir, &format!("{{\"n\":{n}}}"));
            assert!(written.is_ok(), "write {n}: {written:?}");
            reader.join().unwrap();
            assert_eq!(
                fs::read_to_string(&path).unwrap(),
                format!("{{\"n\":{n}}}\n")
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_1_the_file_is_one_object_and_a_newline_written_atomically_owner_only() {
        let dir = std::env::temp_dir().join(format!("chat-run-state-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let run_dir = dir.join("run");
        assert!(write_state_file(&run_dir, r#"{"a":1}"#).unwrap().is_none());
        let old = write_state_file(&run_dir, r#"{"a":2}"#).unwrap();
        assert_eq!(
            fs::read_to_string(run_dir.join(STATE_FILE)).unwrap(),
            "{\"a\":2}\n"
        );
        // Where the names were swapped, the old content comes back open, already without a
        // name (the listing below), to be closed elsewhere.
        #[cfg(target_os = "linux")]
        {
            use std::io::Read;
            let mut text = String::new();
            old.expect("the old content's handle")
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(text, "{\"a\":1}\n");
        }
        #[cfg(not(target_os = "linux"))]
        assert!(old.is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(run_dir.join(STATE_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<String> = fs::read_dir(&run_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec![STATE_FILE.to_owned()],
            "no temp file left behind"
        );
        // A directory that cannot be created: an error, and no temp file anywhere.
        fs::write(dir.join("file"), "x").unwrap();
        assert!(write_state_file(&dir.join("file"), "{}").is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_1_a_directory_where_the_state_file_belongs_fails_the_write_and_leaves_no_temp_entry() {
        let dir = std::env::temp_dir().join(format!("chat-run-state-dir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let run_dir = dir.join("run");
        fs::create_dir_all(run_dir.join(STATE_FILE)).unwrap();
        for _ in 0..2 {
            assert!(write_state_file(&run_dir, r#"{"a":1}"#).is_err());
        }
        let names: Vec<String> = fs::read_dir(&run_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec![STATE_FILE.to_owned()],
            "run directory holds {names:?}"
        );
        assert!(run_dir.join(STATE_FILE).is_dir(), "left as it was");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_1_a_state_larger_than_a_restart_reads_back_is_not_written_and_the_old_file_stays() {
        let dir = std::env::temp_dir().join(format!("chat-run-state-big-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let run_dir = dir.join("run");
        assert!(write_state_file(&run_dir, r#"{"a":1}"#).is_ok());
        // With its newline, one byte over the limit.
        let big = format!(
            r#"{{"a":"{}"}}"#,
            "x".repeat(MAX_STATE_FILE_BYTES as usize - 8)
        );
        assert_eq!(big.len() as u64, MAX_STATE_FILE_BYTES);
        let error = write_state_file(&run_dir, &big).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("durable fields"), "{error}");
        assert_eq!(
            fs::read_to_string(run_dir.join(STATE_FILE)).unwrap(),
            "{\"a\":1}\n"
        );
        assert_eq!(
            fs::read_dir(&run_dir).unwrap().count(),
            1,
            "no temp file left"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
