//! The conformance suite of `NotificationStore`: webhooks are stored and audited without
//! their secret, the outbox fans out once per target, claims are exclusive (also under
//! concurrent claimers) and leases expire, outcomes are recorded only by the lease holder.
//! Backends run it with `picket_store::notify_conformance_tests!(fresh_store().await)`.

use std::collections::HashSet;
use std::sync::Arc;

use picket_domain::Timestamp;

use crate::notify::{Claim, DeliveryOutcome, NewDelivery, TargetKind, Webhook};
use crate::{Audit, Store, StoreError};

/// Expands into one `#[tokio::test]` per notification conformance function (see
/// `conformance_tests!` for `$make`).
#[macro_export]
macro_rules! notify_conformance_tests {
    ($make:expr) => {
        $crate::notify_conformance_tests!(@each $make;
            webhooks_are_stored_and_audited_without_secret,
            outbox_fans_out_once_per_target,
            claims_are_exclusive_and_leases_expire,
            concurrent_claimers_never_share_a_delivery,
            outcomes_need_the_lease,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::notify_conformance::$name(store).await;
            }
        )+
    };
}

const NOW: Timestamp = Timestamp(1_800_000_000_000);
const SEC: i64 = 1000;

fn audit(action: &str) -> Audit {
    Audit { actor: "token:test".to_string(), action: action.to_string(), at: NOW }
}

fn webhook(id: &str, at: i64) -> Webhook {
    Webhook {
        id: id.to_string(),
        url: format!("https://hooks.example.com/{id}"),
        secret: format!("secret-of-{id}-0123456789"),
        created_at: Timestamp(NOW.0 + at),
    }
}

fn claim(lease: &str, now: Timestamp, limit: u32, syslog: bool) -> Claim {
    Claim { now, lease_until: Timestamp(now.0 + 60 * SEC), lease: lease.to_string(), limit, syslog }
}

fn delivery(id: &str, notification_id: i64, webhook: Option<&str>) -> NewDelivery {
    NewDelivery {
        id: id.to_string(),
        notification_id,
        target: if webhook.is_some() { TargetKind::Webhook } else { TargetKind::Syslog },
        webhook_id: webhook.map(str::to_string),
    }
}

/// Webhooks round-trip (secret included, for signing), list oldest first, delete with
/// `NotFound` the second time; the audit log records both changes but never the secret.
pub async fn webhooks_are_stored_and_audited_without_secret(store: Arc<dyn Store>) {
    let (a, b) = (webhook("wh-a", 0), webhook("wh-b", 1));
    store.create_webhook(&b, &audit("webhook.create")).await.expect("create b");
    store.create_webhook(&a, &audit("webhook.create")).await.expect("create a");
    assert_eq!(store.list_webhooks().await.expect("list"), vec![a.clone(), b.clone()], "oldest first");
    let e = store.create_webhook(&a, &audit("webhook.create")).await;
    assert!(matches!(e, Err(StoreError::Conflict(_))), "duplicate id: {e:?}");
    store.delete_webhook("wh-a", &audit("webhook.delete")).await.expect("delete");
    let e = store.delete_webhook("wh-a", &audit("webhook.delete")).await;
    assert!(matches!(e, Err(StoreError::NotFound)), "second delete: {e:?}");
    assert_eq!(store.list_webhooks().await.expect("list"), vec![b]);
    let log = store.list_audit(None, 100).await.expect("audit");
    let actions: Vec<&str> = log.iter().filter(|e| e.target_kind == "webhook").map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["webhook.delete", "webhook.create", "webhook.create"]);
    let text = format!("{log:?}");
    assert!(text.contains("hooks.example.com/wh-a"), "the URL is audited: {text}");
    assert!(!text.contains("secret-of"), "the secret is not: {text}");
}

/// Unfanned rows come oldest first; fanning out creates one delivery per target (a second
/// fan-out of the same notification, as a racing replica would do, adds nothing), skips
/// removed webhooks, and the row is not offered again. Removing a webhook removes its deliveries.
pub async fn outbox_fans_out_once_per_target(store: Arc<dyn Store>) {
    store.create_webhook(&webhook("wh-1", 0), &audit("webhook.create")).await.expect("create");
    let n1 = store.enqueue_notification(NOW, "health_issue.opened", r#"{"n":1}"#).await.expect("enqueue");
    let n2 = store.enqueue_notification(NOW, "health_issue.reopened", r#"{"n":2}"#).await.expect("enqueue");
    assert!(n2 > n1, "ids increase");
    let pending = store.unfanned_notifications(10).await.expect("unfanned");
    assert_eq!(
        pending.iter().map(|n| (n.id, n.event.as_str())).collect::<Vec<_>>(),
        [(n1, "health_issue.opened"), (n2, "health_issue.reopened")]
    );
    assert_eq!(pending[0].payload, r#"{"n":1}"#);
    assert_eq!(store.unfanned_notifications(1).await.expect("unfanned").len(), 1, "limit");
    let counts = store.delivery_counts().await.expect("counts");
    assert_eq!((counts.unfanned, counts.pending, counts.failed), (2, 0, 0));

    let first = [delivery("d1", n1, Some("wh-1")), delivery("d2", n1, None), delivery("d3", n1, Some("wh-gone"))];
    store.fan_out(&[n1], &first, NOW).await.expect("fan out");
    let again = [delivery("d4", n1, Some("wh-1")), delivery("d5", n1, None)];
    store.fan_out(&[n1], &again, NOW).await.expect("fan out again");
    let rows = store.list_deliveries(Some(n1)).await.expect("deliveries");
    let ids: Vec<&str> = rows.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["d1", "d2"], "one per target, none for a removed webhook: {rows:?}");
    assert_eq!(rows[0].target, TargetKind::Webhook);
    assert_eq!(rows[0].webhook_id.as_deref(), Some("wh-1"));
    assert_eq!((rows[0].attempts, rows[0].next_attempt_at, rows[0].delivered_at), (0, NOW, None));
    assert_eq!(rows[1].target, TargetKind::Syslog);
    let left = store.unfanned_notifications(10).await.expect("unfanned");
    assert_eq!(left.iter().map(|n| n.id).collect::<Vec<_>>(), [n2], "fanned rows are not offered again");
    let counts = store.delivery_counts().await.expect("counts");
    assert_eq!((counts.unfanned, counts.pending, counts.failed), (1, 2, 0));

    store.delete_webhook("wh-1", &audit("webhook.delete")).await.expect("delete");
    let rows = store.list_deliveries(None).await.expect("deliveries");
    assert_eq!(rows.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["d2"], "a removed webhook's go too");
}

/// A claim takes only due deliveries (syslog ones only when asked), counts the attempt,
/// returns the notification and webhook, and hides them from other claims until the lease
/// ends; a retried delivery is due again at its next attempt.
pub async fn claims_are_exclusive_and_leases_expire(store: Arc<dyn Store>) {
    let wh = webhook("wh-1", 0);
    store.create_webhook(&wh, &audit("webhook.create")).await.expect("create");
    let n = store.enqueue_notification(NOW, "health_issue.opened", r#"{"x":"y"}"#).await.expect("enqueue");
    store.fan_out(&[n], &[delivery("d1", n, Some("wh-1")), delivery("d2", n, None)], NOW).await.expect("fan out");

    assert!(store.claim_deliveries(&claim("early", Timestamp(NOW.0 - 1), 10, true)).await.expect("claim").is_empty());
    let got = store.claim_deliveries(&claim("l1", NOW, 10, false)).await.expect("claim");
    assert_eq!(got.len(), 1, "syslog deliveries only for claimers with syslog: {got:?}");
    let d = &got[0];
    assert_eq!((d.id.as_str(), d.target, d.attempts), ("d1", TargetKind::Webhook, 1));
    assert_eq!(d.webhook.as_ref(), Some(&wh), "with the webhook and its secret");
    assert_eq!((d.notification.id, d.notification.event.as_str()), (n, "health_issue.opened"));
    assert_eq!(d.notification.payload, r#"{"x":"y"}"#);

    let other = store.claim_deliveries(&claim("l2", NOW, 10, true)).await.expect("claim");
    assert_eq!(other.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["d2"], "d1 is leased");
    assert_eq!(other[0].webhook, None);
    assert!(
        store.claim_deliveries(&claim("l3", Timestamp(NOW.0 + 59 * SEC), 10, true)).await.expect("claim").is_empty()
    );

    // l1's holder died: after the lease, d1 is due again and counts a second attempt.
    let after = Timestamp(NOW.0 + 60 * SEC);
    let again = store.claim_deliveries(&claim("l4", after, 1, false)).await.expect("claim");
    assert_eq!(again.iter().map(|d| (d.id.as_str(), d.attempts)).collect::<Vec<_>>(), [("d1", 2)]);
    let retry_at = Timestamp(after.0 + 30 * SEC);
    let outcome = DeliveryOutcome::Retry { next_attempt_at: retry_at, error: "HTTP 503".to_string() };
    assert!(store.finish_delivery("d1", "l4", &outcome).await.expect("finish"));
    assert!(
        store.claim_deliveries(&claim("l5", Timestamp(retry_at.0 - 1), 10, false)).await.expect("claim").is_empty()
    );
    let row = store.list_deliveries(Some(n)).await.expect("list").into_iter().find(|d| d.id == "d1").expect("d1");
    assert_eq!((row.attempts, row.next_attempt_at, row.last_error.as_deref()), (2, retry_at, Some("HTTP 503")));
    let stats = store.webhook_stats().await.expect("stats");
    assert_eq!(stats.len(), 1);
    let s = &stats[0];
    assert_eq!((s.webhook_id.as_str(), s.pending, s.failed), ("wh-1", 1, 0));
    assert_eq!((s.last_delivered_at, s.last_error.as_deref()), (None, Some("HTTP 503")));
    let last = store.claim_deliveries(&claim("l6", retry_at, 10, false)).await.expect("claim");
    assert_eq!(last.iter().map(|d| (d.id.as_str(), d.attempts)).collect::<Vec<_>>(), [("d1", 3)]);
    let done = DeliveryOutcome::Delivered { at: retry_at };
    assert!(store.finish_delivery("d1", "l6", &done).await.expect("finish"));
    let s = &store.webhook_stats().await.expect("stats")[0];
    assert_eq!((s.pending, s.failed, s.last_delivered_at, s.last_error.as_deref()), (0, 0, Some(retry_at), None));
    let far = Timestamp(NOW.0 + 86_400 * SEC);
    let rest = store.claim_deliveries(&claim("l7", far, 10, true)).await.expect("claim");
    assert_eq!(rest.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["d2"], "delivered ones are never due");
}

/// Several claimers at once (each on its own connection) never get the same delivery,
/// and together they get all of them.
pub async fn concurrent_claimers_never_share_a_delivery(store: Arc<dyn Store>) {
    store.create_webhook(&webhook("wh-1", 0), &audit("webhook.create")).await.expect("create");
    let mut ids = Vec::new();
    let mut new = Vec::new();
    for i in 0..40 {
        let n = store.enqueue_notification(NOW, "test.event", "{}").await.expect("enqueue");
        ids.push(n);
        new.push(delivery(&format!("d{i:03}"), n, Some("wh-1")));
    }
    store.fan_out(&ids, &new, NOW).await.expect("fan out");
    let claimer = |c: usize| {
        let store = store.clone();
        async move {
            let mut mine = Vec::new();
            loop {
                let got = store.claim_deliveries(&claim(&format!("c{c}-{}", mine.len()), NOW, 3, false)).await;
                let got = got.expect("claim");
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|d| d.id));
            }
        }
    };
    let all = futures_util::future::join_all((0..4).map(claimer)).await;
    let mut seen = HashSet::new();
    let mut total = 0;
    for mine in all {
        for id in mine {
            total += 1;
            assert!(seen.insert(id.clone()), "{id} was claimed twice");
        }
    }
    assert_eq!((total, seen.len()), (40, 40), "every delivery claimed exactly once");
}

/// Only the current lease holder records an outcome; giving up is final and counted.
pub async fn outcomes_need_the_lease(store: Arc<dyn Store>) {
    store.create_webhook(&webhook("wh-1", 0), &audit("webhook.create")).await.expect("create");
    let n = store.enqueue_notification(NOW, "test.event", "{}").await.expect("enqueue");
    store.fan_out(&[n], &[delivery("d1", n, Some("wh-1")), delivery("d2", n, None)], NOW).await.expect("fan out");
    let got = store.claim_deliveries(&claim("mine", NOW, 10, true)).await.expect("claim");
    assert_eq!(got.len(), 2);
    let done = DeliveryOutcome::Delivered { at: NOW };
    assert!(!store.finish_delivery("d1", "stolen", &done).await.expect("finish"), "wrong lease");
    assert!(store.finish_delivery("d1", "mine", &done).await.expect("finish"));
    assert!(!store.finish_delivery("d1", "mine", &done).await.expect("finish"), "the lease ends with the outcome");
    let gave_up = DeliveryOutcome::GaveUp { at: NOW, error: "too old".to_string() };
    assert!(store.finish_delivery("d2", "mine", &gave_up).await.expect("finish"));
    let far = Timestamp(NOW.0 + 86_400 * SEC);
    assert!(store.claim_deliveries(&claim("later", far, 10, true)).await.expect("claim").is_empty());
    let rows = store.list_deliveries(None).await.expect("list");
    assert_eq!(rows[0].delivered_at, Some(NOW));
    assert_eq!((rows[1].failed_at, rows[1].last_error.as_deref()), (Some(NOW), Some("too old")));
    let counts = store.delivery_counts().await.expect("counts");
    assert_eq!((counts.unfanned, counts.pending, counts.failed), (0, 0, 1));
    assert_eq!(store.purge_notifications(NOW).await.expect("purge"), 0, "nothing finished before NOW");
    assert_eq!(store.purge_notifications(Timestamp(NOW.0 + 1)).await.expect("purge"), 3, "2 deliveries, 1 row");
    assert!(store.list_deliveries(None).await.expect("list").is_empty());
}
