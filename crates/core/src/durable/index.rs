//! What a service knows of the runs on disk without loading them (LC-2): which durable runs
//! belong to a project (for `list({ projectId })`) and which run a `clientRequestId` names (for
//! `createOrReuse`). Built at construction by one scan of `runsLogDir` that reads each run's
//! state file (or old `run.json`) once, and kept up to date by this service's own creates,
//! project writes and drops.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use super::hydrate::HydrationStats;
use super::is_run_id;
use super::legacy::{RunSnapshot, SNAPSHOT_FILE, SNAPSHOT_VERSION};
use super::state::{StateFile, STATE_FILE};
use crate::files;
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

#[derive(Clone, Debug)]
struct DiskRun {
    project_id: Option<String>,
    request: Option<String>,
    created: u64,
}

/// The disk indexes of one service.
#[derive(Default)]
pub struct DiskIndex {
    /// `runsLogDir` as the host passed it (set by the scan).
    pub(crate) dir: Option<PathBuf>,
    runs: crate::IdMap<DiskRun>,
    by_project: HashMap<String, BTreeSet<DiskKey>>,
    by_request: HashMap<String, BTreeSet<DiskKey>>,
    /// Ids found invalid (counted once each in `stats.skipped`).
    invalid: BTreeSet<String>,
    /// Hydrations so far (the last part of a hydrated run's registry key).
    pub(crate) order_tie: u64,
    pub(crate) stats: HydrationStats,
}

impl DiskIndex {
    /// Records a durable run (replacing what was known of it).
    pub(crate) fn add(
        &mut self,
        id: &str,
        project_id: Option<String>,
        request: Option<String>,
        created_at: f64,
    ) {
        self.remove(id);
        let created = ordered_bits(created_at);
        let key = (created, id.to_owned());
        if let Some(project) = &project_id {
            self.by_project
                .entry(project.clone())
                .or_default()
                .insert(key.clone());
        }
        if let Some(request) = &request {
            self.by_request
                .entry(request.clone())
                .or_default()
                .insert(key);
        }
        self.runs.insert(
            id.to_owned(),
            DiskRun {
                project_id,
                request,
                created,
            },
        );
    }

    /// Forgets a run (its state file is gone).
    pub(crate) fn remove(&mut self, id: &str) {
        let Some(old) = self.runs.remove(id) else {
            return;
        };
        let key = (old.created, id.to_owned());
        for (index, group) in [
            (&mut self.by_project, old.project_id),
            (&mut self.by_request, old.request),
        ] {
            if let Some(group_key) = group {
                if let Some(set) = index.get_mut(&group_key) {
                    set.remove(&key);
                    if set.is_empty() {
                        index.remove(&group_key);
                    }
                }
            }
        }
    }

    /// The host moved a durable run to another project.
    pub(crate) fn set_project(&mut self, id: &str, project_id: Option<String>) {
        if let Some(run) = self.runs.get(id).cloned() {
            let created_at = f64::from_bits(run.created);
            self.add(id, project_id, run.request, created_at);
        }
    }

    /// The durable runs of a project, oldest first.
    pub(crate) fn project_runs(&self, project_id: &str) -> Vec<String> {
        self.by_project
            .get(project_id)
            .map(|set| set.iter().map(|(_, id)| id.clone()).collect())
            .unwrap_or_default()
    }

    /// The newest durable run created for `client_request_id`.
    pub(crate) fn request_run(&self, client_request_id: &str) -> Option<String> {
        self.by_request
            .get(client_request_id)
            .and_then(|set| set.iter().next_back())
            .map(|(_, id)| id.clone())
    }

    /// Counts an invalid entry of the directory, once per name.
    pub(crate) fn skip(&mut self, name: &str) {
        if self.invalid.insert(name.to_owned()) {
            self.stats.skipped += 1;
        }
    }
}

/// What the scan takes from a run's file.
struct Entry {
    project_id: Option<String>,
    request: Option<String>,
    created_at: f64,
}

/// Reads `<run_dir>/state.json`, else `<run_dir>/run.json` (the previous format), of run `id`.
fn read_entry(run_dir: &Path, id: &str) -> Option<Entry> {
    if let Ok(text) = files::read_to_string(&run_dir.join(STATE_FILE)) {
        let file = StateFile::parse(&text, id)?;
        return Some(Entry {
            project_id: file.project_id,
            request: file.host.client_request_id,
            created_at: file.created_at.unwrap_or(0.0),
        });
    }
    let text = files::read_to_string(&run_dir.join(SNAPSHOT_FILE)).ok()?;
    let snapshot = RunSnapshot::parse(&text)?;
    (snapshot.version == SNAPSHOT_VERSION && snapshot.id == id).then(|| Entry {
        project_id: snapshot.project_id,
        request: snapshot.meta.ids.client_request_id,
        created_at: snapshot.created_at.unwrap_or(0.0),
    })
}

impl Service {
    /// LC-2, at construction: indexes the runs under `dir` (the `runsLogDir`) without loading
    /// any. Every entry that is not a run directory with a valid state file (foreign files and
    /// directories, names that are not run ids, a journal without a state file, a corrupt,
    /// half-written or foreign state file) is skipped and counted, never an error. A missing
    /// directory indexes nothing.
    pub fn index_runs(&mut self, dir: &Path) {
        self.disk.dir = Some(dir.to_path_buf());
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                self.disk.skip(&name.to_string_lossy());
                continue;
            };
            if !is_run_id(name) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.disk.skip(name);
                continue;
            }
            match read_entry(&entry.path(), name) {
                Some(found) => {
                    self.disk
                        .add(name, found.project_id, found.request, found.created_at);
                    self.disk.stats.indexed += 1;
                }
                None => self.disk.skip(name),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_2_the_indexes_follow_adds_project_moves_and_removals_in_creation_order() {
        let mut index = DiskIndex::default();
        index.add("b", Some("p".into()), Some("r".into()), 2.0);
        index.add("a", Some("p".into()), Some("r".into()), 1.0);
        index.add("c", Some("q".into()), None, 3.0);
        assert_eq!(index.project_runs("p"), vec!["a", "b"]);
        assert_eq!(index.request_run("r").as_deref(), Some("b"), "the newest");
        index.set_project("c", Some("p".into()));
        assert_eq!(index.project_runs("p"), vec!["a", "b", "c"]);
        assert!(index.project_runs("q").is_empty());
        index.remove("b");
        assert_eq!(index.project_runs("p"), vec!["a", "c"]);
        assert_eq!(index.request_run("r").as_deref(), Some("a"));
        index.skip("x");
        index.skip("x");
        assert_eq!(index.stats.skipped, 1);
        assert_eq!(ordered_bits(f64::NAN), 0);
        assert!(ordered_bits(2.0) > ordered_bits(1.5));
    }
}
