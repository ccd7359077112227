//! Unit tests of the health SQL builders.

use super::*;

#[test]
fn rfc3339_trims_like_the_api() {
    assert_eq!(rfc3339(Timestamp(1_795_341_600_000)), "2026-11-22T10:00:00Z");
    assert_eq!(rfc3339(Timestamp(1_795_341_600_250)), "2026-11-22T10:00:00.25Z");
    assert_eq!(rfc3339(Timestamp(1_795_341_600_007)), "2026-11-22T10:00:00.007Z");
}

#[test]
fn placeholders_line_up() {
    let c = StatusContext {
        now: Timestamp(1_000_000_000),
        timings: Default::default(),
        outdated_below: None,
        watching_since: Timestamp(0),
    };
    for q in [sql::candidates_sql(&c, 10), sql::ended_sql(&c), sql::ended_batch_sql(&c), sql::unmute_sql(&c)] {
        let n = q.params.len();
        assert!(q.sql.contains(&format!("${n}")) && !q.sql.contains(&format!("${}", n + 1)), "{}", q.sql);
    }
    for k in HealthIssueKind::ALL {
        let q = sql::insert_issue_sql(*k, Some(&c));
        let n = q.params.len();
        assert!(n >= 9);
        assert!(!q.sql.contains(&format!("${}", n + 1)), "{k}: {}", q.sql);
        let q = sql::auto_close_sql(*k, &c);
        assert!(!q.sql.contains(&format!("${}", q.params.len() + 1)));
    }
}

/// Every statement of the status job references every parameter it binds, in every
/// clock context (within the restart grace or not, with or without `outdated_below`):
/// otherwise one SQL text carries a varying number of parameters and PostgreSQL refuses
/// the Bind against the statement sqlx cached for the text, failing every tick.
#[test]
fn status_job_sql_binds_only_what_it_references() {
    let v3 = picket_domain::Version { major: 3, minor: 0, patch: 0 };
    for watching_since in [Timestamp(0), Timestamp(999_999_000)] {
        for outdated_below in [None, Some(v3)] {
            let c = StatusContext {
                now: Timestamp(1_000_000_000),
                timings: Default::default(),
                outdated_below,
                watching_since,
            };
            let mut all = vec![
                sql::candidates_sql(&c, 10),
                sql::candidates_sql_with(&c, 10, sql::IndexHints::IndexedBy),
                sql::ended_sql(&c),
                sql::ended_batch_sql(&c),
                sql::unmute_sql(&c),
                sql::forget_service_status_sql(&c),
            ];
            for k in HealthIssueKind::ALL {
                all.push(sql::insert_issue_sql(*k, Some(&c)));
                all.push(sql::auto_close_sql(*k, &c));
            }
            for q in all {
                assert_eq!(q.unreferenced_params(), Vec::<usize>::new(), "{}", q.sql);
            }
        }
    }
}
