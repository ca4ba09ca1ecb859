//! The protobuf codec of every generated client and server stub: tonic's prost codec with
//! smaller buffers.
//!
//! tonic allocates its encoding buffer up front for every call, 8 KiB by default, and keeps
//! it for as long as the call lives. A chat server holds one Stream call per open browser
//! tab, mostly idle, and its events (a heartbeat, one message) are a few hundred bytes: at
//! 10,000 tabs the default buffers alone would be 80 MiB. The buffer still grows, by the same
//! step, for a large response (a History page), so nothing is limited by this.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// The first size of a call's buffer, and the step it grows by.
const BUFFER_SIZE: usize = 1024;
/// How much a streaming response gathers before handing it to the transport: tonic's default.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// Named in `build.rs` as the codec of every generated service.
#[derive(Debug, Clone)]
pub struct ChatCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ChatCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ChatCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
