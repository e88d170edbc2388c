//! The agent's memory across restarts: one SQLite database (`rodiff.db` under `--state`) with a
//! row per followed container and a row per path of its write profile.
//!
//! The database is in WAL mode: each scan is one transaction, so a restart — also `kill -9` in the
//! middle of a write — finds every scan that was committed and none of one that was not. Only what
//! a scan changed is written (new and changed paths, paths that vanished); the paths a scan saw
//! as before keep their row, and their last sighting is the container's last scan.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rodiff::watch::{Profile, Seen};
use rodiff::{Change, ChangeKind, Evidence, FileType, ListedContainer, Metadata, Runtime};
use rusqlite::{params, Connection, OptionalExtension};

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    key TEXT PRIMARY KEY,
    runtime TEXT NOT NULL,
    namespace TEXT,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    image TEXT,
    pod_namespace TEXT,
    pod_name TEXT,
    pod_container TEXT,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    removed_at INTEGER,
    diffs INTEGER NOT NULL DEFAULT 0,
    last_scan INTEGER
);
CREATE TABLE IF NOT EXISTS paths (
    container TEXT NOT NULL REFERENCES containers(key) ON DELETE CASCADE,
    path BLOB NOT NULL,
    kind TEXT NOT NULL,
    type TEXT NOT NULL,
    mode INTEGER, uid INTEGER, gid INTEGER, size INTEGER, mtime_sec INTEGER, mtime_nsec INTEGER,
    mountpoint INTEGER NOT NULL,
    evidence TEXT,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    in_last_diff INTEGER NOT NULL,
    executable INTEGER NOT NULL,
    PRIMARY KEY (container, path)
) WITHOUT ROWID;
";

/// A followed container as the database keeps it.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The container as last listed.
    pub listed: ListedContainer,
    /// When it was first and last listed.
    pub first_seen: SystemTime,
    /// When it was last listed by its runtime.
    pub last_seen: SystemTime,
    /// When its runtime stopped listing it.
    pub removed_at: Option<SystemTime>,
    /// When it was last scanned.
    pub last_scan: Option<SystemTime>,
    /// Its write profile.
    pub profile: Profile,
    /// Its executable files added or changed since the image (drift).
    pub executables: Vec<PathBuf>,
}

/// A container's own row (not its paths).
#[derive(Clone, Debug)]
pub struct ContainerRow {
    /// The container as last listed.
    pub listed: ListedContainer,
    /// When it was first listed.
    pub first_seen: SystemTime,
    /// When it was last listed.
    pub last_seen: SystemTime,
    /// When its runtime stopped listing it.
    pub removed_at: Option<SystemTime>,
    /// When it was last scanned.
    pub last_scan: Option<SystemTime>,
    /// How many scans its profile holds.
    pub diffs: u64,
}

impl Stored {
    /// Its row, without the profile.
    pub fn row(&self) -> ContainerRow {
        ContainerRow {
            listed: self.listed.clone(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            removed_at: self.removed_at,
            last_scan: self.last_scan,
            diffs: self.profile.diffs(),
        }
    }
}

/// The database.
pub struct Store {
    db: Mutex<Connection>,
    path: PathBuf,
    /// `rodiff.lock`, locked (`flock`) for as long as the store is open: one agent per state.
    _lock: std::fs::File,
}

/// A path of a profile to write: the entry, and whether it is an executable.
pub struct Row {
    /// The entry.
    pub seen: Seen,
    /// Whether the last diff showed it.
    pub in_last_diff: bool,
    /// Whether it is an executable file (drift).
    pub executable: bool,
}

impl Store {
    /// Opens (creating it if needed) `rodiff.db` in `dir`, which must exist and be writable.
    pub fn open(dir: &Path) -> Result<Store> {
        let lock_path = dir.join("rodiff.lock");
        let lock = std::fs::File::options().create(true).truncate(false).write(true).open(&lock_path).with_context(|| format!("cannot open {}", lock_path.display()))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .with_context(|| format!("another rodiff agent uses the state directory {} (it holds {})", dir.display(), lock_path.display()))?;
        let path = dir.join("rodiff.db");
        let db = Connection::open(&path).with_context(|| format!("cannot open the state database {}", path.display()))?;
        let setup = || -> rusqlite::Result<()> {
            db.busy_timeout(Duration::from_secs(5))?;
            db.pragma_update(None, "journal_mode", "WAL")?;
            db.pragma_update(None, "synchronous", "NORMAL")?;
            db.pragma_update(None, "foreign_keys", "ON")?;
            db.execute_batch(SCHEMA)?;
            Ok(())
        };
        setup().with_context(|| format!("cannot set up the state database {}", path.display()))?;
        let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
        match version {
            0 => db.pragma_update(None, "user_version", SCHEMA_VERSION)?,
            SCHEMA_VERSION => {}
            v => anyhow::bail!("the state database {} has schema version {v}; this rodiff knows {SCHEMA_VERSION}", path.display()),
        }
        Ok(Store { db: Mutex::new(db), path, _lock: lock })
    }

    /// Where the database is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything the database holds.
    pub fn load(&self) -> Result<Vec<(String, Stored)>> {
        let db = self.db();
        let mut containers = db.prepare(
            "SELECT key, runtime, namespace, id, name, image, pod_namespace, pod_name, pod_container,
                    first_seen, last_seen, removed_at, diffs, last_scan FROM containers ORDER BY key",
        )?;
        let mut paths = db.prepare(
            "SELECT path, kind, type, mode, uid, gid, size, mtime_sec, mtime_nsec, mountpoint, evidence,
                    first_seen, last_seen, in_last_diff, executable FROM paths WHERE container = ?1",
        )?;
        let rows = containers.query_map([], |r| {
            let runtime = match r.get::<_, String>(1)?.as_str() {
                "containerd" => Runtime::Containerd,
                _ => Runtime::Docker,
            };
            let pod = r.get::<_, Option<String>>(6)?.zip(r.get::<_, Option<String>>(7)?);
            let mut listed = ListedContainer::new(runtime, r.get(2)?, r.get(3)?, r.get(4)?);
            listed.image = r.get(5)?;
            listed.pod = pod;
            listed.pod_container = r.get(8)?;
            Ok((
                r.get::<_, String>(0)?,
                listed,
                [r.get::<_, i64>(9)?, r.get(10)?],
                r.get::<_, Option<i64>>(11)?,
                r.get::<_, i64>(12)?,
                r.get::<_, Option<i64>>(13)?,
            ))
        })?;
        let mut loaded = Vec::new();
        for row in rows {
            let (key, listed, [first, last], removed, diffs, last_scan) = row?;
            let mut executables = Vec::new();
            let entries = paths
                .query_map([&key], |r| {
                    let path = PathBuf::from(std::ffi::OsString::from_vec(r.get(0)?));
                    let kind = r.get::<_, String>(1)?;
                    let kind = kind.chars().next().and_then(ChangeKind::from_letter).ok_or_else(|| unknown(1, "kind", &kind))?;
                    let file_type = r.get::<_, String>(2)?;
                    let file_type = FileType::from_name(&file_type).ok_or_else(|| unknown(2, "type", &file_type))?;
                    let mut change = Change::new(path, kind, file_type);
                    change.metadata = match r.get::<_, Option<u32>>(3)? {
                        Some(mode) => Some(Metadata {
                            mode,
                            uid: r.get(4)?,
                            gid: r.get(5)?,
                            size: r.get::<_, i64>(6)? as u64,
                            mtime_sec: r.get(7)?,
                            mtime_nsec: r.get(8)?,
                        }),
                        None => None,
                    };
                    change.mountpoint = r.get(9)?;
                    change.evidence = match r.get::<_, Option<String>>(10)? {
                        Some(name) => Some(Evidence::from_name(&name).ok_or_else(|| unknown(10, "evidence", &name))?),
                        None => None,
                    };
                    Ok((change, time(r.get(11)?), time(r.get(12)?), r.get::<_, bool>(13)?, r.get::<_, bool>(14)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // A path the last scan showed was last seen then (its row is written only when it
            // changes).
            let scanned = last_scan.map(time);
            let profile = Profile::restore(
                diffs as u64,
                entries.into_iter().map(|(change, first, last, in_last, executable)| {
                    if executable {
                        executables.push(change.path.clone());
                    }
                    let last = match (in_last, scanned) {
                        (true, Some(scan)) if scan > last => scan,
                        _ => last,
                    };
                    (change, first, last, in_last)
                }),
            );
            executables.sort();
            let stored = Stored {
                listed,
                first_seen: time(first),
                last_seen: time(last),
                removed_at: removed.map(time),
                last_scan: last_scan.map(time),
                profile,
                executables,
            };
            loaded.push((key, stored));
        }
        Ok(loaded)
    }

    /// Writes a container's row (not its paths).
    pub fn save_container(&self, key: &str, c: &ContainerRow) -> Result<()> {
        save_container(&self.db(), key, c)?;
        Ok(())
    }

    /// Writes one scan in one transaction: the container's row, and `rows` (the paths the scan
    /// changed in the profile).
    pub fn save_scan(&self, key: &str, c: &ContainerRow, rows: &[Row]) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        save_container(&tx, key, c)?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO paths (container, path, kind, type, mode, uid, gid, size, mtime_sec, mtime_nsec,
                                    mountpoint, evidence, first_seen, last_seen, in_last_diff, executable)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT (container, path) DO UPDATE SET kind = ?3, type = ?4, mode = ?5, uid = ?6, gid = ?7,
                    size = ?8, mtime_sec = ?9, mtime_nsec = ?10, mountpoint = ?11, evidence = ?12,
                    last_seen = ?14, in_last_diff = ?15, executable = ?16",
            )?;
            for row in rows {
                let change = &row.seen.change;
                let m = change.metadata;
                upsert.execute(params![
                    key,
                    change.path.as_os_str().as_bytes(),
                    change.kind.letter().to_string(),
                    change.file_type.name(),
                    m.map(|m| m.mode),
                    m.map(|m| m.uid),
                    m.map(|m| m.gid),
                    m.map(|m| m.size as i64),
                    m.map(|m| m.mtime_sec),
                    m.map(|m| m.mtime_nsec),
                    change.mountpoint,
                    change.evidence.map(|e| e.name()),
                    millis(row.seen.first_seen),
                    millis(row.seen.last_seen),
                    row.in_last_diff,
                    row.executable,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets a container and its profile.
    pub fn forget(&self, key: &str) -> Result<()> {
        self.db().execute("DELETE FROM containers WHERE key = ?1", [key])?;
        Ok(())
    }

    /// How many paths the database holds for `key` (for tests and figures).
    #[allow(dead_code)]
    pub fn paths(&self, key: &str) -> Result<u64> {
        let n: Option<i64> = self.db().query_row("SELECT count(*) FROM paths WHERE container = ?1", [key], |r| r.get(0)).optional()?;
        Ok(n.unwrap_or(0) as u64)
    }
}

fn save_container(db: &Connection, key: &str, c: &ContainerRow) -> rusqlite::Result<()> {
    let l = &c.listed;
    db.prepare_cached(
        "INSERT INTO containers (key, runtime, namespace, id, name, image, pod_namespace, pod_name, pod_container,
                                 first_seen, last_seen, removed_at, diffs, last_scan)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (key) DO UPDATE SET name = ?5, image = ?6, pod_namespace = ?7, pod_name = ?8, pod_container = ?9,
            last_seen = MAX(last_seen, ?11), removed_at = ?12, diffs = MAX(diffs, ?13),
            last_scan = COALESCE(MAX(last_scan, ?14), last_scan, ?14)",
    )?
    .execute(params![
        key,
        l.runtime.name(),
        l.namespace,
        l.id,
        l.name,
        l.image,
        l.pod.as_ref().map(|p| &p.0),
        l.pod.as_ref().map(|p| &p.1),
        l.pod_container,
        millis(c.first_seen),
        millis(c.last_seen),
        c.removed_at.map(millis),
        c.diffs as i64,
        c.last_scan.map(millis),
    ])?;
    Ok(())
}

/// A stored value this code does not know: the database is damaged or from another rodiff.
fn unknown(column: usize, what: &str, value: &str) -> rusqlite::Error {
    let cause = format!("unknown {what} {value:?} in the paths table");
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, cause.into())
}

/// Milliseconds since the epoch, as stored.
pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A stored time.
fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn row(store_diffs: u64, last_scan: Option<SystemTime>) -> ContainerRow {
        ContainerRow {
            listed: ListedContainer::new(Runtime::Docker, None, "abc".into(), "web".into()),
            first_seen: UNIX_EPOCH + Duration::from_secs(1),
            last_seen: UNIX_EPOCH + Duration::from_secs(2),
            removed_at: None,
            last_scan,
            diffs: store_diffs,
        }
    }

    #[test]
    fn a_scan_round_trips_with_odd_names_metadata_and_sightings() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (t1, t2) = (UNIX_EPOCH + Duration::from_secs(10), UNIX_EPOCH + Duration::from_secs(20));
        let mut profile = Profile::default();
        let mut odd = Change::new(PathBuf::from(OsString::from_vec(b"/srv/x\xff\nname".to_vec())), ChangeKind::Added, FileType::File);
        odd.metadata = Some(Metadata { mode: 0o755, uid: 1, gid: 2, size: 3, mtime_sec: 4, mtime_nsec: 5 });
        let gone = Change::new(PathBuf::from("/tmp/t"), ChangeKind::Added, FileType::Fifo);
        let a = profile.absorb(vec![odd.clone(), gone.clone()], t1);
        let rows = |p: &Profile, keys: &[rodiff::watch::ProfileKey]| -> Vec<Row> {
            keys.iter().map(|k| p.get(k).unwrap()).map(|s| Row { seen: s.clone(), in_last_diff: p.in_last_diff(s), executable: s.change.path == odd.path }).collect()
        };
        store.save_scan("docker/abc", &row(1, Some(t1)), &rows(&profile, &a.changed)).unwrap();
        // Second scan: the odd file unchanged (no row written), /tmp/t gone.
        let a = profile.absorb(vec![odd.clone()], t2);
        assert!(a.changed.is_empty());
        store.save_scan("docker/abc", &row(2, Some(t2)), &rows(&profile, &a.vanished)).unwrap();
        // A listing that wrote an older snapshot of the row afterwards does not turn it back.
        store.save_container("docker/abc", &row(1, Some(t1))).unwrap();

        let loaded = store.load().unwrap();
        assert_eq!(loaded.len(), 1);
        let (key, stored) = &loaded[0];
        assert_eq!(key, "docker/abc");
        assert_eq!((stored.profile.diffs(), stored.last_scan), (2, Some(t2)));
        assert_eq!(stored.profile.changes(), profile.changes());
        assert_eq!(stored.executables, vec![odd.path.clone()]);
        let odd_seen = stored.profile.seen().find(|s| s.change.path == odd.path).unwrap();
        assert_eq!((odd_seen.first_seen, odd_seen.last_seen), (t1, t2), "last seen at the last scan");
    }

    #[test]
    fn damaged_rows_and_a_second_agent_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().expect("a second store on one directory");
        assert!(format!("{err:#}").contains("another rodiff agent"), "{err:#}");
        store.save_container("docker/abc", &row(1, None)).unwrap();
        store.db().execute("INSERT INTO paths VALUES ('docker/abc', x'2f78', 'Q', 'file', NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, 0, 0, 1, 0)", []).unwrap();
        let err = store.load().expect_err("an unknown kind");
        assert!(format!("{err:#}").contains("unknown kind \"Q\""), "{err:#}");
    }
}
