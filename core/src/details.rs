//! Reading gRPC's standard error details on the client side: the `ErrorInfo` (a refusal's
//! [`Reason`](crate::reason::Reason)) and the `RetryInfo` (how long to wait) that the server
//! packs into a status's `grpc-status-details-bin` as a `google.rpc.Status`.
//!
//! Only these two details are decoded, with a few hand-written messages of the same field
//! numbers as `google/rpc/status.proto` and `error_details.proto`. A general decoder of every
//! standard detail (tonic-types) would put all their decoders into the browser bundle,
//! where only these two are ever read. Fields not declared here are skipped, as protobuf
//! skips any unknown field.

use std::time::Duration;

use prost::Message;

/// `google.rpc.Status`, only its details.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.ErrorInfo`, without its metadata map (the server sends none).
#[derive(Clone, PartialEq, Message)]
struct ErrorInfoPb {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
struct RetryInfoPb {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<DurationPb>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
struct DurationPb {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

const ERROR_INFO: &str = "google.rpc.ErrorInfo";
const RETRY_INFO: &str = "google.rpc.RetryInfo";

/// The cause of a refusal as `ErrorInfo` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    pub domain: String,
    pub reason: String,
}

/// The details this product reads from a status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusDetails {
    pub error_info: Option<ErrorInfo>,
    /// `RetryInfo`'s delay; a negative one (malformed) reads as no wait.
    pub retry_delay: Option<Duration>,
}

impl StatusDetails {
    /// The details in `bytes` (a status's `details()`, the encoded `google.rpc.Status`).
    /// Anything undecodable reads as no details: the status code and message still stand.
    pub fn decode(bytes: &[u8]) -> Self {
        let mut found = StatusDetails::default();
        let Ok(status) = RpcStatus::decode(bytes) else {
            return found;
        };
        for any in status.details {
            // An `Any`'s type is named by the last segment of its URL.
            let name = any.type_url.rsplit('/').next().unwrap_or_default();
            if name == ERROR_INFO && found.error_info.is_none() {
                if let Ok(info) = ErrorInfoPb::decode(any.value.as_slice()) {
                    found.error_info = Some(ErrorInfo {
                        domain: info.domain,
                        reason: info.reason,
                    });
                }
            } else if name == RETRY_INFO
                && found.retry_delay.is_none()
                && let Ok(RetryInfoPb {
                    retry_delay: Some(delay),
                }) = RetryInfoPb::decode(any.value.as_slice())
            {
                found.retry_delay = Some(duration(delay));
            }
        }
        found
    }
}

/// A protobuf `Duration` as a std one, never panicking: negative parts count as zero, and
/// nanoseconds beyond a second (out of protobuf's range) are cut to just under one.
fn duration(delay: DurationPb) -> Duration {
    let seconds = u64::try_from(delay.seconds).unwrap_or(0);
    let nanos = u32::try_from(delay.nanos).unwrap_or(0).min(999_999_999);
    Duration::new(seconds, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(name: &str, value: impl Message) -> Any {
        Any {
            type_url: format!("type.googleapis.com/{name}"),
            value: value.encode_to_vec(),
        }
    }

    #[test]
    fn error_info_and_retry_info_are_read_and_other_details_skipped() {
        let status = RpcStatus {
            details: vec![
                any("google.rpc.DebugInfo", DurationPb::default()),
                any(
                    ERROR_INFO,
                    ErrorInfoPb {
                        reason: "SEND_RATE".into(),
                        domain: "chat".into(),
                    },
                ),
                any(
                    RETRY_INFO,
                    RetryInfoPb {
                        retry_delay: Some(DurationPb {
                            seconds: 1,
                            nanos: 500_000_000,
                        }),
                    },
                ),
            ],
        };
        let details = StatusDetails::decode(&status.encode_to_vec());
        assert_eq!(
            details.error_info,
            Some(ErrorInfo {
                domain: "chat".into(),
                reason: "SEND_RATE".into()
            })
        );
        assert_eq!(details.retry_delay, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn garbage_and_out_of_range_values_do_not_panic() {
        assert_eq!(StatusDetails::decode(b""), StatusDetails::default());
        assert_eq!(
            StatusDetails::decode(b"\xff\xff\xff not protobuf"),
            StatusDetails::default()
        );
        let status = RpcStatus {
            details: vec![any(
                RETRY_INFO,
                RetryInfoPb {
                    retry_delay: Some(DurationPb {
                        seconds: -5,
                        nanos: i32::MAX,
                    }),
                },
            )],
        };
        let details = StatusDetails::decode(&status.encode_to_vec());
        assert_eq!(details.retry_delay, Some(Duration::new(0, 999_999_999)));
        assert_eq!(details.error_info, None);
    }
}
