//! Rollout calls of the client: the rollout of the current release, pause, resume and
//! rollback (`/api/v1/rollouts/current...`).

use picket_proto::rollouts::{RollbackRequest, RollbackResponse, RolloutView};
use reqwest::Method;

use crate::{Client, ClientError};

impl Client {
    /// `GET /api/v1/rollouts/current`: progress per sensor; `ClientError::Api` with status
    /// 404 and code `no_rollout` before the first release.
    pub async fn current_rollout(&self) -> Result<RolloutView, ClientError> {
        self.get(&["api", "v1", "rollouts", "current"]).await
    }

    /// `POST /api/v1/rollouts/current/pause`: no new grants until resumed.
    pub async fn pause_rollout(&self) -> Result<RolloutView, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "rollouts", "current", "pause"], &serde_json::json!({})).await
    }

    /// `POST /api/v1/rollouts/current/resume`: grants again, failure count cleared.
    pub async fn resume_rollout(&self) -> Result<RolloutView, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "rollouts", "current", "resume"], &serde_json::json!({})).await
    }

    /// `POST /api/v1/rollouts/current/rollback`: one sensor (`sensor_id`), every sensor on a
    /// version (`version`), or (both `None`) every sensor on the current release, back to the
    /// previous release.
    pub async fn rollback_rollout(&self, req: &RollbackRequest) -> Result<RollbackResponse, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "rollouts", "current", "rollback"], req).await
    }
}
