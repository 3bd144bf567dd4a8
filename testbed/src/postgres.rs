//! Throwaway PostgreSQL clusters for the lease-store tests.
//!
//! [`PgCluster::start`] runs Debian's server binaries (`/usr/lib/postgresql/N/bin`,
//! installed with apt-get when missing) as user `postgres` (initdb refuses root) on a
//! data folder in a fresh temporary folder owned by `postgres`. The server listens on
//! a Unix socket in that folder only (`listen_addresses=''`): no TCP port is taken,
//! and the socket, being a file, is reachable from every network namespace. Dropping
//! the cluster stops the server (`pg_ctl -m immediate stop`) and removes the folder,
//! also when a test panics.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::exec::run_command;
use crate::tools::{ensure_installed as apt_ensure, find_binary};

/// Where Debian puts each major version's server binaries.
const DEBIAN_LIB: &str = "/usr/lib/postgresql";

/// initdb writes a few hundred files and fsyncs them: slow on a loaded machine.
const INITDB_TIMEOUT: Duration = Duration::from_secs(180);

/// What `pg_ctl -w` waits for at most (its `-t`), plus a margin for our own limit.
const PG_CTL_WAIT_SECS: u32 = 90;

/// Makes sure PostgreSQL's server binaries are here, installing Debian's `postgresql`
/// when they are not.
pub fn ensure_installed() -> Result<()> {
    apt_ensure("the PostgreSQL server (initdb, pg_ctl)", &["postgresql"], || bin_dir().is_some())
}

/// The folder holding initdb, pg_ctl, createdb and psql: the newest major version
/// under /usr/lib/postgresql, else wherever `initdb` on PATH really lives.
pub fn bin_dir() -> Option<PathBuf> {
    let complete = |d: &Path| ["initdb", "pg_ctl", "postgres", "createdb", "psql"].iter().all(|b| d.join(b).is_file());
    let newest = std::fs::read_dir(DEBIAN_LIB)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major: u32 = std::str::from_utf8(e.file_name().as_bytes()).ok()?.parse().ok()?;
            let bin = e.path().join("bin");
            complete(&bin).then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin);
    newest.or_else(|| {
        let initdb = std::fs::canonicalize(find_binary("initdb")?).ok()?;
        let dir = initdb.parent()?.to_path_buf();
        complete(&dir).then_some(dir)
    })
}

/// A running throwaway cluster; see the module docs.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    uid: u32,
    gid: u32,
    running: bool,
}

impl PgCluster {
    /// Creates and starts a cluster. Needs root (to act as user `postgres`).
    pub fn start() -> Result<Self> {
        crate::require_root().context("starting a PostgreSQL test cluster as user postgres")?;
        ensure_installed()?;
        let bin = bin_dir().context("PostgreSQL is installed but its server binaries were not found")?;
        let (uid, gid) = user_ids("postgres").context(
            "user `postgres` does not exist (Debian's postgresql package creates it); initdb refuses to run as root",
        )?;

        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dhcpv6-pg-{}-{n}", std::process::id()));
        // Kept short: a Unix socket path (DIR/.s.PGSQL.PORT) has room for about 100 bytes.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // The port only names the socket file in `dir`; distinct ones keep the
        // servers' shared-memory keys apart too.
        let port = 20_000 + u16::try_from((std::process::id() % 20_000 + n * 7) % 40_000).unwrap_or(0);
        let mut cluster = PgCluster { dir, bin, port, uid, gid, running: false };
        // From here on, Drop cleans up whatever exists.
        chown(&cluster.dir, uid, gid)?;
        std::fs::set_permissions(&cluster.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("chmod {}", cluster.dir.display()))?;
        let data = cluster.data();
        run_command(
            cluster.as_postgres("initdb").arg("-D").arg(&data).args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
            ]),
            INITDB_TIMEOUT,
        )
        .context("initdb of the test cluster")?;
        cluster.start_again()?;
        Ok(cluster)
    }

    /// The libpq URL of database `db` (over the Unix socket).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql:///{db}?host={}&port={}&user=postgres", self.dir.display(), self.port)
    }

    /// The folder holding the socket (libpq's `host`).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's main process (the first line of `postmaster.pid`); its children are
    /// the sessions and background workers.
    pub fn postmaster_pid(&self) -> Result<u32> {
        let f = self.data().join("postmaster.pid");
        let text = std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("{}: no PID on its first line", f.display()))
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        run_command(self.client("createdb").arg(name), Duration::from_secs(60))
            .with_context(|| format!("createdb {name}"))?;
        Ok(self.url(name))
    }

    /// Runs SQL with psql in database `db`; returns its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        run_command(
            self.client("psql").args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql]),
            Duration::from_secs(60),
        )
        .with_context(|| format!("psql -d {db} -c {sql:?}"))
    }

    /// Kills the server at once (`-m immediate`: no checkpoint, sessions cut), as a
    /// crash or a failover would. The data stays; [`PgCluster::start_again`] recovers it.
    pub fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        let data = self.data();
        run_command(
            self.as_postgres("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w"])
                .arg(format!("-t{PG_CTL_WAIT_SECS}"))
                .arg("stop"),
            Duration::from_secs(u64::from(PG_CTL_WAIT_SECS) + 30),
        )
        .context("pg_ctl stop")?;
        self.running = false;
        Ok(())
    }

    /// Starts the (stopped) server on the same data, socket and port.
    pub fn start_again(&mut self) -> Result<()> {
        if self.running {
            return Ok(());
        }
        let (data, log) = (self.data(), self.dir.join("server.log"));
        // pg_ctl hands -o to the server through a shell: '' is an empty value.
        let server = format!("-k {} -p {} -c listen_addresses=''", self.dir.display(), self.port);
        let started = run_command(
            self.as_postgres("pg_ctl").arg("-D").arg(&data).arg("-l").arg(&log).args([
                "-w",
                &format!("-t{PG_CTL_WAIT_SECS}"),
                "-o",
                &server,
                "start",
            ]),
            Duration::from_secs(u64::from(PG_CTL_WAIT_SECS) + 30),
        );
        if let Err(e) = started {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("pg_ctl start failed: {e:#}\nserver log ({}):\n{}", log.display(), tail.join("\n"));
        }
        self.running = true;
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A server binary run as user postgres, from the cluster's folder (postgres may
    /// not be allowed into the caller's working directory).
    fn as_postgres(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.uid(self.uid).gid(self.gid).current_dir(&self.dir).env("LC_ALL", "C");
        cmd
    }

    /// A client program connecting to the cluster as its superuser.
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.arg("-h").arg(&self.dir).arg("-p").arg(self.port.to_string()).args(["-U", "postgres"]);
        cmd
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("testbed: stopping the PostgreSQL test cluster in {}: {e:#}", self.dir.display());
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("testbed: removing {}: {e}", self.dir.display());
        }
    }
}

/// uid and gid of a user, from the passwd database.
fn user_ids(name: &str) -> Result<(u32, u32)> {
    let cname = std::ffi::CString::new(name)?;
    // SAFETY: passwd is plain data (integers and pointers), valid when zeroed.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the reentrant variant writes only
    // into `pwd` and `buf`, which outlive it.
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        bail!("no user named {name}");
    }
    Ok((pwd.pw_uid, pwd.pw_gid))
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))
}
