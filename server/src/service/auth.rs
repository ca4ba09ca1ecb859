//! The `chat.Auth` service: SignUp, SignIn and SignOut over [`crate::auth::Authenticator`].

use std::sync::Arc;

use chat_core::proto::auth_server::Auth;
use chat_core::proto::{Credentials, Session, SignOutRequest, SignOutResponse};
use chat_core::requests;
use tonic::{Request, Response, Status};

use crate::auth::{self, Authenticator};
use crate::error::ApiError;

pub struct AuthService {
    pub authenticator: Arc<Authenticator>,
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn sign_up(&self, request: Request<Credentials>) -> Result<Response<Session>, Status> {
        let credentials =
            requests::Credentials::try_from(request.get_ref()).map_err(ApiError::from)?;
        let session = self.authenticator.sign_up(credentials).await?;
        Ok(Response::new(to_proto(session)))
    }

    async fn sign_in(&self, request: Request<Credentials>) -> Result<Response<Session>, Status> {
        let credentials =
            requests::Credentials::try_from(request.get_ref()).map_err(ApiError::from)?;
        let session = self.authenticator.sign_in(credentials).await?;
        Ok(Response::new(to_proto(session)))
    }

    async fn sign_out(
        &self,
        request: Request<SignOutRequest>,
    ) -> Result<Response<SignOutResponse>, Status> {
        self.authenticator.sign_out(request.metadata()).await?;
        Ok(Response::new(SignOutResponse {}))
    }
}

fn to_proto(session: auth::Session) -> Session {
    Session {
        user_id: session.user.to_string(),
        token: session.token,
        expires_at: session.expires_at,
    }
}
