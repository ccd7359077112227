//! `journal.json`: which versions are on disk (current, previous, each one's entry point) and
//! the update step under way. Written atomically before each step's effect, so after a
//! `kill -9` at any point `recover` finds either the old or the new version complete and
//! `current` pointing at one of them:
//!
//! - `downloading` / `extracting`: `current` was never touched; partial downloads are kept
//!   (resumed), partial extractions removed; the grant is tried again.
//! - `switched`: the new version was complete before `current` could point at it; `current`
//!   may point at either; the new version is started again and must earn clearance, or
//!   `current` goes back to `from`.

use std::collections::BTreeMap;

use picket_proto::updates::UpdateAction;
use serde::{Deserialize, Serialize};

use crate::layout::{FORMAT, Layout, read_json, write_json};

/// The step in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Nothing under way.
    #[default]
    Idle,
    /// Downloading the package of a grant.
    Downloading {
        /// The grant.
        update_id: String,
        /// Its version.
        version: String,
    },
    /// Extracting a verified package to `<install-dir>/<version>/`.
    Extracting {
        /// The grant.
        update_id: String,
        /// Its version.
        version: String,
    },
    /// `current` is (being) switched from `from` to `to`; waiting for clearance.
    Switched {
        /// The grant.
        update_id: String,
        /// `update` or `rollback`.
        action: UpdateAction,
        /// The version running before.
        from: String,
        /// The version switched to.
        to: String,
    },
}

/// `journal.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// `FORMAT`.
    pub format: u32,
    /// The version that runs when no step is under way.
    pub current: String,
    /// The version before it, kept on disk for rollback.
    #[serde(default)]
    pub previous: Option<String>,
    /// Entry point of each version on disk.
    #[serde(default)]
    pub entrypoints: BTreeMap<String, String>,
    /// The step under way.
    #[serde(default)]
    pub step: Step,
    /// The last grant whose outcome was reported.
    #[serde(default)]
    pub last_update_id: Option<String>,
    /// The latest grants whose outcome was reported (at most `HANDLED_KEPT`): a grant is
    /// never carried out twice, even if a stale `grant.json` names it again.
    #[serde(default)]
    pub handled: Vec<String>,
}

/// How many handled grant ids the journal remembers.
pub const HANDLED_KEPT: usize = 32;

impl Journal {
    /// A journal for a fresh install of `version`.
    pub fn fresh(version: &str, entrypoint: &str) -> Journal {
        Journal {
            format: FORMAT,
            current: version.to_string(),
            previous: None,
            entrypoints: BTreeMap::from([(version.to_string(), entrypoint.to_string())]),
            step: Step::Idle,
            last_update_id: None,
            handled: Vec::new(),
        }
    }

    /// Reads the journal of `layout`.
    pub fn load(layout: &Layout) -> anyhow::Result<Journal> {
        let j: Journal = read_json(&layout.journal())?.ok_or_else(|| {
            anyhow::anyhow!("{} is missing; run `picket-updater install` first", layout.journal().display())
        })?;
        anyhow::ensure!(j.format == FORMAT, "{}: unknown format {}", layout.journal().display(), j.format);
        Ok(j)
    }

    /// Writes it atomically.
    pub fn save(&self, layout: &Layout) -> anyhow::Result<()> {
        write_json(&layout.journal(), self)
    }

    /// Whether the grant `id` was carried out already.
    pub fn was_handled(&self, id: &str) -> bool {
        self.last_update_id.as_deref() == Some(id) || self.handled.iter().any(|h| h == id)
    }

    /// Records that the grant `id` was carried out.
    pub fn mark_handled(&mut self, id: &str) {
        self.last_update_id = Some(id.to_string());
        if !self.handled.iter().any(|h| h == id) {
            self.handled.push(id.to_string());
        }
        let extra = self.handled.len().saturating_sub(HANDLED_KEPT);
        self.handled.drain(..extra);
    }

    /// The entry point of `version`.
    pub fn entrypoint(&self, version: &str) -> anyhow::Result<&str> {
        self.entrypoints
            .get(version)
            .map(String::as_str)
            .ok_or_else(|| anyhow::anyhow!("the journal knows no entry point for version {version}"))
    }

    /// Versions no longer needed (neither current, previous, nor the step's): their entry
    /// points are forgotten and their directories may be removed.
    pub fn prune(&mut self) -> Vec<String> {
        let keep: Vec<String> = [Some(self.current.clone()), self.previous.clone()].into_iter().flatten().collect();
        let gone: Vec<String> = self.entrypoints.keys().filter(|v| !keep.contains(v)).cloned().collect();
        for v in &gone {
            self.entrypoints.remove(v);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_each_step_and_prunes_old_versions() {
        let mut j = Journal::fresh("1.0.0", "bin/picket-sensor");
        j.step = Step::Switched {
            update_id: "upd_1".into(),
            action: UpdateAction::Update,
            from: "1.0.0".into(),
            to: "2.0.0".into(),
        };
        let text = serde_json::to_string(&j).unwrap();
        assert!(text.contains(r#""step":"switched""#), "{text}");
        assert_eq!(serde_json::from_str::<Journal>(&text).unwrap(), j);
        j.entrypoints.insert("2.0.0".into(), "e".into());
        j.entrypoints.insert("3.0.0".into(), "e".into());
        j.previous = Some("2.0.0".into());
        j.current = "3.0.0".into();
        assert_eq!(j.prune(), vec!["1.0.0".to_string()]);
    }
}
