//! Choosing and opening the store, once, at start: PostgreSQL for a `postgres://` database
//! URL, otherwise SQLite at `<data-dir>/picket.db`. The only place a backend is named.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use picket_store::Store;

/// File name of the SQLite database inside the data dir.
pub const SQLITE_FILE: &str = "picket.db";

/// A database URL with its password hidden, fit for logs and error messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = rest.split_once('/').map_or((rest, ""), |(a, t)| (a, t));
    let slash = if rest.contains('/') { "/" } else { "" };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{slash}{tail}")
        }
        None => url.to_string(),
    }
}

/// Which backend a `--database-url` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite under the data dir (no URL).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The backend for a database URL; anything but PostgreSQL URLs is refused with what to use.
pub fn backend_for(database_url: Option<&str>) -> anyhow::Result<Backend> {
    match database_url.map(str::trim).filter(|u| !u.is_empty()) {
        None => Ok(Backend::Sqlite),
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => Ok(Backend::Postgres),
        Some(u) => bail!(
            "unsupported database URL {}: use postgres://USER:PASSWORD@HOST[:PORT]/DATABASE for PostgreSQL, \
             or leave --database-url out for SQLite in <data-dir>/{SQLITE_FILE}",
            redact(u)
        ),
    }
}

/// Opens the store (running its migrations).
pub async fn open(database_url: Option<&str>, data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    match backend_for(database_url)? {
        Backend::Postgres => {
            let url = database_url.unwrap_or_default().trim();
            let store = picket_store_postgres::PgStore::connect(url)
                .await
                .with_context(|| format!("opening PostgreSQL at {}", redact(url)))?;
            Ok(Arc::new(store))
        }
        Backend::Sqlite => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
            let path = data_dir.join(SQLITE_FILE);
            let store = picket_store_sqlite::SqliteStore::open(&path)
                .await
                .with_context(|| format!("opening SQLite at {}", path.display()))?;
            Ok(Arc::new(store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend_or_are_refused() {
        assert_eq!(backend_for(None).unwrap(), Backend::Sqlite);
        assert_eq!(backend_for(Some("")).unwrap(), Backend::Sqlite);
        assert_eq!(backend_for(Some("postgres://u:p@h/db")).unwrap(), Backend::Postgres);
        assert_eq!(backend_for(Some("postgresql://h/db")).unwrap(), Backend::Postgres);
        let e = backend_for(Some("mysql://root:hunter2@h/db")).unwrap_err().to_string();
        assert!(e.contains("mysql://root:***@h/db") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://picket:secret@db:5432/picket"), "postgres://picket:***@db:5432/picket");
        assert_eq!(redact("postgres://db/picket"), "postgres://db/picket");
        assert_eq!(redact("postgres://u:p@db"), "postgres://u:***@db");
    }
}
