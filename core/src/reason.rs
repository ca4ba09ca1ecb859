//! Why a call was refused, as a code a program can act on: the server puts it in the `reason`
//! of gRPC's standard `ErrorInfo` detail (domain [`DOMAIN`]), beside a `RetryInfo` when waiting
//! helps, and clients read it there instead of matching the words of the status message.

/// The `ErrorInfo` domain of every reason below.
pub const DOMAIN: &str = "chat";

/// A refusal's machine-readable cause. Each has a fixed upper-case name on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// SignIn: no account has this user id and password (the same for an unknown user id).
    WrongCredentials,
    /// The bearer token is missing, malformed, unknown, expired or signed out: sign in again.
    TokenInvalid,
    /// Too many failed sign-ins for this account from where the call came: wait (RetryInfo).
    AccountThrottled,
    /// Too many sign-in or sign-up attempts from this address: wait (RetryInfo).
    AddressThrottled,
    /// The server is checking as many passwords as it can and as many attempts as it lets
    /// wait are already waiting: try again shortly (RetryInfo).
    SignInQueueFull,
    /// Sending faster than the per-user send rate: wait (RetryInfo), then send the same.
    SendRate,
    /// As many streams open as one user may hold: close one.
    TooManyStreams,
    /// New: the caller or another member already belongs to as many chats as one account
    /// may; waiting does not help.
    TooManyChats,
    /// Starting chats faster than the per-user rate of New: wait (RetryInfo).
    NewChatRate,
    /// New: a member blocked the caller, or the caller blocked a member; waiting does not
    /// help (the blocker must unblock).
    Blocked,
    /// Block: the caller already blocked as many accounts as one account may.
    TooManyBlocked,
    /// Typing calls faster than the per-user rate: wait (RetryInfo); nobody was told.
    TypingRate,
    /// The other calls (History, List, Search, MarkRead, ...) faster than the per-user rate:
    /// wait (RetryInfo), then make the same call.
    CallRate,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::WrongCredentials,
        Reason::TokenInvalid,
        Reason::AccountThrottled,
        Reason::AddressThrottled,
        Reason::SignInQueueFull,
        Reason::SendRate,
        Reason::TooManyStreams,
        Reason::TooManyChats,
        Reason::NewChatRate,
        Reason::Blocked,
        Reason::TooManyBlocked,
        Reason::TypingRate,
        Reason::CallRate,
    ];

    /// The name on the wire, as `ErrorInfo` wants it (`[A-Z0-9_]+`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::WrongCredentials => "WRONG_CREDENTIALS",
            Reason::TokenInvalid => "TOKEN_INVALID",
            Reason::AccountThrottled => "ACCOUNT_THROTTLED",
            Reason::AddressThrottled => "ADDRESS_THROTTLED",
            Reason::SignInQueueFull => "SIGN_IN_QUEUE_FULL",
            Reason::SendRate => "SEND_RATE",
            Reason::TooManyStreams => "TOO_MANY_STREAMS",
            Reason::TooManyChats => "TOO_MANY_CHATS",
            Reason::NewChatRate => "NEW_CHAT_RATE",
            Reason::Blocked => "BLOCKED",
            Reason::TooManyBlocked => "TOO_MANY_BLOCKED",
            Reason::TypingRate => "TYPING_RATE",
            Reason::CallRate => "CALL_RATE",
        }
    }

    /// The reason named `name` in domain `domain`; `None` for anything this build does not
    /// know (a newer server's reason, another service's domain).
    pub fn parse(domain: &str, name: &str) -> Option<Self> {
        if domain != DOMAIN {
            return None;
        }
        Self::ALL.into_iter().find(|reason| reason.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_back_from_its_wire_name_and_only_in_its_domain() {
        for reason in Reason::ALL {
            let name = reason.as_str();
            assert!(name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
            assert_eq!(Reason::parse(DOMAIN, name), Some(reason));
            assert_eq!(Reason::parse("elsewhere", name), None);
        }
        assert_eq!(Reason::parse(DOMAIN, "wrong_credentials"), None);
    }
}
