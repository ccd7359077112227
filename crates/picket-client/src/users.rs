//! Portal user calls of the client: list, create, set password, remove (admin).

use picket_proto::users::{CreateUserRequest, SetPasswordRequest, UserView};
use reqwest::Method;

use crate::{CALL_TIMEOUT, Client, ClientError};

impl Client {
    /// `GET /api/v1/users`.
    pub async fn list_users(&self) -> Result<Vec<UserView>, ClientError> {
        self.get(&["api", "v1", "users"]).await
    }

    /// `POST /api/v1/users`: creates a portal user.
    pub async fn create_user(&self, req: &CreateUserRequest) -> Result<UserView, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "users"], req).await
    }

    /// `PUT /api/v1/users/{name}/password`: sets a new password (ends the user's sessions).
    pub async fn set_user_password(&self, name: &str, password: &str) -> Result<(), ClientError> {
        let url = self.url(&["api", "v1", "users", name, "password"]);
        let body = SetPasswordRequest { password: password.to_string() };
        let req = self.request(Method::PUT, url.clone()).json(&body).timeout(CALL_TIMEOUT);
        self.send(req, &url).await.map(drop)
    }

    /// `DELETE /api/v1/users/{name}`: removes a portal user.
    pub async fn delete_user(&self, name: &str) -> Result<(), ClientError> {
        self.no_content(Method::DELETE, &["api", "v1", "users", name]).await
    }
}
