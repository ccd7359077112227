//! Listing sensors: filters, sort keys, keyset cursors, and the SQL that both backends run
//! for them. The SQL uses `$N` placeholders, which SQLite and PostgreSQL both accept, and
//! only syntax both share; the status predicates mirror `picket_domain::status` rule by rule
//! (the conformance suite checks they agree).

use picket_domain::{HealthStatus, Mode, SensorStatus, SensorType, ServiceStatus, StatusContext, Version};

use crate::model::Scope;

/// Which sensors to list; each field is "any of these values" and fields combine with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SensorFilter {
    /// Derived status.
    pub sensor_status: Vec<SensorStatus>,
    /// Reported service status.
    pub service_status: Vec<ServiceStatus>,
    /// Worst open issue.
    pub health_status: Vec<HealthStatus>,
    /// Sensor type.
    pub sensor_type: Vec<SensorType>,
    /// Domain (case-insensitive).
    pub domain: Vec<String>,
    /// Subscription.
    pub subscription: Vec<String>,
    /// Site.
    pub site: Vec<String>,
    /// Zone.
    pub zone: Vec<String>,
    /// Has any of these tags.
    pub tag: Vec<String>,
    /// Mode.
    pub mode: Vec<Mode>,
    /// Version.
    pub version: Vec<Version>,
    /// Delayed ring membership.
    pub delayed_update: Option<bool>,
    /// Case-insensitive substring of the name.
    pub q: Option<String>,
}

macro_rules! sort_keys {
    ($($variant:ident = $text:literal => $expr:literal, $kind:ident;)+) => {
        /// A column the list can be sorted on (every column of the Sensors page).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum SortKey {
            $(#[doc = concat!("Sort on `", $text, "`.")] $variant),+
        }

        impl SortKey {
            /// Every key.
            pub const ALL: &'static [SortKey] = &[$(SortKey::$variant),+];

            /// The name used in `sort=` (prefix `-` for descending).
            pub fn as_str(self) -> &'static str {
                match self { $(SortKey::$variant => $text),+ }
            }

            /// The SQL expression sorted on; never NULL so keyset comparisons are total.
            fn column_expr(self) -> &'static str {
                match self { $(SortKey::$variant => $expr),+ }
            }

            /// Whether the sort value is text or an integer.
            pub fn kind(self) -> SortValueKind {
                match self { $(SortKey::$variant => SortValueKind::$kind),+ }
            }

            /// Parses a `sort=` key name.
            pub fn parse(s: &str) -> Option<SortKey> {
                match s { $($text => Some(SortKey::$variant),)+ _ => None }
            }
        }
    };
}

sort_keys! {
    Name = "name" => "name_lower", Text;
    Type = "type" => "sensor_type", Text;
    Domain = "domain" => "domain", Text;
    Subscription = "subscription" => "subscription", Text;
    Site = "site" => "site", Text;
    Zone = "zone" => "zone", Text;
    Tags = "tags" => "tags", Text;
    Mode = "mode" => "mode", Text;
    ServiceStatus = "service_status" => "service_status", Text;
    SensorStatus = "sensor_status" => "", Int;
    Version = "version" => "COALESCE(version_key, -1)", Int;
    DelayedUpdate = "delayed_update" => "(CASE WHEN delayed_update THEN 1 ELSE 0 END)", Int;
    HealthStatus = "health_status" => "health_rank", Int;
    HealthIssues = "health_issues" => "open_issues", Int;
    Created = "created_at" => "created_at", Int;
    LastSeen = "last_seen_at" => "COALESCE(last_seen_at, -1)", Int;
}

/// Whether a sort key's values are text or integers (for cursors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortValueKind {
    /// Text values.
    Text,
    /// Integer values.
    Int,
}

/// A sort order: a key and a direction; ties are broken by id in the same direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    /// The column.
    pub key: SortKey,
    /// Descending (`-key`).
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort { key: SortKey::Name, descending: false }
    }
}

impl Sort {
    /// Parses `name`, `-last_seen_at`, ...
    pub fn parse(s: &str) -> Option<Sort> {
        let (descending, key) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        SortKey::parse(key).map(|key| Sort { key, descending })
    }

    /// The inverse of `parse`.
    pub fn as_param(self) -> String {
        format!("{}{}", if self.descending { "-" } else { "" }, self.key.as_str())
    }
}

/// The value of the sort column at a position in the list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum SortValue {
    /// For text keys.
    Text(String),
    /// For integer keys.
    Int(i64),
}

/// Where the previous page ended: the last row's sort value and id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CursorPos {
    /// The sort it belongs to (`sort=` form); a cursor is refused with another sort.
    pub sort: String,
    /// Last row's sort value.
    pub value: SortValue,
    /// Last row's id.
    pub id: String,
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor: {0}")]
pub struct CursorError(pub &'static str);

impl CursorPos {
    /// The opaque text handed to clients as `next_cursor`.
    pub fn encode(&self) -> String {
        hex::encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a client's cursor back, checking it belongs to `sort`.
    pub fn decode(text: &str, sort: Sort) -> Result<CursorPos, CursorError> {
        let bytes = hex::decode(text).map_err(|_| CursorError("not a cursor returned by this server"))?;
        let pos: CursorPos =
            serde_json::from_slice(&bytes).map_err(|_| CursorError("not a cursor returned by this server"))?;
        if pos.sort != sort.as_param() {
            return Err(CursorError("it was made for another sort order; start again without a cursor"));
        }
        let kind_ok = matches!(
            (&pos.value, sort.key.kind()),
            (SortValue::Text(_), SortValueKind::Text) | (SortValue::Int(_), SortValueKind::Int)
        );
        if !kind_ok {
            return Err(CursorError("not a cursor returned by this server"));
        }
        Ok(pos)
    }
}

/// A complete list request.
#[derive(Debug, Clone)]
pub struct SensorQuery {
    /// What the caller may see.
    pub scope: Scope,
    /// Filters.
    pub filter: SensorFilter,
    /// Order.
    pub sort: Sort,
    /// Start after this position.
    pub after: Option<CursorPos>,
    /// Page size.
    pub limit: u32,
    /// For status filters and the status sort.
    pub status: StatusContext,
}

/// A value bound to a `$N` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlParam {
    /// Text.
    Text(String),
    /// Integer.
    Int(i64),
    /// Boolean.
    Bool(bool),
}

/// SQL text with its parameters in `$N` order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlQuery {
    /// The statement.
    pub sql: String,
    /// Values for `$1`, `$2`, ...
    pub params: Vec<SqlParam>,
}

impl SqlQuery {
    /// Adds a parameter and returns its placeholder.
    pub fn bind(&mut self, p: SqlParam) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    /// The numbers of the parameters bound but not written in the text (none for a well-built
    /// query: PostgreSQL caches statements by text, so one text must always carry the same
    /// parameters).
    pub fn unreferenced_params(&self) -> Vec<usize> {
        let mut seen = vec![false; self.params.len() + 1];
        let mut rest = self.sql.as_str();
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if let Ok(n) = rest[..digits].parse::<usize>()
                && n < seen.len()
            {
                seen[n] = true;
            }
            rest = &rest[digits..];
        }
        (1..seen.len()).filter(|n| !seen[*n]).collect()
    }
}

/// The columns every sensor query selects, in the order backends decode them.
pub const SENSOR_COLUMNS: &str = "id, name, sensor_type, domain, subscription, site, zone, tags, mode, auto_ti_updates, \
description, capture_setting, delayed_update, service_status, version, created_at, last_seen_at, activated_at, \
decommissioned_at, service_started_at, last_config_pull_at, update_state, config_version_applied, \
config_version_desired, ti_version, open_issues, health_rank, activation_expires_at, cert_fingerprint";

/// The SQL predicate for one status rule (without precedence); never NULL. Health conditions
/// (`picket_store::health`) combine these.
pub fn rule_predicate(status: SensorStatus, ctx: &StatusContext, q: &mut SqlQuery) -> String {
    use SensorStatus::*;
    let p = match status {
        NotApplicable => "mode = 'locally_managed'".to_string(),
        PendingActivation => "activated_at IS NULL".to_string(),
        Unreachable => "decommissioned_at IS NOT NULL".to_string(),
        Disconnected => match ctx.disconnect_cutoff() {
            Some(cutoff) => format!(
                "(activated_at IS NOT NULL AND (CASE WHEN last_seen_at IS NOT NULL AND last_seen_at > activated_at THEN last_seen_at ELSE activated_at END) <= {})",
                q.bind(SqlParam::Int(cutoff.millis()))
            ),
            None => "FALSE".to_string(),
        },
        StartFailed => format!(
            "(service_started_at IS NOT NULL AND service_started_at < {} AND (last_config_pull_at IS NULL OR last_config_pull_at < service_started_at))",
            q.bind(SqlParam::Int(ctx.start_failed_cutoff().millis()))
        ),
        UpdateFailed => "update_state = 'failed'".to_string(),
        Updating => "update_state = 'updating'".to_string(),
        NotConfigured => {
            "sensor_type IN ('adfs', 'standalone') AND (capture_setting IS NULL OR TRIM(capture_setting) = '')"
                .to_string()
        }
        Syncing => "config_version_desired > config_version_applied".to_string(),
        Outdated => match ctx.outdated_below {
            Some(v) => format!("(version_key IS NOT NULL AND version_key < {})", q.bind(SqlParam::Int(v.key()))),
            None => "FALSE".to_string(),
        },
        UpToDate => "TRUE".to_string(),
    };
    format!("COALESCE(({p}), FALSE)")
}

/// The clock predicates of the time-dependent status rules, on the generated columns of
/// migration 0012 (`last_contact_at`, `start_pending_since`; written as `hint` says).
///
/// Each predicate binds the value it compares with when it is written, never before: a value
/// bound but not referenced lets the same SQL text carry a different number of parameters
/// from one call to the next (e.g. `outdated_below` appearing once a third release is
/// published), and PostgreSQL refuses the Bind against the statement sqlx prepared and cached
/// for that text ("bind message supplies 2 parameters, but prepared statement requires 1").
struct Clock<'a> {
    ctx: &'a StatusContext,
    hint: Hint,
}

impl<'a> Clock<'a> {
    fn new(ctx: &'a StatusContext, hint: Hint) -> Clock<'a> {
        Clock { ctx, hint }
    }

    /// Not heard from since the disconnect cutoff (`FALSE` within the grace period).
    fn disconnected(&self, q: &mut SqlQuery) -> String {
        match self.ctx.disconnect_cutoff() {
            Some(cutoff) => {
                format!("{} <= {}", self.hint.col("last_contact_at"), q.bind(SqlParam::Int(cutoff.millis())))
            }
            None => "FALSE".to_string(),
        }
    }

    /// The negation of [`Clock::disconnected`].
    fn not_disconnected(&self, q: &mut SqlQuery) -> String {
        match self.ctx.disconnect_cutoff() {
            Some(cutoff) => {
                format!("{} > {}", self.hint.col("last_contact_at"), q.bind(SqlParam::Int(cutoff.millis())))
            }
            None => "TRUE".to_string(),
        }
    }

    /// Started before the start-failed cutoff without a configuration pull since.
    fn start_failed(&self, q: &mut SqlQuery) -> String {
        let sf = q.bind(SqlParam::Int(self.ctx.start_failed_cutoff().millis()));
        format!("{} < {sf}", self.hint.col("start_pending_since"))
    }

    /// The negation of [`Clock::start_failed`].
    fn not_start_failed(&self, q: &mut SqlQuery) -> String {
        let sp = self.hint.col("start_pending_since");
        let sf = q.bind(SqlParam::Int(self.ctx.start_failed_cutoff().millis()));
        format!("({sp} IS NULL OR {sp} >= {sf})")
    }

    /// Running a version below `outdated_below` (`FALSE` while there is none).
    fn outdated(&self, q: &mut SqlQuery) -> String {
        match self.ctx.outdated_below {
            Some(v) => format!("{} < {}", self.hint.col("version_key"), q.bind(SqlParam::Int(v.key()))),
            None => "FALSE".to_string(),
        }
    }

    /// The negation of [`Clock::outdated`].
    fn not_outdated(&self, q: &mut SqlQuery) -> String {
        match self.ctx.outdated_below {
            Some(v) => {
                let vk = self.hint.col("version_key");
                format!("({vk} IS NULL OR {vk} >= {})", q.bind(SqlParam::Int(v.key())))
            }
            None => "TRUE".to_string(),
        }
    }
}

/// How a page's SQL steers SQLite's planner (PostgreSQL plans well on its own and never gets
/// hints). SQLite's unary `+` on a column keeps the planner off that column's indexes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Hint {
    /// Write filter columns `+column`, so the planner walks the sort column's index.
    walk: bool,
    /// ... except this column, which leads a `(column, sort, id)` index the page walks.
    keep: Option<&'static str>,
}

impl Hint {
    /// No hints: the planner decides.
    const NONE: Hint = Hint { walk: false, keep: None };

    /// A filter column as the WHERE clause names it.
    fn col(self, name: &str) -> String {
        if self.walk && self.keep != Some(name) { format!("+{name}") } else { name.to_string() }
    }
}

/// The SQL predicate "this sensor's derived status is `status`", on the stored
/// time-independent rank `status_base` and the clock columns (migration 0012), so an index
/// serves it. Equivalent to [`derive_status_predicate`] (the conformance suite checks both
/// against `picket_domain::status::derive_sensor_status`).
pub fn status_predicate(status: SensorStatus, ctx: &StatusContext, q: &mut SqlQuery) -> String {
    status_predicate_with(status, ctx, q, Hint::NONE)
}

fn status_predicate_with(status: SensorStatus, ctx: &StatusContext, q: &mut SqlQuery, hint: Hint) -> String {
    use SensorStatus::*;
    let base = hint.col("status_base");
    let rank = status.rank();
    let c = Clock::new(ctx, hint);
    match status {
        NotApplicable | PendingActivation | Unreachable => format!("{base} = {rank}"),
        Disconnected => format!("({base} >= 3 AND {})", c.disconnected(q)),
        StartFailed => {
            let not_disconnected = c.not_disconnected(q);
            format!("({base} >= 3 AND {not_disconnected} AND {})", c.start_failed(q))
        }
        UpdateFailed | Updating | NotConfigured | Syncing => {
            let not_disconnected = c.not_disconnected(q);
            format!("({base} = {rank} AND {not_disconnected} AND {})", c.not_start_failed(q))
        }
        Outdated | UpToDate => {
            let not_disconnected = c.not_disconnected(q);
            let not_start_failed = c.not_start_failed(q);
            let v = if status == Outdated { c.outdated(q) } else { c.not_outdated(q) };
            format!("({base} = 10 AND {not_disconnected} AND {not_start_failed} AND {v})")
        }
    }
}

/// The same predicate built from the recorded facts alone (each earlier rule negated), as
/// before migration 0012: the reference the stored columns are checked against.
pub fn derive_status_predicate(status: SensorStatus, ctx: &StatusContext, q: &mut SqlQuery) -> String {
    let mut parts = Vec::new();
    for earlier in SensorStatus::ALL.iter().take_while(|s| **s != status) {
        parts.push(format!("NOT {}", rule_predicate(*earlier, ctx, q)));
    }
    parts.push(rule_predicate(status, ctx, q));
    format!("({})", parts.join(" AND "))
}

/// A SQL expression giving the derived status's rank (`SensorStatus::rank`), on
/// `status_base` and the clock columns (migration 0012).
pub fn status_rank_expr(ctx: &StatusContext, q: &mut SqlQuery) -> String {
    let c = Clock::new(ctx, Hint::NONE);
    let disconnected = c.disconnected(q);
    let start_failed = c.start_failed(q);
    let outdated = c.outdated(q);
    format!(
        "(CASE WHEN status_base < 3 THEN status_base WHEN {disconnected} THEN 3 WHEN {start_failed} THEN 4 WHEN status_base < 10 THEN status_base WHEN {outdated} THEN 9 ELSE 10 END)"
    )
}

fn in_list(column: &str, values: &[String], q: &mut SqlQuery) -> String {
    let ph: Vec<String> = values.iter().map(|v| q.bind(SqlParam::Text(v.clone()))).collect();
    format!("{column} IN ({})", ph.join(", "))
}

fn names<T>(v: &[T], f: fn(&T) -> &'static str) -> Vec<String> {
    v.iter().map(|x| f(x).to_string()).collect()
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// How a backend finds names containing `q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSearch {
    /// `name_lower LIKE '%q%'` alone (PostgreSQL: served by its `pg_trgm` index).
    Like,
    /// SQLite: candidates from the FTS5 trigram table `sensor_name_search`, then the LIKE.
    Fts5Trigram,
}

/// The WHERE clause (without the keyword) for a scope and filter; `TRUE` when unfiltered.
pub fn where_clause(scope: &Scope, f: &SensorFilter, ctx: &StatusContext, q: &mut SqlQuery) -> String {
    where_clause_with(scope, f, ctx, q, Hint::NONE, NameSearch::Like)
}

/// `where_clause`, with every indexable column written as `hint` says (SQLite's unary `+`
/// keeps its planner off that column's index: see `list_sql_walking_sort_index`).
fn where_clause_with(
    scope: &Scope,
    f: &SensorFilter,
    ctx: &StatusContext,
    q: &mut SqlQuery,
    hint: Hint,
    search: NameSearch,
) -> String {
    let c = |name: &str| hint.col(name);
    let mut parts: Vec<String> = Vec::new();
    if let Scope::Subscriptions(subs) = scope {
        parts.push(if subs.is_empty() { "FALSE".to_string() } else { in_list(&c("subscription"), subs, q) });
    }
    if !f.sensor_status.is_empty() {
        let ors: Vec<String> = f.sensor_status.iter().map(|s| status_predicate_with(*s, ctx, q, hint)).collect();
        parts.push(format!("({})", ors.join(" OR ")));
    }
    if !f.service_status.is_empty() {
        parts.push(in_list(&c("service_status"), &names(&f.service_status, |s: &ServiceStatus| s.as_str()), q));
    }
    if !f.health_status.is_empty() {
        let ranks: Vec<String> = f.health_status.iter().map(|h| q.bind(SqlParam::Int(h.rank()))).collect();
        parts.push(format!("{} IN ({})", c("health_rank"), ranks.join(", ")));
    }
    if !f.sensor_type.is_empty() {
        parts.push(in_list(&c("sensor_type"), &names(&f.sensor_type, |s: &SensorType| s.as_str()), q));
    }
    if !f.domain.is_empty() {
        let lower: Vec<String> = f.domain.iter().map(|d| d.to_ascii_lowercase()).collect();
        parts.push(in_list("LOWER(domain)", &lower, q));
    }
    if !f.subscription.is_empty() {
        parts.push(in_list(&c("subscription"), &f.subscription, q));
    }
    if !f.site.is_empty() {
        parts.push(in_list(&c("site"), &f.site, q));
    }
    if !f.zone.is_empty() {
        parts.push(in_list(&c("zone"), &f.zone, q));
    }
    if !f.tag.is_empty() {
        let inner = in_list("t.tag", &f.tag, q);
        if !hint.walk {
            // An IN-subquery, not a correlated EXISTS: both planners then walk the tag index
            // once instead of probing it for each of a million sensors.
            parts.push(format!("id IN (SELECT t.sensor_id FROM sensor_tags t WHERE {inner})"));
        } else {
            // Walking the sort index (SQLite, many matches): probe each walked row's tags by
            // primary key; the IN-subquery would first collect every tagged sensor (~150 ms
            // for 170,000) to return a page found after a few hundred rows.
            parts.push(format!("EXISTS (SELECT 1 FROM sensor_tags t WHERE t.sensor_id = sensors.id AND {inner})"));
        }
    }
    if !f.mode.is_empty() {
        parts.push(in_list(&c("mode"), &names(&f.mode, |m: &Mode| m.as_str()), q));
    }
    if !f.version.is_empty() {
        let keys: Vec<String> = f.version.iter().map(|v| q.bind(SqlParam::Int(v.key()))).collect();
        parts.push(format!("{} IN ({})", c("version_key"), keys.join(", ")));
    }
    if let Some(d) = f.delayed_update {
        parts.push(format!("{} = {}", c("delayed_update"), q.bind(SqlParam::Bool(d))));
    }
    if let Some(text) = f.q.as_deref().filter(|t| !t.is_empty()) {
        let lower = text.to_lowercase();
        // SQLite's trigram index narrows the candidates (it needs three characters); LIKE on
        // the row decides. PostgreSQL's trigram index serves the LIKE itself.
        if search == NameSearch::Fts5Trigram && lower.chars().count() >= 3 {
            let phrase = q.bind(SqlParam::Text(format!("\"{}\"", lower.replace('"', "\"\""))));
            parts.push(format!(
                "{} IN (SELECT rowid FROM sensor_name_search WHERE sensor_name_search MATCH {phrase})",
                c("rowid")
            ));
        }
        let pat = q.bind(SqlParam::Text(escape_like(&lower)));
        parts.push(format!("name_lower LIKE {pat} ESCAPE '\\'"));
    }
    if parts.is_empty() { "TRUE".to_string() } else { parts.join(" AND ") }
}

/// The page query: `SELECT <SENSOR_COLUMNS>, <sort value> AS sort_value FROM sensors ...`,
/// keyset-paginated after `query.after`, `limit` rows.
pub fn list_sql(query: &SensorQuery) -> SqlQuery {
    page_sql_hinted(query, Hint::NONE, NameSearch::Like, SENSOR_COLUMNS, false)
}

/// `list_sql` for SQLite when many rows match: filter columns are written `+column` so the
/// planner walks the sort column's index and stops after `limit` matches, instead of
/// collecting every match through the filter's index and sorting them all (its choice even
/// with statistics: seconds for a filter that matches half a million sensors).
pub fn list_sql_walking_sort_index(query: &SensorQuery) -> SqlQuery {
    page_sql_hinted(query, Hint { walk: true, keep: None }, NameSearch::Fts5Trigram, SENSOR_COLUMNS, false)
}

/// `list_sql` for SQLite when many rows match and [`sorted_filter_index`] names a column:
/// every other filter column is written `+column`, so the planner walks that column's
/// `(column, sort, id)` index from the filter's value in sort order.
pub fn list_sql_walking_filter_index(query: &SensorQuery, column: &'static str) -> SqlQuery {
    page_sql_hinted(query, Hint { walk: true, keep: Some(column) }, NameSearch::Fts5Trigram, SENSOR_COLUMNS, false)
}

/// `list_sql` for SQLite when few rows match (its name search through `sensor_name_search`).
pub fn list_sql_sqlite(query: &SensorQuery) -> SqlQuery {
    page_sql_hinted(query, Hint::NONE, NameSearch::Fts5Trigram, SENSOR_COLUMNS, false)
}

/// Filter columns that lead an index `(column, <sort expression>, id)` for a sort key
/// (migrations 0001, 0012, 0015 and 0016): a page filtered on one value of the column and sorted on
/// the key is then an index range read in sort order, whatever the data. Without it a page
/// walks the sort index and checks the filter on each row, which is fast while the matches
/// are spread over the sort order and slow where they bunch up: sensor names begin with their
/// type (`adfs...`, `dc...`), so the first domain controller by name comes after every ADFS
/// sensor; locally managed sensors are never seen, so by `-last_seen_at` they all come last.
/// The portal sorts by name unless asked otherwise, so each of its choice filters has one.
pub const SORTED_FILTER_INDEXES: &[(&str, SortKey)] = &[
    ("sensor_type", SortKey::Name),    // sensors_type_name (0015)
    ("mode", SortKey::Name),           // sensors_mode_name (0015)
    ("zone", SortKey::Name),           // sensors_zone_name (0015)
    ("health_rank", SortKey::Name),    // sensors_health_name (0015)
    ("subscription", SortKey::Name),   // sensors_subscription_name (0001; `name_lower` is unique)
    ("status_base", SortKey::Name),    // sensors_status_name (0012)
    ("mode", SortKey::LastSeen),       // sensors_mode_last_seen (0015)
    ("health_rank", SortKey::Created), // sensors_health_created (0016)
];

/// The column of [`SORTED_FILTER_INDEXES`] whose index serves this page: the query filters
/// that column on exactly one value and sorts on its key. A `sensor_status` counts when it is
/// one of the statuses that `status_base` alone decides (equality on it).
pub fn sorted_filter_index(query: &SensorQuery) -> Option<&'static str> {
    use SensorStatus::*;
    let f = &query.filter;
    let one_status = matches!(
        f.sensor_status.as_slice(),
        [NotApplicable | PendingActivation | Unreachable | UpdateFailed | Updating | NotConfigured | Syncing]
    );
    let one_subscription = match (&query.scope, f.subscription.len()) {
        (_, 1) => true,
        (Scope::Subscriptions(s), 0) => s.len() == 1,
        _ => false,
    };
    let single = |column: &str| match column {
        "sensor_type" => f.sensor_type.len() == 1,
        "mode" => f.mode.len() == 1,
        "zone" => f.zone.len() == 1,
        "health_rank" => f.health_status.len() == 1,
        "subscription" => one_subscription,
        "status_base" => one_status,
        _ => false,
    };
    SORTED_FILTER_INDEXES.iter().find(|(c, k)| *k == query.sort.key && single(c)).map(|(c, _)| *c)
}

/// A keyset page selecting `columns`, the sort value (`sort_value`) and, with `with_status`,
/// the derived status rank (`status_rank`).
pub(crate) fn page_sql_columns(
    query: &SensorQuery,
    walk_sort_index: bool,
    search: NameSearch,
    columns: &str,
    with_status: bool,
) -> SqlQuery {
    page_sql_hinted(query, Hint { walk: walk_sort_index, keep: None }, search, columns, with_status)
}

fn page_sql_hinted(query: &SensorQuery, hint: Hint, search: NameSearch, columns: &str, with_status: bool) -> SqlQuery {
    let mut q = SqlQuery::default();
    let filter = where_clause_with(&query.scope, &query.filter, &query.status, &mut q, hint, search);
    let sort_expr = match query.sort.key {
        SortKey::SensorStatus => status_rank_expr(&query.status, &mut q),
        k => k.column_expr().to_string(),
    };
    let status = if with_status {
        format!("{} AS status_rank, ", status_rank_expr(&query.status, &mut q))
    } else {
        String::new()
    };
    let (cmp, dir) = if query.sort.descending { ("<", "DESC") } else { (">", "ASC") };
    let mut clause = filter;
    if let Some(pos) = &query.after {
        let v = match &pos.value {
            SortValue::Text(t) => SqlParam::Text(t.clone()),
            SortValue::Int(i) => SqlParam::Int(*i),
        };
        // The first, redundant bound lets PostgreSQL start an index range at the cursor; the
        // OR alone makes it scan every earlier row (seconds deep into a million-row list).
        let v0 = q.bind(v.clone());
        let v1 = q.bind(v.clone());
        let v2 = q.bind(v);
        let id = q.bind(SqlParam::Text(pos.id.clone()));
        clause = format!(
            "({clause}) AND {sort_expr} {cmp}= {v0} AND ({sort_expr} {cmp} {v1} OR ({sort_expr} = {v2} AND id {cmp} {id}))"
        );
    }
    let limit = q.bind(SqlParam::Int(i64::from(query.limit)));
    q.sql = format!(
        "SELECT {columns}, {status}{sort_expr} AS sort_value FROM sensors WHERE {clause} ORDER BY {sort_expr} {dir}, id {dir} LIMIT {limit}"
    );
    q
}

mod counts;
pub use counts::{capped_count_sql, count_sql, fast_count_sql, summary_sql};

#[cfg(test)]
mod tests;
