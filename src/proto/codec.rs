//! The gRPC codec of every etcd service: prost's, except that a message's buffer is sized once.
//!
//! tonic encodes each message into a buffer of 8 KiB that prost grows by doubling as it writes.
//! A page of 10,000 objects of 1 KiB is a 10 MB message: the buffer was reallocated eleven
//! times and 16 MB copied for it; profiled on SQLite, that growth took 17% of the server's time
//! (docs/benchmarks.md, "Pages of 10,000: the response's buffer"). Here the encoder reserves the
//! message's exact length (`encoded_len`, a walk over the lengths only) before writing it.
//! prost's `encode` walks the lengths once more to check the space; its `encode_raw`, which
//! would not, is meant for prost's own implementations only, so it is not called here.
//! Decoding is prost's, unchanged.

// The generated code beside it is exempt from lints; this file is ours.
#![warn(clippy::all, missing_docs)]

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic_prost::ProstDecoder;

/// Named by build.rs as the codec of the generated servers and clients.
#[derive(Debug, Clone)]
pub struct SizedCodec<T, U> {
    types: PhantomData<(T, U)>,
}

impl<T, U> Default for SizedCodec<T, U> {
    fn default() -> Self {
        SizedCodec { types: PhantomData }
    }
}

impl<T, U> Codec for SizedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SizedEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SizedEncoder {
            message: PhantomData,
        }
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Encodes a message into a buffer reserved at the message's length.
#[derive(Debug, Clone)]
pub struct SizedEncoder<T> {
    message: PhantomData<T>,
}

impl<T: Message> Encoder for SizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|error| Status::internal(format!("encoding a message: {error}")))
    }
}
