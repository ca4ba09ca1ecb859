//! A gRPC-web client on the browser's `fetch`, for unary and server-streaming calls with
//! binary protobuf (`application/grpc-web+proto`), the only kinds the app makes.
//!
//! It replaces tonic's generic client with a gRPC-web transport under it: that stack
//! (HTTP types, bodies, a client per service with a state machine per method) was about a
//! seventh of the bundle for what is, on the wire, one POST whose body is a sequence of
//! frames. Failures come back as `tonic::Status`, with the same codes tonic gave: a failed
//! fetch is UNKNOWN, a missing final status UNKNOWN, HTTP errors without a gRPC status are
//! mapped as gRPC's HTTP mapping says.
//!
//! A frame is one flag byte, a 4-byte big-endian length and the payload; flag bit 0x80
//! marks the trailers (HTTP/1 header lines with `grpc-status`, `grpc-message` and
//! `grpc-status-details-bin`), which end the response. A response with no body may carry
//! the status in its headers instead ("trailers only").

use prost::Message;
use tonic::{Code, Status};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, ReadableStreamDefaultReader, RequestInit, Response};

/// One call's response as it arrives. Dropping it aborts the fetch, which closes a stream
/// on the server too.
pub struct Call {
    reader: Option<ReadableStreamDefaultReader>,
    abort: AbortController,
    /// Bytes received and not yet taken as frames.
    buffer: Vec<u8>,
    /// The final status, once known; the call is over then.
    status: Option<Status>,
}

impl Drop for Call {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

/// Calls `path` (e.g. `/chat.Chat/Send`) on `base_url` with `message`, as the holder of
/// `token` when given, and returns the response to read with [`Call::next_payload`].
pub async fn start(
    base_url: &str,
    path: &str,
    token: Option<&str>,
    message: &impl Message,
) -> Result<Call, Status> {
    start_encoded(base_url, path, token, message.encode_to_vec()).await
}

/// [`start`] with the request already encoded. Everything that waits is written once, not
/// once per message type: the per-type code is only the encoding and decoding.
pub async fn start_encoded(
    base_url: &str,
    path: &str,
    token: Option<&str>,
    encoded: Vec<u8>,
) -> Result<Call, Status> {
    let abort = AbortController::new().map_err(js_error)?;
    let headers = Headers::new().map_err(js_error)?;
    headers
        .set("content-type", "application/grpc-web+proto")
        .map_err(js_error)?;
    headers
        .set("accept", "application/grpc-web+proto")
        .map_err(js_error)?;
    headers.set("x-grpc-web", "1").map_err(js_error)?;
    // A token that cannot be a header value (not visible ASCII) is left off, so the server
    // refuses the call as unauthenticated, as it does any bad token.
    if let Some(token) = token
        && token.bytes().all(|byte| (0x21..0x7f).contains(&byte))
    {
        headers
            .set(
                chat_core::wire::AUTHORIZATION,
                &format!("{} {token}", chat_core::wire::BEARER),
            )
            .map_err(js_error)?;
    }

    let mut body = Vec::with_capacity(5 + encoded.len());
    body.push(0);
    body.extend_from_slice(
        &u32::try_from(encoded.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    body.extend_from_slice(&encoded);
    let body = js_sys::Uint8Array::from(body.as_slice());

    let init = RequestInit::new();
    init.set_method("POST");
    init.set_headers(&headers);
    init.set_body(&body);
    init.set_signal(Some(&abort.signal()));
    let window = web_sys::window().ok_or_else(|| Status::unknown("no window to fetch from"))?;
    let response: Response =
        JsFuture::from(window.fetch_with_str_and_init(&format!("{base_url}{path}"), &init))
            .await
            .map_err(js_error)?
            .unchecked_into();

    let mut call = Call {
        reader: None,
        abort,
        buffer: Vec::new(),
        status: None,
    };
    let headers = response.headers();
    let header = |name: &str| headers.get(name).ok().flatten();
    // Trailers only: the status came in the headers, and there is no message.
    if let Some(code) = header("grpc-status") {
        call.status = Some(status_from(
            &code,
            header("grpc-message").as_deref(),
            header("grpc-status-details-bin").as_deref(),
        ));
        return Ok(call);
    }
    if response.status() != 200 {
        let code = match response.status() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        };
        return Err(Status::new(
            code,
            format!("HTTP status {} without a gRPC status", response.status()),
        ));
    }
    let content_type = header("content-type").unwrap_or_default();
    if !content_type.starts_with("application/grpc-web") || content_type.contains("text") {
        return Err(Status::unknown(format!(
            "unexpected content type \"{content_type}\""
        )));
    }
    let body = response
        .body()
        .ok_or_else(|| Status::unknown("a gRPC-web response without a body"))?;
    call.reader = Some(body.get_reader().unchecked_into());
    Ok(call)
}

impl Call {
    /// The next message's bytes (to [`decode`]); `Ok(None)` when the call ended with status
    /// OK, the status as the error when it ended otherwise.
    pub async fn next_payload(&mut self) -> Result<Option<Vec<u8>>, Status> {
        loop {
            if let Some(status) = &self.status {
                return if status.code() == Code::Ok {
                    Ok(None)
                } else {
                    Err(status.clone())
                };
            }
            if let Some(frame) = self.take_frame() {
                let (flag, payload) = frame?;
                if flag & 0x80 != 0 {
                    self.status = Some(trailers(&payload));
                    continue;
                }
                if flag & 0x01 != 0 {
                    return Err(Status::internal(
                        "a compressed message, which was not asked for",
                    ));
                }
                return Ok(Some(payload));
            }
            self.read_more().await?;
        }
    }

    /// The bytes of the one message of a unary call, once the call has ended with status OK.
    pub async fn unary_payload(mut self) -> Result<Vec<u8>, Status> {
        let payload = self
            .next_payload()
            .await?
            .ok_or_else(|| Status::internal("the call returned no message"))?;
        // The final status comes after the message, and decides.
        match self.next_payload().await? {
            None => Ok(payload),
            Some(_) => Err(Status::internal("a unary call returned two messages")),
        }
    }

    /// The first whole frame in the buffer, if one has arrived.
    fn take_frame(&mut self) -> Option<Result<(u8, Vec<u8>), Status>> {
        let header = self.buffer.get(..5)?;
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let Ok(length) = usize::try_from(length) else {
            return Some(Err(Status::internal("a frame longer than memory")));
        };
        let Some(end) = 5usize.checked_add(length) else {
            return Some(Err(Status::internal("a frame longer than memory")));
        };
        if self.buffer.len() < end {
            return None;
        }
        let flag = self.buffer[0];
        let payload = self.buffer[5..end].to_vec();
        self.buffer.drain(..end);
        Some(Ok((flag, payload)))
    }

    /// Waits for the next chunk of the body. The body ending before the trailers ends the
    /// call as UNKNOWN (the response was cut short).
    async fn read_more(&mut self) -> Result<(), Status> {
        let Some(reader) = &self.reader else {
            self.status = Some(missing_status());
            return Ok(());
        };
        let chunk = JsFuture::from(reader.read()).await.map_err(js_error)?;
        let done = js_sys::Reflect::get(&chunk, &JsValue::from_str("done"))
            .map_err(js_error)?
            .is_truthy();
        if done {
            self.reader = None;
            self.status = Some(missing_status());
            return Ok(());
        }
        let value = js_sys::Reflect::get(&chunk, &JsValue::from_str("value")).map_err(js_error)?;
        let bytes: js_sys::Uint8Array = value
            .dyn_into()
            .map_err(|_| Status::internal("a body chunk that is not bytes"))?;
        let start = self.buffer.len();
        self.buffer.resize(start + bytes.length() as usize, 0);
        bytes.copy_to(&mut self.buffer[start..]);
        Ok(())
    }
}

/// A message of type `T` from its bytes.
pub fn decode<T: Message + Default>(payload: &[u8]) -> Result<T, Status> {
    T::decode(payload).map_err(|error| Status::internal(format!("undecodable message: {error}")))
}

fn missing_status() -> Status {
    Status::unknown("the response ended without a final gRPC status")
}

/// A failed fetch or read (network down, server gone, aborted): UNKNOWN, as tonic's
/// gRPC-web client reported it.
fn js_error(error: JsValue) -> Status {
    let text = js_sys::JSON::stringify(&error)
        .ok()
        .and_then(|text| text.as_string())
        .filter(|text| text != "{}")
        .or_else(|| {
            error
                .dyn_ref::<js_sys::Error>()
                .map(|e| e.to_string().into())
        })
        .unwrap_or_default();
    Status::unknown(format!("JS API error: {text}"))
}

/// The status in a trailer frame: HTTP/1 header lines, names in any case.
fn trailers(block: &[u8]) -> Status {
    let text = String::from_utf8_lossy(block);
    let mut code = None;
    let mut message = None;
    let mut details = None;
    for line in text.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "grpc-status" => code = Some(value),
            "grpc-message" => message = Some(value),
            "grpc-status-details-bin" => details = Some(value),
            _ => {}
        }
    }
    match code {
        Some(code) => status_from(code, message, details),
        None => missing_status(),
    }
}

/// A status from its three gRPC header values as they are on the wire.
fn status_from(code: &str, message: Option<&str>, details: Option<&str>) -> Status {
    let Ok(code) = code.trim().parse::<i32>() else {
        return Status::unknown(format!("an unreadable grpc-status \"{code}\""));
    };
    let message = message.map(percent_decoded).unwrap_or_default();
    let details = details.and_then(base64_decoded).unwrap_or_default();
    Status::with_details(Code::from_i32(code), message, details.into())
}

/// `grpc-message` is percent-encoded UTF-8; a malformed escape stays as it is.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|&byte| (byte as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                // Two hex digits make at most 0xFF.
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64, padded or not (gRPC's `-bin` values may be either); `None` if malformed.
fn base64_decoded(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut bits = 0u32;
    let mut count = 0;
    for byte in text.trim_end_matches('=').bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_give_the_status_with_its_message_and_details() {
        let status = trailers(
            b"grpc-status:8\r\nGrpc-Message: sending%20too%20fast%3B try %E2%9C%93\r\n\
              grpc-status-details-bin: CAgSAWE\r\n",
        );
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "sending too fast; try ✓");
        assert_eq!(status.details(), b"\x08\x08\x12\x01a");
        assert_eq!(trailers(b"grpc-status: 0\r\n").code(), Code::Ok);
        assert_eq!(trailers(b"grpc-message: x\r\n").code(), Code::Unknown);
        assert_eq!(trailers(b"grpc-status: nine\r\n").code(), Code::Unknown);
    }

    #[test]
    fn base64_and_percent_decoding_take_what_grpc_sends_and_refuse_garbage() {
        assert_eq!(base64_decoded("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decoded("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(
            base64_decoded("/+8A").as_deref(),
            Some(&[0xff, 0xef, 0][..])
        );
        assert_eq!(base64_decoded("a b"), None);
        assert_eq!(percent_decoded("100%25 %zz %"), "100% %zz %");
    }
}
