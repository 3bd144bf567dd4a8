//! From a `--lease-db` value to a store.
//!
//! A value is a PostgreSQL URL (`postgresql://` or `postgres://`, libpq's form), or
//! else a path to an SQLite file. Anything else that looks like a URL or a libpq
//! connection string is refused: taken as a path, `postgresql:///dhcpv6?host=...`
//! silently became a folder named `postgresql:` holding an SQLite file, which a
//! second daemon then shared.

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::{LeaseStore, SqliteOptions, SqliteStore, StoreError};

/// Schemes that name a PostgreSQL database, as libpq spells them.
const POSTGRES_SCHEMES: [&str; 2] = ["postgresql", "postgres"];

/// Keys that start a libpq `key=value` connection string.
const LIBPQ_KEYS: [&str; 8] = ["host", "hostaddr", "port", "dbname", "user", "password", "sslmode", "service"];

/// Where a `--lease-db` value says the leases are.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, as a libpq URL (may hold a password: see `Display`).
    Postgres(String),
}

impl StoreSpec {
    /// Classifies a `--lease-db` value (see the module docs).
    pub fn parse(spec: impl AsRef<OsStr>) -> Result<Self, StoreError> {
        let spec = spec.as_ref();
        if spec.is_empty() {
            return Err(StoreError::UnsupportedSpec { spec: String::new(), reason: "the value is empty".into() });
        }
        if let Some(text) = spec.to_str() {
            if POSTGRES_SCHEMES.iter().any(|s| text.strip_prefix(s).is_some_and(|rest| rest.starts_with("://"))) {
                return Ok(StoreSpec::Postgres(text.to_string()));
            }
        }
        match url_like(spec) {
            Some(reason) => Err(StoreError::UnsupportedSpec { spec: redacted(&spec.to_string_lossy()), reason }),
            None => Ok(StoreSpec::Sqlite(PathBuf::from(spec))),
        }
    }

    /// Opens the store for a daemon: an SQLite file is locked against a second daemon.
    pub fn open(&self) -> Result<Arc<dyn LeaseStore>, StoreError> {
        match self {
            StoreSpec::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path)?)),
            StoreSpec::Postgres(url) => open_postgres(url),
        }
    }

    /// Opens the store to read it while a daemon may hold it (`dhcpv6d leases`).
    pub fn open_for_inspection(&self) -> Result<Arc<dyn LeaseStore>, StoreError> {
        match self {
            StoreSpec::Sqlite(path) => {
                Ok(Arc::new(SqliteStore::open_with(path, SqliteOptions { exclusive: false, ..Default::default() })?))
            }
            // Several daemons may share a database: nothing to lock.
            StoreSpec::Postgres(url) => open_postgres(url),
        }
    }
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &str) -> Result<Arc<dyn LeaseStore>, StoreError> {
    Ok(Arc::new(super::PgStore::open(url)?))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(url: &str) -> Result<Arc<dyn LeaseStore>, StoreError> {
    Err(StoreError::UnsupportedSpec {
        spec: redacted(url),
        reason: "this dhcpv6d was built without the `postgres` feature".into(),
    })
}

/// Never prints a password.
impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Sqlite(path) => write!(f, "{}", path.display()),
            StoreSpec::Postgres(url) => f.write_str(&redacted(url)),
        }
    }
}

impl fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreSpec::Postgres(url) => f.debug_tuple("Postgres").field(&redacted(url)).finish(),
        }
    }
}

/// `url` with the password of its user info, and any `password=` parameter, replaced.
pub(super) fn redacted(url: &str) -> String {
    let (head, query) = url.split_once('?').map_or((url, None), |(h, q)| (h, Some(q)));
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, hosts)) => match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{user}:***@{hosts}"),
                    None => authority.to_string(),
                },
                None => authority.to_string(),
            };
            match path {
                Some(path) => format!("{scheme}://{authority}/{path}"),
                None => format!("{scheme}://{authority}"),
            }
        }
        None => head.to_string(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k == "password" => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// Why `value` must not be taken as a file path, if it must not: it looks like a URL
/// or a libpq connection string. PostgreSQL URLs are recognised by the caller
/// before this runs, so here they are only the misspelt ones.
pub(super) fn url_like(value: &OsStr) -> Option<String> {
    // A path that is not UTF-8 is no URL anyone typed.
    let text = value.to_str()?;
    if let Some((scheme, _)) = text.split_once("://") {
        if is_scheme(scheme) {
            let lower = scheme.to_ascii_lowercase();
            return Some(if POSTGRES_SCHEMES.contains(&lower.as_str()) && lower != scheme {
                format!("write the scheme in lower case ({lower}://), as libpq does")
            } else if POSTGRES_SCHEMES.contains(&scheme) {
                // Only reached from SqliteStore::open, which takes paths only.
                "this is a PostgreSQL URL, and the SQLite store opens files only".to_string()
            } else if matches!(lower.as_str(), "sqlite" | "file") {
                format!("give the file's path itself, without {scheme}://")
            } else {
                format!("the scheme {scheme}:// is not supported")
            });
        }
    }
    if let Some((scheme, _)) = text.split_once(':') {
        if POSTGRES_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
            return Some(format!("a PostgreSQL URL starts with {}://", scheme.to_ascii_lowercase()));
        }
    }
    let first = text.split_whitespace().next().unwrap_or_default();
    if first.split_once('=').is_some_and(|(key, _)| LIBPQ_KEYS.contains(&key)) {
        return Some("libpq key=value connection strings are not supported; use the URL form".into());
    }
    None
}

/// RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Opens the store a `--lease-db` value names, for a daemon (see [`StoreSpec::open`]).
pub fn open(spec: impl AsRef<OsStr>) -> Result<Arc<dyn LeaseStore>, StoreError> {
    StoreSpec::parse(spec)?.open()
}

/// Opens the store a `--lease-db` value names, to read it alongside a running daemon.
pub fn open_for_inspection(spec: impl AsRef<OsStr>) -> Result<Arc<dyn LeaseStore>, StoreError> {
    StoreSpec::parse(spec)?.open_for_inspection()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::TempDir;
    use super::super::{contract::address, LeaseOp, Location};
    use super::*;

    fn refused(value: &str) -> String {
        match StoreSpec::parse(value) {
            Err(e @ StoreError::UnsupportedSpec { .. }) => e.to_string(),
            other => panic!("{value:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn postgres_urls_are_recognised() {
        for url in [
            "postgresql:///dhcpv6?host=/run/postgresql&port=5432&user=dhcp",
            "postgres://dhcp@db.example:5432/dhcpv6",
            "postgresql://",
        ] {
            assert_eq!(StoreSpec::parse(url).unwrap(), StoreSpec::Postgres(url.to_string()), "{url}");
        }
    }

    #[test]
    fn paths_are_sqlite() {
        for path in ["/var/lib/dhcpv6d/leases.db", "leases.db", "./a:b/leases.db", "/srv/host=x/leases.db"] {
            assert_eq!(StoreSpec::parse(path).unwrap(), StoreSpec::Sqlite(PathBuf::from(path)), "{path}");
        }
    }

    #[test]
    fn other_url_like_values_are_refused_naming_the_supported_forms() {
        for value in [
            "mysql://db/dhcpv6",
            "sqlite:///var/lib/dhcpv6d/leases.db",
            "PostgreSQL:///dhcpv6",
            "postgresql:dhcpv6",
            "host=/run/postgresql dbname=dhcpv6",
        ] {
            let message = refused(value);
            assert!(message.contains("postgresql://"), "{value}: {message}");
            assert!(message.contains("file path"), "{value}: {message}");
        }
        assert!(refused("mysql://db").contains("mysql:// is not supported"));
        assert!(!refused("mysql://u:s3cret@db/x").contains("s3cret"), "no password in the message");
        assert!(refused("").contains("empty"));
    }

    #[test]
    fn open_refuses_before_creating_anything() {
        let err = open("redis://cache/0").err().expect("refused");
        assert!(matches!(err, StoreError::UnsupportedSpec { .. }), "{err}");
        assert!(!std::path::Path::new("redis:").exists());
    }

    #[test]
    fn open_gives_a_locked_sqlite_store_and_inspection_reads_beside_it() {
        let dir = TempDir::new("spec-open");
        let path = dir.path().join("leases.db");
        let store = open(&path).unwrap();
        assert_eq!(store.location(), Location::File(path.clone()));
        store.commit(vec![LeaseOp::Upsert(address(1))]).wait_blocking().unwrap();
        assert!(matches!(open(&path).err(), Some(StoreError::Locked { .. })));
        assert_eq!(open_for_inspection(&path).unwrap().load_all().unwrap(), vec![address(1)]);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redacted("postgresql://dhcp:s3cret@db:5432/dhcpv6"), "postgresql://dhcp:***@db:5432/dhcpv6");
        assert_eq!(
            redacted("postgresql:///dhcpv6?host=/run/postgresql&password=s3cret&user=dhcp"),
            "postgresql:///dhcpv6?host=/run/postgresql&password=***&user=dhcp"
        );
        let spec = StoreSpec::parse("postgres://u:pw@h/db").unwrap();
        assert!(!spec.to_string().contains("pw"));
        assert!(!format!("{spec:?}").contains("pw"));
    }
}
