//! The `chat.Auth` service: SignUp, SignIn, SignOut, SignOutEverywhere and ChangePassword over
//! [`crate::auth::Authenticator`], with the limits of [`crate::limits::Limits`] in front of the
//! password hashing and of SignOut's token lookup.

use std::sync::Arc;

use chat_core::ids::UserId;
use chat_core::proto::auth_server::Auth;
use chat_core::proto::{
    ChangePasswordRequest, Credentials, Session, SignOutEverywhereRequest, SignOutRequest,
    SignOutResponse,
};
use chat_core::requests;
use tonic::{Request, Response, Status};

use crate::auth::{self, Authenticator};
use crate::client_address::TrustedProxies;
use crate::config::SignUp;
use crate::error::ApiError;
use crate::limits::Limits;
use crate::limits::sign_in::Source;
use crate::password::Turn;

pub struct AuthService {
    pub authenticator: Arc<Authenticator>,
    pub limits: Arc<Limits>,
    /// Whose word to take for a call's address.
    pub proxies: TrustedProxies,
    /// Whether SignUp creates accounts (`--sign-up`).
    pub sign_up: SignUp,
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn sign_up(&self, request: Request<Credentials>) -> Result<Response<Session>, Status> {
        // Before anything else: a closed server costs a refused caller nothing, not even a
        // turn of the address's budget.
        if self.sign_up == SignUp::Closed {
            return Err(ApiError::PermissionDenied(
                "sign-up is closed on this server: ask its operator for an account".to_owned(),
            )
            .into());
        }
        let credentials =
            requests::Credentials::try_from(request.get_ref()).map_err(ApiError::from)?;
        // Sign-up hashes a password too: the same per-address budget keeps it from being a
        // way to burn the server's CPU or to mass-create accounts.
        self.limits
            .sign_in_from(self.proxies.client_of(&request))
            .await?;
        let session = self
            .authenticator
            .sign_up(credentials)
            .await
            .inspect_err(|error| self.limits.count_refusal(error))?;
        Ok(Response::new(to_proto(session)))
    }

    async fn sign_in(&self, request: Request<Credentials>) -> Result<Response<Session>, Status> {
        let credentials =
            requests::Credentials::try_from(request.get_ref()).map_err(ApiError::from)?;
        let user = credentials.user_id.clone();
        let Attempt {
            turn,
            device,
            source,
        } = self
            .password_attempt(&user, &request, &request.get_ref().device)
            .await?;
        let session = self
            .authenticator
            .sign_in(turn, credentials, device)
            .await
            .inspect_err(|error| self.limits.count_refusal(error))?;
        self.limits.signed_in(&user, source).await;
        Ok(Response::new(to_proto(session)))
    }

    async fn sign_out(
        &self,
        request: Request<SignOutRequest>,
    ) -> Result<Response<SignOutResponse>, Status> {
        self.limits
            .sign_out_from(self.proxies.client_of(&request))
            .await?;
        self.authenticator.sign_out(request.metadata()).await?;
        Ok(Response::new(SignOutResponse {}))
    }

    async fn sign_out_everywhere(
        &self,
        request: Request<SignOutEverywhereRequest>,
    ) -> Result<Response<SignOutResponse>, Status> {
        self.authenticator
            .sign_out_everywhere(request.metadata())
            .await?;
        Ok(Response::new(SignOutResponse {}))
    }

    async fn change_password(
        &self,
        request: Request<ChangePasswordRequest>,
    ) -> Result<Response<Session>, Status> {
        let user = self.authenticator.caller(request.metadata()).await?;
        let change =
            requests::PasswordChange::try_from(request.get_ref()).map_err(ApiError::from)?;
        // Checking the old password is a sign-in attempt: a stolen token must not become a
        // faster way to guess the password than SignIn is.
        let Attempt { turn, source, .. } = self
            .password_attempt(&user, &request, &request.get_ref().device)
            .await?;
        let session = self
            .authenticator
            .change_password(turn, user.clone(), change)
            .await?;
        self.limits.signed_in(&user, source).await;
        Ok(Response::new(to_proto(session)))
    }
}

/// An attempt to check a password that the limits let through.
struct Attempt {
    turn: Turn,
    /// The device key the call showed, if the account holds it.
    device: Option<auth::Device>,
    /// Whose ladder the attempt was counted on: the device key's, else the address's.
    source: Source,
}

impl AuthService {
    /// What checking `user`'s password for `request` (SignIn, ChangePassword) goes through
    /// first, in this order: the per-address rate, a turn at the hashing, the device key
    /// `device` looked up (a read, so after the turn like every other cost of an attempt),
    /// and the failed-sign-in ladder, which counts the attempt as failed until
    /// `Limits::signed_in` says otherwise.
    async fn password_attempt<T>(
        &self,
        user: &UserId,
        request: &Request<T>,
        device: &str,
    ) -> Result<Attempt, ApiError> {
        let address = self.proxies.client_of(request);
        self.limits.sign_in_from(address).await?;
        let turn = self
            .authenticator
            .turn()
            .await
            .inspect_err(|error| self.limits.count_refusal(error))?;
        let device = self.authenticator.device_of(device, user).await?;
        let source = match &device {
            Some(device) => Source::Device(device.hash),
            None => Source::Address(address),
        };
        self.limits.sign_in_attempt(user, source).await?;
        Ok(Attempt {
            turn,
            device,
            source,
        })
    }
}

fn to_proto(session: auth::Session) -> Session {
    Session {
        user_id: session.user.to_string(),
        token: session.token,
        expires_at: session.expires_at,
        device: session.device,
    }
}
