//! What a service knows of the runs on disk without loading them (LC-2): which durable runs
//! belong to a project (for `list({ projectId })`) and which run a `clientRequestId` (for
//! `createOrReuse`) or a plugin workflow id (for `findByPluginWorkflowId`, HF-8) names. Built from one scan of `runsLogDir`, started at construction, that reads
//! each run's state file (or old `run.json`) once, and kept up to date by this service's own
//! creates, project writes and drops.
//!
//! The scan runs on a thread of its own: with thousands of runs it reads thousands of files
//! (20,000 runs: about 0.2 s from the page cache, seconds from a cold disk), and construction
//! does not wait for it. The first read of the index waits for it instead (`list({ projectId })`,
//! `createOrReuse`, the stats); what this service changed in the index meanwhile is kept in
//! order and applied after the scan's findings, so the result is the one a scan at
//! construction would have given. A service dropped before its scan ended stops it at the next
//! entry.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::hydrate::HydrationStats;
use super::legacy::{RunSnapshot, SNAPSHOT_FILE, SNAPSHOT_VERSION};
use super::state::{sweep_stale_temps, StateFile, STATE_FILE};
use super::{is_run_id, read_run_file, Unreadable};
use crate::files;
use crate::lookup::{Lookup, LookupKeys};
use crate::service::Service;

/// The ordering key of a run on disk: its `createdAt` (ordered bits), then its id.
type DiskKey = (u64, String);

/// A non-negative, finite `createdAt` as bits that order like the numbers (NaN and negatives
/// as 0).
pub(crate) fn ordered_bits(created_at: f64) -> u64 {
    if created_at.is_finite() && created_at > 0.0 {
        created_at.to_bits()
    } else {
        0
    }
}

/// The runs of one project or one lookup key, in [`DiskKey`] order. Nearly every key names a
/// single run, which is held inline: a `BTreeSet` allocates a whole node (room for 11 keys,
/// about 400 bytes) for one, which made a key cost over a kilobyte per durable run.
#[derive(Debug)]
enum Group {
    One(DiskKey),
    Many(BTreeSet<DiskKey>),
}

impl Group {
    fn insert(&mut self, key: DiskKey) {
        match self {
            Group::One(one) if *one == key => {}
            Group::One(one) => {
                let first = std::mem::take(one);
                *self = Group::Many(BTreeSet::from([first, key]));
            }
            Group::Many(set) => {
                set.insert(key);
            }
        }
    }

    /// Takes `key` out; true when the group is left empty.
    fn remove(&mut self, key: &DiskKey) -> bool {
        match self {
            Group::One(one) => one == key,
            Group::Many(set) => {
                set.remove(key);
                set.is_empty()
            }
        }
    }

    /// The runs, oldest first.
    fn ids(&self) -> impl DoubleEndedIterator<Item = &String> {
        let (one, many) = match self {
            Group::One(key) => (Some(key), None),
            Group::Many(set) => (None, Some(set.iter())),
        };
        one.into_iter()
            .chain(many.into_iter().flatten())
            .map(|(_, id)| id)
    }
}

#[derive(Clone, Debug)]
struct DiskRun {
    project_id: Option<String>,
    keys: LookupKeys,
    created: u64,
}

/// The disk indexes of one service.
#[derive(Default)]
pub struct DiskIndex {
    /// `runsLogDir` as the host passed it (set by the scan).
    pub(crate) dir: Option<PathBuf>,
    /// By id, in id order (the sweep walks it: [`DiskIndex::sweep_one`]).
    runs: BTreeMap<String, DiskRun>,
    by_project: HashMap<String, Group>,
    /// By each lookup key (LC-3, HF-8), in [`Lookup::slot`] order.
    by_key: [HashMap<String, Group>; 2],
    /// Ids found invalid (counted once each in `stats.skipped`).
    invalid: BTreeSet<String>,
    /// Hydrations so far (the last part of a hydrated run's registry key).
    pub(crate) order_tie: u64,
    pub(crate) stats: HydrationStats,
    /// The construction scan while it runs, with the changes made meanwhile.
    scan: Option<PendingScan>,
    /// What the last scan could not read for want of a resource (the directory, an entry or a
    /// state file: [`Unreadable`]); until a scan reads everything, each read of the index scans
    /// again for the entries it does not know yet.
    missed: Option<Unreadable>,
    /// Runs this service forgot (dropped) while a scan still owes entries: a later scan must
    /// not bring them back.
    forgotten: BTreeSet<String>,
    /// The id [`DiskIndex::sweep_one`] looked at last.
    sweep_cursor: Option<String>,
    /// The invalid name [`DiskIndex::prune_gone_invalid`] looked at last.
    prune_cursor: Option<String>,
    /// The last read that failed for want of a resource since the facade last asked
    /// ([`Service::take_unreadable`]), for its warning.
    pub(crate) unreported: Option<Unreadable>,
}

/// The scan of [`DiskIndex::dir`] on its thread, and this service's changes to the index since
/// it started.
struct PendingScan {
    thread: JoinHandle<Scan>,
    changes: Vec<Change>,
    /// Set when the service goes away first: the scan stops at its next entry (nobody would
    /// read what it finds, and a large `runsLogDir` takes a while).
    stop: Arc<AtomicBool>,
}

impl Drop for DiskIndex {
    fn drop(&mut self) {
        if let Some(scan) = &self.scan {
            scan.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// One directory entry, as the scan judged it.
enum Found {
    Run(String, Entry),
    Invalid(String),
}

/// What a scan found, and the first thing it could not read for now (then it is incomplete).
#[derive(Default)]
struct Scan {
    found: Vec<Found>,
    missed: Option<Unreadable>,
    /// Reads that failed for now (the directory, entries, state files).
    unreadable: u64,
}

/// A change to the index made while the scan ran.
enum Change {
    Add(String, Option<String>, LookupKeys, f64),
    Remove(String),
    SetProject(String, Option<String>),
    Skip(String),
}

impl DiskIndex {
    /// Starts indexing `dir` (see the module docs). A scan that cannot get a thread runs here.
    pub(crate) fn start_scan(&mut self, dir: &Path) {
        self.settle();
        self.dir = Some(dir.to_path_buf());
        let owned = dir.to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("chat-run-index".into())
            .spawn(move || scan_dir(&owned, &stopped, &nothing_known));
        match spawned {
            Ok(thread) => {
                self.scan = Some(PendingScan {
                    thread,
                    changes: Vec::new(),
                    stop,
                })
            }
            Err(_) => self.apply(scan_dir(dir, &stop, &nothing_known)),
        }
    }

    /// Waits for the scan, if one is running, and applies its findings and then the changes
    /// made meanwhile. A scan thread that panicked (a bug) is redone here.
    pub(crate) fn settle(&mut self) {
        let Some(scan) = self.scan.take() else {
            return;
        };
        let found = scan.thread.join().unwrap_or_else(|_| {
            let dir = self.dir.as_deref();
            dir.map(|dir| scan_dir(dir, &AtomicBool::new(false), &nothing_known))
                .unwrap_or_default()
        });
        self.apply(found);
        for change in scan.changes {
            match change {
                Change::Add(id, project, keys, created_at) => {
                    self.add(&id, project, keys, created_at)
                }
                Change::Remove(id) => self.remove(&id),
                Change::SetProject(id, project) => self.set_project(&id, project),
                Change::Skip(name) => self.skip(&name),
            }
        }
    }

    /// The running scan, to queue a change on; `None` once it is done (a finished scan is
    /// applied here, so the queue never outlives it: a service that never reads its index
    /// would otherwise queue every create for good).
    fn running_scan(&mut self) -> Option<&mut PendingScan> {
        if self
            .scan
            .as_ref()
            .is_some_and(|scan| scan.thread.is_finished())
        {
            self.settle();
        }
        self.scan.as_mut()
    }

    fn apply(&mut self, scan: Scan) {
        for item in scan.found {
            match item {
                // (A later scan reads only what the index does not know: a run this service
                // created, changed or forgot meanwhile keeps what it knows of it.)
                Found::Run(id, _)
                    if self.runs.contains_key(&id) || self.forgotten.contains(&id) => {}
                Found::Run(id, entry) => {
                    self.add(&id, entry.project_id, entry.keys, entry.created_at);
                    self.stats.indexed += 1;
                }
                Found::Invalid(name) => self.skip(&name),
            }
        }
        self.stats.unreadable += scan.unreadable;
        if let Some(missed) = &scan.missed {
            self.unreported = Some(missed.clone());
        } else {
            self.forgotten.clear();
        }
        self.missed = scan.missed;
    }

    /// After a scan that could not read everything (`missed`): scans again, here, for the
    /// entries the index does not know yet. Nothing to do once a scan read everything.
    fn rescan(&mut self) {
        self.settle();
        let Some(dir) = self.dir.clone() else {
            return;
        };
        if self.missed.is_none() {
            return;
        }
        let scan = scan_dir(&dir, &AtomicBool::new(false), &|name: &str| {
            self.runs.contains_key(name)
                || self.invalid.contains(name)
                || self.forgotten.contains(name)
        });
        self.apply(scan);
    }

    /// Counts a read of a run's files that failed for now, and keeps it for the warning.
    pub(crate) fn unreadable(&mut self, unreadable: Unreadable) -> Unreadable {
        self.stats.unreadable += 1;
        self.unreported = Some(unreadable.clone());
        unreadable
    }

    /// Records a durable run (replacing what was known of it).
    pub(crate) fn add(
        &mut self,
        id: &str,
        project_id: Option<String>,
        keys: LookupKeys,
        created_at: f64,
    ) {
        if let Some(scan) = self.running_scan() {
            scan.changes
                .push(Change::Add(id.to_owned(), project_id, keys, created_at));
            return;
        }
        self.unindex(id);
        // The run has a valid state file now: a directory the scan read while this service was
        // still writing that file (no state.json yet) is no invalid entry, and must not hide
        // the run from the lookups once it leaves memory.
        if self.invalid.remove(id) {
            self.stats.skipped = self.stats.skipped.saturating_sub(1);
        }
        let created = ordered_bits(created_at);
        let key = (created, id.to_owned());
        if let Some(project) = &project_id {
            join_group(&mut self.by_project, project, &key);
        }
        for lookup in Lookup::ALL {
            if let Some(value) = keys.get(lookup) {
                join_group(&mut self.by_key[lookup.slot()], value, &key);
            }
        }
        self.runs.insert(
            id.to_owned(),
            DiskRun {
                project_id,
                keys,
                created,
            },
        );
    }

    /// Forgets a run this service dropped (its state file is gone).
    pub(crate) fn remove(&mut self, id: &str) {
        if let Some(scan) = self.running_scan() {
            scan.changes.push(Change::Remove(id.to_owned()));
            return;
        }
        if self.missed.is_some() {
            self.forgotten.insert(id.to_owned());
        }
        self.unindex(id);
    }

    /// Forgets a run whose files were found gone (the host removed its directory): an index
    /// that holds every run a service ever saw must not keep those it can never load.
    pub(crate) fn gone(&mut self, id: &str) {
        if let Some(scan) = self.running_scan() {
            scan.changes.push(Change::Remove(id.to_owned()));
            return;
        }
        self.unindex(id);
    }

    /// Looks at one indexed run, the next in id order (round and round), and forgets it when
    /// its directory is gone. Called at each `create` with logging on, for one `lstat`: a host
    /// whose retention removes old run directories without asking for them again keeps the
    /// index at about the runs on disk (each stale entry goes within as many creates as the
    /// index holds runs). `run_dir` gives a run's directory (as the service writes it);
    /// `registered` says which runs this service holds in memory, which are never forgotten
    /// here (a run whose first state write failed has no directory yet). A run is forgotten
    /// only while the directory that holds the runs has some entry: an empty one (a share
    /// mounted again later, say) says nothing about a run. Nothing while the construction scan
    /// runs.
    pub(crate) fn sweep_one(
        &mut self,
        run_dir: impl Fn(&str) -> PathBuf,
        registered: impl Fn(&str) -> bool,
    ) {
        if self.running_scan().is_some() {
            return;
        }
        let after = self
            .sweep_cursor
            .as_deref()
            .and_then(|cursor| {
                self.runs
                    .range::<str, _>((Bound::Excluded(cursor), Bound::Unbounded))
                    .next()
            })
            .or_else(|| self.runs.iter().next())
            .map(|(id, _)| id.clone());
        let Some(id) = after else {
            return;
        };
        let dir = run_dir(&id);
        let gone = !registered(&id)
            && fs::symlink_metadata(&dir)
                .is_err_and(|error| error.kind() == std::io::ErrorKind::NotFound)
            && dir
                .parent()
                .and_then(|runs| fs::read_dir(runs).ok())
                .is_some_and(|mut entries| entries.next().is_some());
        if gone {
            self.unindex(&id);
        }
        self.sweep_cursor = Some(id);
    }

    /// Whether a run whose state file was just written is missing from the index (a sweep
    /// forgot it while its directory was missing) and should be added back. False while the
    /// construction scan runs: the create's `add` waits in its queue.
    pub(crate) fn lacks(&self, id: &str) -> bool {
        self.scan.is_none() && self.dir.is_some() && !self.runs.contains_key(id)
    }

    /// Takes `id` out of every index.
    fn unindex(&mut self, id: &str) {
        let Some(old) = self.runs.remove(id) else {
            return;
        };
        let key = (old.created, id.to_owned());
        leave_group(&mut self.by_project, old.project_id.as_deref(), &key);
        for lookup in Lookup::ALL {
            leave_group(&mut self.by_key[lookup.slot()], old.keys.get(lookup), &key);
        }
    }

    /// The host moved a durable run to another project.
    pub(crate) fn set_project(&mut self, id: &str, project_id: Option<String>) {
        if let Some(scan) = self.running_scan() {
            scan.changes
                .push(Change::SetProject(id.to_owned(), project_id));
            return;
        }
        if let Some(run) = self.runs.get(id).cloned() {
            let created_at = f64::from_bits(run.created);
            self.add(id, project_id, run.keys, created_at);
        }
    }

    /// The durable runs of a project, oldest first (those of entries that could not be read
    /// for now are missing: a later call reads them).
    pub(crate) fn project_runs(&mut self, project_id: &str) -> Vec<String> {
        self.rescan();
        self.by_project
            .get(project_id)
            .map(|group| group.ids().cloned().collect())
            .unwrap_or_default()
    }

    /// The newest durable run created with this key whose state file was not found invalid
    /// since (a load that finds the files gone takes the run out of the index, so the next
    /// call gives the next newest). `Err` while part of the directory could not be read: the
    /// newest may be there.
    pub(crate) fn keyed_run(
        &mut self,
        lookup: Lookup,
        key: &str,
    ) -> Result<Option<String>, Unreadable> {
        self.rescan();
        let found = self.by_key[lookup.slot()]
            .get(key)
            .and_then(|group| group.ids().rev().find(|id| !self.invalid.contains(*id)))
            .cloned();
        // (While entries are unread, even a run found may not be the newest with the key.)
        match &self.missed {
            Some(missed) => Err(missed.clone()),
            None => Ok(found),
        }
    }

    /// Forgets up to `budget` invalid entries that are gone from the directory (the host
    /// removed them, or removed a run directory while the scan read it half-deleted), looking
    /// at the next ones in name order each call, so `stats.skipped` counts what is there to
    /// skip. Nothing while the directory that holds the runs is missing or empty (a share not
    /// mounted says nothing about its entries) or while the construction scan runs. An entry
    /// whose name is not UTF-8 stays counted (its lossy name cannot be looked up).
    pub(crate) fn prune_gone_invalid(&mut self, budget: usize) {
        if self.running_scan().is_some() || self.invalid.is_empty() {
            return;
        }
        let Some(dir) = self.dir.clone() else {
            return;
        };
        let has_entries = fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some());
        if !has_entries {
            return;
        }
        let start = self.prune_cursor.take();
        let after = |cursor: &Option<String>| match cursor {
            Some(name) => self
                .invalid
                .range::<str, _>((Bound::Excluded(name.as_str()), Bound::Unbounded))
                .take(budget)
                .cloned()
                .collect::<Vec<_>>(),
            None => self.invalid.iter().take(budget).cloned().collect(),
        };
        let mut names = after(&start);
        if names.len() < budget && start.is_some() {
            let wrapped = after(&None);
            let room = budget - names.len();
            names.extend(
                wrapped
                    .into_iter()
                    .take_while(|name| Some(name) != start.as_ref())
                    .take(room),
            );
        }
        for name in &names {
            // A name that is not UTF-8 is known only by its lossy form (U+FFFD in place of its
            // bytes), which names no file: it stays counted.
            if name.contains(char::REPLACEMENT_CHARACTER) {
                continue;
            }
            if entry_gone(&dir.join(name)) && self.invalid.remove(name) {
                self.stats.skipped = self.stats.skipped.saturating_sub(1);
            }
        }
        self.prune_cursor = names.pop();
    }

    /// Counts an invalid entry of the directory, once per name.
    pub(crate) fn skip(&mut self, name: &str) {
        if let Some(scan) = self.running_scan() {
            scan.changes.push(Change::Skip(name.to_owned()));
            return;
        }
        if self.invalid.insert(name.to_owned()) {
            self.stats.skipped += 1;
        }
    }
}

/// Takes `key` out of `index`'s group `group` (a group left empty goes).
fn leave_group(index: &mut HashMap<String, Group>, group: Option<&str>, key: &DiskKey) {
    let Some(name) = group else {
        return;
    };
    if index.get_mut(name).is_some_and(|group| group.remove(key)) {
        index.remove(name);
    }
}

/// Puts `key` into `index`'s group `name` (made when missing).
fn join_group(index: &mut HashMap<String, Group>, name: &str, key: &DiskKey) {
    match index.get_mut(name) {
        Some(group) => group.insert(key.clone()),
        None => {
            index.insert(name.to_owned(), Group::One(key.clone()));
        }
    }
}

/// What the scan takes from a run's file.
struct Entry {
    project_id: Option<String>,
    keys: LookupKeys,
    created_at: f64,
}

/// Reads `<run_dir>/state.json`, else `<run_dir>/run.json` (the previous format), of run `id`:
/// `Ok(None)` when neither is a valid file of this run, `Err` when one could not be read for
/// now.
fn read_entry(run_dir: &Path, id: &str) -> Result<Option<Entry>, Unreadable> {
    // (Here a file that cannot be a state file is as good as none: the next one is tried.)
    let read = |name: &str| match read_run_file(&run_dir.join(name)) {
        Ok(text) => Ok(text),
        Err(None) => Ok(None),
        Err(Some(unreadable)) => Err(unreadable),
    };
    if let Some(text) = read(STATE_FILE)? {
        return Ok(StateFile::parse(&text, id).map(|file| Entry {
            keys: file.host.lookup_keys(),
            project_id: file.project_id,
            created_at: file.created_at.unwrap_or(0.0),
        }));
    }
    let Some(text) = read(SNAPSHOT_FILE)? else {
        return Ok(None);
    };
    let Some(snapshot) = RunSnapshot::parse(&text) else {
        return Ok(None);
    };
    Ok(
        (snapshot.version == SNAPSHOT_VERSION && snapshot.id == id).then(|| Entry {
            project_id: snapshot.project_id,
            keys: LookupKeys {
                client_request_id: snapshot.meta.ids.client_request_id,
                plugin_workflow_id: None,
            },
            created_at: snapshot.created_at.unwrap_or(0.0),
        }),
    )
}

impl Service {
    /// LC-2, at construction: indexes the runs under `dir` (the `runsLogDir`) without loading
    /// any. Every entry that is not a run directory with a valid state file (foreign files and
    /// directories, names that are not run ids, a journal without a state file, a corrupt,
    /// half-written or foreign state file) is skipped and counted, never an error. A missing
    /// directory indexes nothing.
    ///
    /// The scan runs on a thread of its own (module docs); [`Service::settle_index`] waits for
    /// it.
    pub fn index_runs(&mut self, dir: &Path) {
        self.disk.start_scan(dir);
    }

    /// Waits for the scan `index_runs` started, if it still runs, and applies what it found.
    pub fn settle_index(&mut self) {
        self.disk.settle();
    }

    /// The last read of `runsLogDir` that failed for want of a resource (LC-2) since the
    /// previous call, if any.
    pub fn take_unreadable(&mut self) -> Option<Unreadable> {
        self.disk.unreported.take()
    }
}

/// LC-2: a run directory, or a symbolic link to one (links are followed, as `get` follows them).
fn is_dir(entry: &fs::DirEntry) -> bool {
    match entry.file_type() {
        Ok(kind) if kind.is_symlink() => fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()),
        Ok(kind) => kind.is_dir(),
        Err(_) => false,
    }
}

/// Whether nothing is left at `path` (not even a dangling link).
fn entry_gone(path: &Path) -> bool {
    fs::symlink_metadata(path).is_err_and(|error| error.kind() == std::io::ErrorKind::NotFound)
}

/// The `known` of a first scan: the index knows no name yet.
fn nothing_known(_: &str) -> bool {
    false
}

/// The scan itself: each entry of `dir`, in directory order, until `stop` is set, but those
/// `known` names (a later scan's: the index has them). A missing directory finds nothing (no run
/// was written yet); one that exists but cannot be listed (no permission, not a directory), and
/// whatever could not be read for want of a resource, is left out and reported (`missed`), not
/// judged: taking it for empty would start a durable request a second time (LC-3).
fn scan_dir(dir: &Path, stop: &AtomicBool, known: &dyn Fn(&str) -> bool) -> Scan {
    let mut scan = Scan::default();
    let miss = |scan: &mut Scan, unreadable: Unreadable| {
        scan.unreadable += 1;
        scan.missed.get_or_insert(unreadable);
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return scan,
        Err(error) => {
            miss(&mut scan, Unreadable::new(dir, &error));
            return scan;
        }
    };
    for entry in entries {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) if files::is_transient(&error) => {
                miss(&mut scan, Unreadable::new(dir, &error));
                continue;
            }
            Err(_) => continue,
        };
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            scan.found
                .push(Found::Invalid(name.to_string_lossy().into_owned()));
            continue;
        };
        if known(name) {
            continue;
        }
        if !is_run_id(name) || !is_dir(&entry) {
            scan.found.push(Found::Invalid(name.to_owned()));
            continue;
        }
        match read_entry(&entry.path(), name) {
            Ok(Some(run)) => scan.found.push(Found::Run(name.to_owned(), run)),
            Ok(None) if entry_gone(&entry.path()) => {
                // Removed since the listing (the host's retention): nothing is left to skip.
            }
            Ok(None) => {
                // A run whose first state write was cut short by a crash has only its temp
                // file (LC-1); a valid run's are swept when it is hydrated.
                sweep_stale_temps(&entry.path());
                scan.found.push(Found::Invalid(name.to_owned()));
            }
            Err(unreadable) => miss(&mut scan, unreadable),
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::state::MAX_STATE_FILE_BYTES;
    use crate::test_support::{keys, log_dir, meta, service, NO_SUCH_PID};
    use std::io;

    #[test]
    fn lc_2_a_finished_scan_is_applied_by_the_next_change_so_nothing_queues_for_good() {
        let (dir, layout) = log_dir("index-scan-done");
        let mut old = service(Some(10), Some(layout.clone()));
        let a = old.create(meta("p", "c"), 1.0).id;
        drop(old);
        let mut svc = service(Some(10), Some(layout));
        svc.index_runs(&dir);
        let started = std::time::Instant::now();
        while !svc
            .disk
            .scan
            .as_ref()
            .is_some_and(|s| s.thread.is_finished())
        {
            assert!(started.elapsed().as_secs() < 10, "the scan ends");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // No index read yet: the first change applies the scan and then itself, unqueued.
        svc.disk.skip("x");
        assert!(svc.disk.scan.is_none());
        assert_eq!(svc.disk.project_runs("p"), vec![a]);
        assert_eq!((svc.disk.stats.indexed, svc.disk.stats.skipped), (1, 1));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_a_run_directory_the_scan_read_before_its_state_file_was_written_never_hides_the_run() {
        use crate::test_support::keys;
        let (dir, layout) = log_dir("index-scan-race");
        // What the scan sees while a create of this service is between its mkdir and its
        // state file: a run directory with nothing in it yet.
        let id = "0f0e0d0c-0b0a-4908-8706-050403020101";
        fs::create_dir_all(dir.join(id)).unwrap();
        let mut svc = service(Some(10), Some(layout));
        svc.index_runs(&dir);
        svc.disk.settle();
        assert_eq!(svc.disk.stats.skipped, 1, "read as an invalid entry");
        // Then the create's state write lands and the run is recorded.
        svc.disk
            .add(id, Some("p".into()), keys(Some("req"), None), 5.0);
        assert_eq!(
            svc.disk
                .keyed_run(Lookup::ClientRequestId, "req")
                .unwrap()
                .as_deref(),
            Some(id)
        );
        assert_eq!(svc.disk.stats.skipped, 0, "no invalid entry after all");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_1_a_run_directory_left_with_only_a_dead_writers_temp_file_is_swept_by_the_scan() {
        let (dir, layout) = log_dir("index-temps");
        let id = "0f0e0d0c-0b0a-4908-8706-050403020100";
        let run_dir = dir.join(id);
        fs::create_dir_all(&run_dir).unwrap();
        let dead = format!("{STATE_FILE}.{NO_SUCH_PID}.{id}.tmp");
        // pid 1 is always alive: its temp file is left alone.
        let live = format!("{STATE_FILE}.1.{id}.tmp");
        fs::write(run_dir.join(&dead), "{}").unwrap();
        fs::write(run_dir.join(&live), "{}").unwrap();
        let mut svc = service(None, Some(layout));
        svc.index_runs(&dir);
        svc.settle_index();
        assert_eq!(svc.disk.stats.skipped, 1);
        assert!(!run_dir.join(&dead).exists());
        #[cfg(any(target_os = "linux", target_os = "macos"))]
        assert!(run_dir.join(&live).exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn lc_2_a_run_directory_that_is_a_symbolic_link_is_indexed_as_get_finds_it() {
        let (elsewhere, elsewhere_layout) = log_dir("index-link-target");
        let (dir, layout) = log_dir("index-link");
        let mut old = service(Some(10), Some(elsewhere_layout));
        let a = old.create(meta("p", "c"), 1.0).id;
        drop(old);
        fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(elsewhere.join(&a), dir.join(&a)).unwrap();
        // A link to a file, and a dangling one, are not runs.
        let b = "0f0e0d0c-0b0a-4908-8706-0504030201ff";
        fs::write(elsewhere.join("file"), "x").unwrap();
        std::os::unix::fs::symlink(elsewhere.join("file"), dir.join(b)).unwrap();
        let c = "0f0e0d0c-0b0a-4908-8706-0504030201fe";
        std::os::unix::fs::symlink(elsewhere.join("missing"), dir.join(c)).unwrap();
        let mut svc = service(Some(10), Some(layout));
        svc.index_runs(&dir);
        svc.settle_index();
        assert_eq!(svc.disk.project_runs("p"), vec![a]);
        assert_eq!((svc.disk.stats.indexed, svc.disk.stats.skipped), (1, 2));
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_dir_all(&elsewhere);
    }

    #[test]
    fn lc_2_a_scan_stops_when_its_service_goes_away_first() {
        let (dir, layout) = log_dir("index-stop");
        let mut old = service(Some(10), Some(layout));
        for i in 0..50 {
            old.create(meta("p", &format!("c{i}")), 1.0);
        }
        drop(old);
        // A stopped scan reads no further entry.
        assert_eq!(
            scan_dir(&dir, &AtomicBool::new(false), &nothing_known)
                .found
                .len(),
            50
        );
        assert!(scan_dir(&dir, &AtomicBool::new(true), &nothing_known)
            .found
            .is_empty());
        // Dropping the index (its service) stops the scan it started.
        let mut index = DiskIndex::default();
        index.start_scan(&dir);
        let stop = index.scan.as_ref().map(|scan| Arc::clone(&scan.stop));
        drop(index);
        assert!(stop.is_some_and(|stop| stop.load(Ordering::Relaxed)));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_a_scan_that_could_not_read_everything_is_redone_by_the_next_lookup() {
        let (dir, layout) = log_dir("index-missed");
        let mut old = service(Some(10), Some(layout));
        let ids: Vec<String> = (0..3)
            .map(|i| old.create(meta("p", &format!("c{i}")), f64::from(i)).id)
            .collect();
        drop(old);
        // What a scan gives when it read one run and then ran out of file descriptors.
        let whole = scan_dir(&dir, &AtomicBool::new(false), &nothing_known);
        let one = whole
            .found
            .into_iter()
            .find(|found| matches!(found, Found::Run(id, _) if *id == ids[0]))
            .unwrap();
        let shortage = io::Error::from(io::ErrorKind::OutOfMemory);
        let mut index = DiskIndex::default();
        index.dir = Some(dir.clone());
        index.apply(Scan {
            found: vec![one],
            missed: Some(Unreadable::new(&dir, &shortage)),
            unreadable: 2,
        });
        assert_eq!(index.stats.indexed, 1);
        assert_eq!(index.stats.unreadable, 2);
        assert!(index.unreported.take().is_some(), "the facade hears of it");
        // A run this service forgets meanwhile stays forgotten, though its file is still there.
        index.remove(&ids[1]);
        // The next lookup scans again, for what the index does not know yet.
        assert_eq!(
            index.project_runs("p"),
            vec![ids[0].clone(), ids[2].clone()]
        );
        assert_eq!(index.stats.indexed, 2);
        assert_eq!(index.stats.skipped, 0, "nothing unread was judged invalid");
        assert!(index.missed.is_none() && index.forgotten.is_empty());
        assert!(index.unreported.is_none());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_3_a_runs_log_dir_that_exists_but_cannot_be_listed_is_unreadable_not_empty() {
        let (dir, _) = log_dir("index-unlistable");
        fs::create_dir_all(&dir).unwrap();
        // Missing: no run was written yet, nothing is owed.
        let missing = dir.join("not-yet");
        let scan = scan_dir(&missing, &AtomicBool::new(false), &nothing_known);
        assert!(scan.found.is_empty() && scan.missed.is_none() && scan.unreadable == 0);
        // A file where the directory belongs (as a directory without read permission, which
        // root passes): the scan owes what it could not list, and says why.
        let file = dir.join("a-file");
        fs::write(&file, "x").unwrap();
        let scan = scan_dir(&file, &AtomicBool::new(false), &nothing_known);
        assert!(scan.found.is_empty());
        assert_eq!(scan.unreadable, 1);
        let missed = scan.missed.expect("reported").to_string();
        assert!(
            missed.starts_with(&format!("could not read {}: ", file.display())),
            "{missed}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn obs_1_invalid_entries_the_host_removed_count_no_more_once_stats_looks_again() {
        let (dir, layout) = log_dir("index-invalid-gone");
        let mut old = service(Some(10), Some(layout.clone()));
        let kept = old.create(meta("p", "c"), 1.0).id;
        drop(old);
        // More invalid entries than one stats() call checks, half of them removed later.
        let total = PRUNE_BUDGET_IN_TEST * 2 + 3;
        let names: Vec<String> = (0..total).map(|i| format!("junk-{i:04}")).collect();
        for name in &names {
            fs::write(dir.join(name), "not a run").unwrap();
        }
        let mut svc = service(Some(10), Some(layout));
        svc.index_runs(&dir);
        svc.settle_index();
        assert_eq!(
            (svc.disk.stats.indexed, svc.disk.stats.skipped),
            (1, total as u64)
        );
        let removed: Vec<&String> = names.iter().step_by(2).collect();
        for name in &removed {
            fs::remove_file(dir.join(name)).unwrap();
        }
        let mut calls = 0;
        let expected = (total - removed.len()) as u64;
        while svc.disk.stats.skipped != expected {
            calls += 1;
            assert!(calls <= 3, "within a few calls: {}", svc.disk.stats.skipped);
            svc.disk.prune_gone_invalid(PRUNE_BUDGET_IN_TEST);
        }
        assert!(calls >= 2, "one call checks at most its budget");
        // What is still there stays counted, and the run is untouched.
        for _ in 0..4 {
            svc.disk.prune_gone_invalid(PRUNE_BUDGET_IN_TEST);
        }
        assert_eq!(
            (svc.disk.stats.indexed, svc.disk.stats.skipped),
            (1, expected)
        );
        assert_eq!(svc.disk.project_runs("p"), vec![kept]);
        // A runs directory that is gone says nothing about its entries.
        fs::remove_dir_all(&dir).unwrap();
        svc.disk.prune_gone_invalid(usize::MAX);
        assert_eq!(svc.disk.stats.skipped, expected);
    }

    #[cfg(unix)]
    #[test]
    fn obs_1_an_invalid_entry_whose_name_is_not_utf8_stays_counted_while_it_is_there() {
        use std::os::unix::ffi::OsStrExt;
        let (dir, _) = log_dir("index-invalid-lossy");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(std::ffi::OsStr::from_bytes(b"junk-\xff")), "x").unwrap();
        fs::write(dir.join("junk-plain"), "x").unwrap();
        let mut svc = service(Some(10), None);
        svc.index_runs(&dir);
        svc.settle_index();
        assert_eq!(svc.disk.stats.skipped, 2);
        for _ in 0..3 {
            svc.disk.prune_gone_invalid(PRUNE_BUDGET_IN_TEST);
        }
        assert_eq!(svc.disk.stats.skipped, 2, "both are still there");
        let _ = fs::remove_dir_all(&dir);
    }

    /// A budget small enough that the test above needs several calls.
    const PRUNE_BUDGET_IN_TEST: usize = 10;

    #[test]
    fn lc_2_a_run_whose_directory_the_host_removed_leaves_the_index_when_a_lookup_misses_it() {
        let (dir, layout) = log_dir("index-gone");
        let mut old = service(Some(10), Some(layout.clone()));
        let keyed = crate::test_support::keyed_meta(
            Some("p"),
            keys(Some("req"), None),
            r#"{"clientRequestId":"req"}"#,
        );
        let kept = old.create(meta("p", "d"), 1.0).id;
        let removed = old.create(keyed, 2.0).id;
        drop(old);
        let mut svc = service(Some(10), Some(layout));
        svc.index_runs(&dir);
        svc.settle_index();
        fs::remove_dir_all(dir.join(&removed)).unwrap();
        // The index still names it until a lookup finds its files gone.
        assert_eq!(
            svc.unregistered_keyed_run(Lookup::ClientRequestId, "req")
                .unwrap(),
            Some(removed.clone())
        );
        assert_eq!(svc.hydrate(&removed, 3.0).unwrap(), None);
        assert_eq!(
            svc.unregistered_keyed_run(Lookup::ClientRequestId, "req")
                .unwrap(),
            None
        );
        assert_eq!(svc.unregistered_project_runs("p"), vec![kept]);
        assert_eq!(
            svc.stats().hydration.skipped,
            0,
            "a removed run is no invalid entry"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_3_a_keyed_lookup_goes_on_to_the_next_newest_when_the_newest_does_not_load() {
        let (dir, layout) = log_dir("index-next-newest");
        let mut old = service(Some(10), Some(layout.clone()));
        let keyed = || {
            crate::test_support::keyed_meta(
                Some("p"),
                keys(Some("req"), None),
                r#"{"clientRequestId":"req"}"#,
            )
        };
        let oldest = old.create(keyed(), 1.0).id;
        let damaged = old.create(keyed(), 2.0).id;
        let removed = old.create(keyed(), 3.0).id;
        drop(old);
        let mut svc = service(Some(10), Some(layout));
        svc.index_runs(&dir);
        svc.settle_index();
        fs::remove_dir_all(dir.join(&removed)).unwrap();
        fs::write(dir.join(&damaged).join(STATE_FILE), "{ not json").unwrap();
        let next = |svc: &mut Service| {
            svc.unregistered_keyed_run(Lookup::ClientRequestId, "req")
                .unwrap()
        };
        assert_eq!(next(&mut svc), Some(removed.clone()));
        assert_eq!(svc.hydrate(&removed, 4.0).unwrap(), None);
        assert_eq!(next(&mut svc), Some(damaged.clone()));
        assert_eq!(svc.hydrate(&damaged, 4.0).unwrap(), None);
        assert_eq!(next(&mut svc), Some(oldest.clone()), "the oldest loads");
        assert!(svc.hydrate(&oldest, 4.0).unwrap().is_some());
        assert_eq!(next(&mut svc), None, "registered now: not unregistered");
        assert_eq!(svc.stats().hydration.skipped, 1, "the damaged one");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_creates_sweep_the_index_of_runs_whose_directories_the_host_removed() {
        let (dir, layout) = log_dir("index-sweep");
        let mut old = service(Some(10), Some(layout.clone()));
        let ids: Vec<String> = (0..4)
            .map(|i| old.create(meta("p", &format!("c{i}")), f64::from(i)).id)
            .collect();
        drop(old);
        let mut svc = service(Some(10), Some(layout));
        svc.index_runs(&dir);
        svc.settle_index();
        for id in &ids[1..3] {
            fs::remove_dir_all(dir.join(id)).unwrap();
        }
        // Nobody asks for them again; each create looks at the next indexed run in id order.
        // The creates' own runs join the index at random places (their ids are random), and
        // those ahead of the cursor take a visit too: so it takes at least as many creates as
        // the index held runs, and a few more when the new ids fall ahead of the cursor.
        let mut created = Vec::new();
        let kept = vec![ids[0].clone(), ids[3].clone()];
        while created.len() < 100
            && (created.len() < 4 || svc.unregistered_project_runs("p") != kept)
        {
            let i = created.len() as u32;
            created.push(
                svc.create(meta("q", &format!("n{i}")), 10.0 + f64::from(i))
                    .id,
            );
        }
        assert_eq!(
            svc.unregistered_project_runs("p"),
            kept,
            "after {} creates",
            created.len()
        );
        // Runs whose directories are there stay, this service's own included.
        assert_eq!(svc.disk.runs.len(), 2 + created.len());
        assert_eq!(svc.stats().hydration.skipped, 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_the_sweep_never_forgets_a_run_this_service_holds_and_a_state_write_brings_one_back() {
        let (dir, layout) = log_dir("index-sweep-own");
        let mut svc = service(Some(10), Some(layout));
        svc.index_runs(&dir);
        svc.settle_index();
        let mut keyed = crate::test_support::keyed_meta(
            Some("p"),
            keys(Some("req"), None),
            r#"{"clientRequestId":"req"}"#,
        );
        keyed.conversation_id = Some("c".into());
        let own = svc.create(keyed, 1.0);
        // Its directory is missing (its first state write failed, or the host removed it).
        fs::remove_dir_all(dir.join(&own.id)).unwrap();
        for i in 0..4 {
            svc.create(meta("q", &format!("n{i}")), 2.0 + f64::from(i));
        }
        assert!(svc.disk.runs.contains_key(&own.id), "registered: kept");
        // Forgotten (as a sweep would, once the run left memory), a state write brings it back.
        svc.disk.unindex(&own.id);
        svc.persist_state_with(own.slot, None).unwrap();
        assert!(dir.join(&own.id).join(STATE_FILE).is_file());
        assert!(svc.disk.runs.contains_key(&own.id));
        assert_eq!(
            svc.disk.keyed_run(Lookup::ClientRequestId, "req").unwrap(),
            Some(own.id.clone())
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_a_group_of_one_run_grows_and_shrinks_in_creation_order() {
        let key = |created: u64, id: &str| (created, id.to_owned());
        let mut group = Group::One(key(2, "b"));
        group.insert(key(2, "b"));
        assert!(
            matches!(group, Group::One(_)),
            "the same run again changes nothing"
        );
        group.insert(key(1, "a"));
        group.insert(key(3, "c"));
        assert_eq!(group.ids().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(group.ids().next_back().map(String::as_str), Some("c"));
        assert!(!group.remove(&key(2, "b")));
        assert!(!group.remove(&key(9, "z")));
        assert!(!group.remove(&key(1, "a")));
        assert!(group.remove(&key(3, "c")), "left empty");
        let mut one = Group::One(key(1, "a"));
        assert!(!one.remove(&key(1, "x")));
        assert!(one.remove(&key(1, "a")));
    }

    #[cfg(unix)]
    #[test]
    fn lc_2_only_a_shortage_of_resources_counts_as_unreadable_for_now() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOMEM] {
            assert!(files::is_transient(&io::Error::from_raw_os_error(code)));
        }
        for code in [libc::EACCES, libc::EIO, libc::ENOENT, libc::EISDIR] {
            assert!(!files::is_transient(&io::Error::from_raw_os_error(code)));
        }
        let invalid = io::Error::new(io::ErrorKind::InvalidData, "not UTF-8");
        assert!(!files::is_transient(&invalid));
    }

    #[test]
    fn lc_2_a_state_file_larger_than_the_limit_is_skipped_unread() {
        let (dir, layout) = log_dir("index-large");
        let mut old = service(Some(10), Some(layout.clone()));
        let id = old.create(meta("p", "c"), 1.0).id;
        drop(old);
        // Still valid JSON (trailing whitespace), but past the limit.
        let path = dir.join(&id).join(STATE_FILE);
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str(&" ".repeat(MAX_STATE_FILE_BYTES as usize));
        fs::write(&path, text).unwrap();

        let mut svc = service(Some(10), Some(layout));
        svc.index_runs(&dir);
        svc.settle_index();
        let stats = svc.stats().hydration;
        assert_eq!((stats.indexed, stats.skipped), (0, 1));
        assert!(svc.unregistered_project_runs("p").is_empty());
        assert_eq!(svc.hydrate(&id, 2.0).unwrap(), None);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_changes_made_while_the_scan_runs_apply_after_its_findings() {
        let (dir, layout) = log_dir("index-scan-order");
        let mut old = service(Some(10), Some(layout.clone()));
        let a = old.create(meta("p", "c"), 1.0).id;
        let b = old.create(meta("p", "c"), 2.0).id;
        drop(old);
        fs::create_dir_all(dir.join("not-a-run")).unwrap();

        let mut svc = service(Some(10), Some(layout));
        svc.index_runs(&dir);
        // Whether or not the scan has finished by now, these come after it.
        svc.disk.remove(&a);
        svc.disk.set_project(&b, Some("q".into()));
        svc.disk.add(
            "c0000000-0000-4000-8000-000000000000",
            Some("p".into()),
            LookupKeys::default(),
            9.0,
        );
        svc.disk.skip("not-a-run");
        assert_eq!(
            svc.unregistered_project_runs("p"),
            vec!["c0000000-0000-4000-8000-000000000000"]
        );
        assert_eq!(svc.unregistered_project_runs("q"), vec![b]);
        let stats = svc.stats().hydration;
        assert_eq!((stats.indexed, stats.skipped), (2, 1));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lc_2_the_indexes_follow_adds_project_moves_and_removals_in_creation_order() {
        let mut index = DiskIndex::default();
        index.add("b", Some("p".into()), keys(Some("r"), Some("w")), 2.0);
        index.add("a", Some("p".into()), keys(Some("r"), Some("w")), 1.0);
        index.add("c", Some("q".into()), keys(None, Some("v")), 3.0);
        assert_eq!(index.project_runs("p"), vec!["a", "b"]);
        for lookup in Lookup::ALL {
            let key = keys(Some("r"), Some("w"));
            let key = key.get(lookup).unwrap();
            assert_eq!(
                index.keyed_run(lookup, key).unwrap().as_deref(),
                Some("b"),
                "the newest"
            );
        }
        assert_eq!(
            index.keyed_run(Lookup::ClientRequestId, "w").unwrap(),
            None,
            "each key has its own index"
        );
        index.set_project("c", Some("p".into()));
        assert_eq!(index.project_runs("p"), vec!["a", "b", "c"]);
        assert!(index.project_runs("q").is_empty());
        assert_eq!(
            index
                .keyed_run(Lookup::PluginWorkflowId, "v")
                .unwrap()
                .as_deref(),
            Some("c"),
            "a project move keeps the keys"
        );
        index.remove("b");
        assert_eq!(index.project_runs("p"), vec!["a", "c"]);
        assert_eq!(
            index
                .keyed_run(Lookup::ClientRequestId, "r")
                .unwrap()
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            index
                .keyed_run(Lookup::PluginWorkflowId, "w")
                .unwrap()
                .as_deref(),
            Some("a")
        );
        index.remove("a");
        assert_eq!(
            index.keyed_run(Lookup::PluginWorkflowId, "w").unwrap(),
            None
        );
        index.skip("x");
        index.skip("x");
        assert_eq!(index.stats.skipped, 1);
        assert_eq!(ordered_bits(f64::NAN), 0);
        assert!(ordered_bits(2.0) > ordered_bits(1.5));
    }
}
