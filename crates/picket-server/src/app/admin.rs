//! Zones, subscriptions, API tokens and the audit log.
//!
//! Scoped admins (tokens limited to some subscriptions) stay inside their scope: they see
//! and revoke only tokens limited to subscriptions of theirs, create only such tokens, and
//! cannot create subscriptions or read the audit log (which records every subscription).

use picket_domain::validate::{validate_description, validate_subscription, validate_zone};
use picket_proto::{
    AuditView, CreateNamed, CreateTokenRequest, CreatedToken, ListPage, SubscriptionView, TokenView, ZoneView,
};
use picket_store::{ApiToken, Scope, Subscription, Zone};

use super::{App, AppError, AppResult, MAX_LIMIT};
use crate::auth::{Admin, Operator, Viewer, new_token_secret, token_record};

/// A page of the audit log, newest first. Its `total` counts the entries of this page only:
/// the log only grows, and counting all of it would cost a scan per request.
pub type AuditPage = ListPage<AuditView>;

fn zone_view(z: Zone) -> ZoneView {
    ZoneView { name: z.name, description: z.description, created_at: z.created_at }
}

fn subscription_view(s: Subscription) -> SubscriptionView {
    SubscriptionView { name: s.name, description: s.description, created_at: s.created_at }
}

fn token_view(t: ApiToken) -> TokenView {
    TokenView {
        id: t.id,
        role: t.role,
        subscriptions: t.subscriptions,
        description: t.description,
        created_at: t.created_at,
        revoked_at: t.revoked_at,
    }
}

/// Whether a token's scope lies inside `scope`.
fn within(scope: &Scope, subs: &Option<Vec<String>>) -> bool {
    match (scope, subs) {
        (Scope::All, _) => true,
        (Scope::Subscriptions(_), None) => false,
        (Scope::Subscriptions(mine), Some(theirs)) => theirs.iter().all(|s| mine.contains(s)),
    }
}

impl App {
    /// All zones.
    pub async fn list_zones(&self, _who: &Viewer) -> AppResult<Vec<ZoneView>> {
        Ok(self.store.list_zones().await?.into_iter().map(zone_view).collect())
    }

    /// Creates a zone.
    pub async fn create_zone(&self, who: &Operator, req: CreateNamed) -> AppResult<ZoneView> {
        validate_zone(&req.name)?;
        validate_description(&req.description)?;
        let now = self.now();
        let zone = Zone { name: req.name, description: req.description, created_at: now };
        self.store.create_zone(&zone, &who.principal().audit("zone.create", now)).await.map_err(|e| {
            match AppError::from(e) {
                AppError::Conflict(_) => AppError::Conflict(format!("zone {:?} already exists", zone.name)),
                e => e,
            }
        })?;
        Ok(zone_view(zone))
    }

    /// The subscriptions the caller may see.
    pub async fn list_subscriptions(&self, who: &Viewer) -> AppResult<Vec<SubscriptionView>> {
        Ok(self.store.list_subscriptions(&who.principal().scope).await?.into_iter().map(subscription_view).collect())
    }

    /// Creates a subscription (unscoped admins only).
    pub async fn create_subscription(&self, who: &Admin, req: CreateNamed) -> AppResult<SubscriptionView> {
        let p = who.principal();
        if p.scope != Scope::All {
            return Err(AppError::Forbidden(
                "a token limited to some subscriptions cannot create subscriptions".to_string(),
            ));
        }
        validate_subscription(&req.name)?;
        validate_description(&req.description)?;
        let now = self.now();
        let s = Subscription { name: req.name, description: req.description, created_at: now };
        self.store.create_subscription(&s, &p.audit("subscription.create", now)).await.map_err(
            |e| match AppError::from(e) {
                AppError::Conflict(_) => AppError::Conflict(format!("subscription {:?} already exists", s.name)),
                e => e,
            },
        )?;
        Ok(subscription_view(s))
    }

    /// Creates an API token and returns its secret, this once.
    #[tracing::instrument(skip_all)]
    pub async fn create_token(&self, who: &Admin, req: CreateTokenRequest) -> AppResult<CreatedToken> {
        let p = who.principal();
        validate_description(&req.description)?;
        if let Some(subs) = &req.subscriptions {
            let known = self.store.list_subscriptions(&Scope::All).await?;
            for (i, s) in subs.iter().enumerate() {
                validate_subscription(s)?;
                if subs[..i].contains(s) {
                    return Err(AppError::Validation(format!("subscriptions: {s:?} is given twice")));
                }
                if !known.iter().any(|k| &k.name == s) && p.scope.allows(s) {
                    return Err(AppError::Validation(format!("subscriptions: unknown subscription {s:?}")));
                }
            }
        }
        if !within(&p.scope, &req.subscriptions) {
            return Err(AppError::Forbidden(
                "a token limited to some subscriptions can only create tokens limited to (some of) the same"
                    .to_string(),
            ));
        }
        let secret = new_token_secret();
        let now = self.now();
        let token = token_record(&secret, req.role, req.subscriptions, &req.description, now);
        self.store.create_api_token(&token, &p.audit("token.create", now)).await?;
        Ok(CreatedToken { id: token.id, role: token.role, subscriptions: token.subscriptions, token: secret })
    }

    /// Tokens the caller may see (all for unscoped admins), oldest first, never with secrets.
    pub async fn list_tokens(&self, who: &Admin) -> AppResult<Vec<TokenView>> {
        let scope = &who.principal().scope;
        let tokens = self.store.list_api_tokens().await?;
        Ok(tokens.into_iter().filter(|t| within(scope, &t.subscriptions)).map(token_view).collect())
    }

    /// Revokes a token at once.
    pub async fn revoke_token(&self, who: &Admin, id: &str) -> AppResult<()> {
        let p = who.principal();
        if p.scope != Scope::All {
            let tokens = self.store.list_api_tokens().await?;
            if !tokens.iter().any(|t| t.id == id && within(&p.scope, &t.subscriptions)) {
                return Err(AppError::NotFound("token"));
            }
        }
        self.store
            .revoke_api_token(id, &p.audit("token.revoke", self.now()))
            .await
            .map_err(|e| AppError::from(e).not_found_as("token"))
    }

    /// Audit entries, newest first, older than `cursor` (unscoped admins only).
    pub async fn list_audit(&self, who: &Admin, cursor: Option<&str>, limit: u32) -> AppResult<AuditPage> {
        if who.principal().scope != Scope::All {
            return Err(AppError::Forbidden(
                "the audit log covers every subscription; only unscoped admin tokens may read it".to_string(),
            ));
        }
        let before = match cursor {
            Some(c) => Some(c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                AppError::BadRequest(format!("invalid cursor {c:?}: pass the next_cursor of the previous page"))
            })?),
            None => None,
        };
        let limit = limit.clamp(1, MAX_LIMIT);
        let mut entries = self.store.list_audit(before, limit + 1).await?;
        let more = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        let next_cursor = if more { entries.last().map(|e| e.id.to_string()) } else { None };
        let items = entries
            .into_iter()
            .map(|e| AuditView {
                id: e.id,
                at: e.at,
                actor: e.actor,
                action: e.action,
                target_kind: e.target_kind,
                target_id: e.target_id,
                before: e.before,
                after: e.after,
            })
            .collect();
        let items: Vec<AuditView> = items;
        Ok(ListPage { total: items.len() as u64, items, next_cursor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_scopes_nest() {
        let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        let mine = Scope::Subscriptions(vec!["a".into(), "b".into()]);
        assert!(within(&Scope::All, &None));
        assert!(within(&mine, &s(&["a"])));
        assert!(within(&mine, &s(&[])));
        assert!(!within(&mine, &s(&["a", "c"])));
        assert!(!within(&mine, &None));
    }
}
