//! Throw-away PostgreSQL databases for tests: each call creates a new, uniquely named database
//! in the cluster named by `PICKET_TEST_DATABASE_URL` (an admin URL of a cluster nobody else
//! uses; `./scripts/test.sh` starts one) and returns its URL. Databases are left behind for
//! the cluster's teardown to remove with it.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The variable naming the admin URL of the throw-away cluster.
pub const DATABASE_URL_VAR: &str = "PICKET_TEST_DATABASE_URL";

/// Creates a fresh empty database and returns its URL. Panics (never skips) when
/// `PICKET_TEST_DATABASE_URL` is unset or the cluster cannot be reached.
pub async fn fresh_database_url() -> String {
    let admin = match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "PostgreSQL tests need {DATABASE_URL_VAR}; run ./scripts/test.sh which starts a throw-away cluster \
             (or set {DATABASE_URL_VAR}=postgres://USER@HOST:PORT/postgres for a cluster you may create databases in)"
        ),
    };
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("OS random numbers");
    let name = format!("picket_test_{}", hex::encode(random));
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {DATABASE_URL_VAR} ({}): {e}", redact(&admin)));
    // The name is ours (hex digits), not input, so formatting it into the statement is safe.
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let _ = conn.close().await;
    with_database(&admin, &name)
}

/// `url` with its path (the database name) replaced by `db`, query string kept.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }
}
