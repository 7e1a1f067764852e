//! Serving clients whose HTTP/2 `:authority` is not `host[:port]`, as grpc-go servers (etcd,
//! Kine) serve them.
//!
//! Older grpc-go clients (Debian's etcdctl 3.4) send a unix socket's path, or for some commands
//! the endpoint's URL with its `http://`; Python's grpcio sends a percent-encoded path over unix
//! sockets; grpc-java sends the path. The HTTP/2 layer under tonic (h2) answers such a request
//! with RST_STREAM PROTOCOL_ERROR before any service sees it, and has no setting to relax that.
//! So this sits between the socket and HTTP/2: it reads the client's frames up to the end of
//! the first header block and decodes it (HPACK). A valid `:authority` (or none) means the
//! client is well-behaved: from then on bytes pass through untouched and unparsed. Otherwise
//! that block and every later one on the connection are re-encoded with a repaired authority
//! (the URL's host, or `localhost`), as literals that never touch the decoder's table, so
//! HTTP/2's decoder state stays in step with what it is given.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Rewritten header blocks are cut into frames no larger than HTTP/2's smallest maximum.
const MAX_FRAME: usize = 16_384;
/// A client frame larger than this is not one a server accepts; stop parsing and pass it on.
const LARGEST_FRAME: usize = 16 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Reading up to the first header block.
    Inspecting,
    /// The client's authority needs repair: every header block is re-encoded.
    Rewriting,
    /// Bytes pass through untouched.
    Transparent,
}

/// A header block being collected from HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    /// The stream dependency and weight of a HEADERS frame with PRIORITY.
    priority: Option<[u8; 5]>,
    fragments: BytesMut,
    /// The frames as they came, for passing on unchanged.
    original: BytesMut,
}

pub struct AuthorityRepair<S> {
    inner: S,
    mode: Mode,
    /// Read from the client, not yet processed.
    input: BytesMut,
    /// Processed, ready for HTTP/2 to read.
    output: BytesMut,
    preface_seen: bool,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
}

impl<S> AuthorityRepair<S> {
    pub fn new(inner: S) -> AuthorityRepair<S> {
        AuthorityRepair {
            inner,
            mode: Mode::Inspecting,
            input: BytesMut::new(),
            output: BytesMut::new(),
            preface_seen: false,
            block: None,
            decoder: loona_hpack::Decoder::new(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Moves what it can from `input` to `output`.
    fn process(&mut self) {
        if !self.preface_seen {
            let known = self.input.len().min(PREFACE.len());
            if self.input[..known] != PREFACE[..known] {
                // Not HTTP/2 in the clear (TLS, say): nothing to look at.
                self.mode = Mode::Transparent;
            } else if known < PREFACE.len() {
                return;
            } else {
                self.output
                    .extend_from_slice(&self.input.split_to(PREFACE.len()));
                self.preface_seen = true;
            }
        }
        while self.mode != Mode::Transparent && self.input.len() >= FRAME_HEADER {
            let length = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]);
            let length = length as usize;
            if length > LARGEST_FRAME {
                self.mode = Mode::Transparent;
                break;
            }
            if self.input.len() < FRAME_HEADER + length {
                return;
            }
            let frame = self.input.split_to(FRAME_HEADER + length).freeze();
            self.frame(frame);
        }
        if self.mode == Mode::Transparent {
            self.flush_block();
            let rest = self.input.split();
            self.output.extend_from_slice(&rest);
        }
    }

    fn frame(&mut self, frame: Bytes) {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER..];
        match kind {
            HEADERS => {
                self.flush_block();
                let Some((priority, fragment)) = header_fragment(flags, payload) else {
                    self.output.extend_from_slice(&frame);
                    return;
                };
                self.block = Some(Block {
                    stream,
                    end_stream: flags & END_STREAM != 0,
                    priority,
                    fragments: BytesMut::from(fragment),
                    original: BytesMut::from(&frame[..]),
                });
            }
            CONTINUATION if self.block.as_ref().is_some_and(|b| b.stream == stream) => {
                if let Some(block) = &mut self.block {
                    block.fragments.extend_from_slice(payload);
                    block.original.extend_from_slice(&frame);
                }
            }
            _ => {
                self.flush_block();
                self.output.extend_from_slice(&frame);
                return;
            }
        }
        if flags & END_HEADERS != 0 {
            self.finish_block();
        }
    }

    /// Passes on an unfinished block as it came (the connection is not one to repair).
    fn flush_block(&mut self) {
        if let Some(block) = self.block.take() {
            self.output.extend_from_slice(&block.original);
        }
    }

    fn finish_block(&mut self) {
        let Some(block) = self.block.take() else {
            return;
        };
        let mut fields = Vec::new();
        let decoded = self
            .decoder
            .decode_with_cb(&block.fragments, |name, value| {
                fields.push((name.into_owned(), value.into_owned()))
            });
        if decoded.is_err() {
            // HTTP/2 itself will find the block broken and say so.
            self.output.extend_from_slice(&block.original);
            self.mode = Mode::Transparent;
            return;
        }
        let mut repaired = false;
        for (name, value) in &mut fields {
            if name.as_slice() == b":authority"
                && let Some(authority) = repaired_authority(value)
            {
                *value = authority;
                repaired = true;
            }
        }
        match (self.mode, repaired) {
            (Mode::Inspecting, false) => {
                self.output.extend_from_slice(&block.original);
                self.mode = Mode::Transparent;
            }
            _ => {
                self.mode = Mode::Rewriting;
                let encoded = encode_literals(&fields);
                write_block(&mut self.output, &block, &encoded);
            }
        }
    }
}

/// The header block fragment of a HEADERS frame's payload, and its priority fields.
fn header_fragment(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut payload = payload;
    let mut padding = 0;
    if flags & PADDED != 0 {
        padding = *payload.first()? as usize;
        payload = &payload[1..];
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        priority = Some(payload.get(..5)?.try_into().ok()?);
        payload = &payload[5..];
    }
    let end = payload.len().checked_sub(padding)?;
    Some((priority, &payload[..end]))
}

/// A valid authority for one that is not: the host of a URL, or `localhost`. `None` when
/// `value` is fine as it is.
fn repaired_authority(value: &[u8]) -> Option<Vec<u8>> {
    let valid = |candidate: &[u8]| http::uri::Authority::try_from(candidate).is_ok();
    if valid(value) {
        return None;
    }
    let text = String::from_utf8_lossy(value);
    if let Some((_, rest)) = text.split_once("://") {
        let host = rest.split('/').next().unwrap_or_default();
        if !host.is_empty() && valid(host.as_bytes()) {
            return Some(host.as_bytes().to_vec());
        }
    }
    Some(b"localhost".to_vec())
}

/// `fields` as HPACK literals without indexing: they add nothing to the decoder's table.
fn encode_literals(fields: &[(Vec<u8>, Vec<u8>)]) -> BytesMut {
    let mut out = BytesMut::new();
    for (name, value) in fields {
        out.put_u8(0x00);
        for text in [name, value] {
            encode_integer(&mut out, text.len(), 7, 0x00);
            out.extend_from_slice(text);
        }
    }
    out
}

/// HPACK's integer with an `bits`-bit prefix, the prefix's other bits set to `high`.
fn encode_integer(out: &mut BytesMut, value: usize, bits: u32, high: u8) {
    let limit = (1usize << bits) - 1;
    if value < limit {
        out.put_u8(high | value as u8);
        return;
    }
    out.put_u8(high | limit as u8);
    let mut rest = value - limit;
    while rest >= 0x80 {
        out.put_u8((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.put_u8(rest as u8);
}

/// `block`'s frames again, carrying `encoded`: a HEADERS frame and as many CONTINUATION frames
/// as its size needs.
fn write_block(out: &mut BytesMut, block: &Block, encoded: &[u8]) {
    let mut first = BytesMut::new();
    if let Some(priority) = block.priority {
        first.extend_from_slice(&priority);
    }
    let room = MAX_FRAME - first.len();
    let (head, mut rest) = encoded.split_at(encoded.len().min(room));
    first.extend_from_slice(head);
    let mut flags = 0;
    if block.end_stream {
        flags |= END_STREAM;
    }
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    write_frame(out, HEADERS, flags, block.stream, &first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
        let flags = if tail.is_empty() { END_HEADERS } else { 0 };
        write_frame(out, CONTINUATION, flags, block.stream, chunk);
        rest = tail;
    }
}

fn write_frame(out: &mut BytesMut, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let length = payload.len() as u32;
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream);
    out.extend_from_slice(payload);
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityRepair<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::Transparent && this.input.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The client is gone; hand on what is left, then the end.
                this.mode = Mode::Transparent;
                this.flush_block();
                let rest = this.input.split();
                this.output.extend_from_slice(&rest);
                if this.output.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.input.extend_from_slice(read.filled());
            this.process();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    /// A client's bytes: the preface, a SETTINGS frame, and a request whose header block holds
    /// `authority` (plain literals, plus an indexed static entry).
    fn client_bytes(authority: &[u8]) -> Vec<u8> {
        let mut block = BytesMut::new();
        block.put_u8(0x83); // :method POST (static table)
        block.extend_from_slice(&encode_literals(&[
            (b":scheme".to_vec(), b"http".to_vec()),
            (b":path".to_vec(), b"/etcdserverpb.KV/Range".to_vec()),
            (b":authority".to_vec(), authority.to_vec()),
        ]));
        let mut out = BytesMut::from(PREFACE);
        write_frame(&mut out, 0x4, 0, 0, &[]);
        write_frame(&mut out, HEADERS, END_HEADERS, 1, &block);
        write_frame(&mut out, 0x0, END_STREAM, 1, b"\0\0\0\0\0");
        out.to_vec()
    }

    async fn through(bytes: Vec<u8>) -> Vec<u8> {
        let mut repaired = AuthorityRepair::new(&bytes[..]);
        let mut out = Vec::new();
        repaired.read_to_end(&mut out).await.expect("read");
        out
    }

    fn authority_of(bytes: &[u8]) -> Vec<u8> {
        let mut at = PREFACE.len();
        let mut decoder = loona_hpack::Decoder::new();
        while at + FRAME_HEADER <= bytes.len() {
            let length = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
            let payload = &bytes[at + FRAME_HEADER..at + FRAME_HEADER + length];
            if bytes[at + 3] == HEADERS {
                let mut authority = Vec::new();
                decoder
                    .decode_with_cb(payload, |name, value| {
                        if name.as_ref() == b":authority" {
                            authority = value.into_owned();
                        }
                    })
                    .expect("a valid header block");
                return authority;
            }
            at += FRAME_HEADER + length;
        }
        panic!("no HEADERS frame");
    }

    #[tokio::test]
    async fn valid_authorities_pass_through_untouched() {
        let bytes = client_bytes(b"127.0.0.1:2379");
        assert_eq!(through(bytes.clone()).await, bytes);
    }

    #[tokio::test]
    async fn paths_and_urls_become_valid_authorities() {
        for (sent, repaired) in [
            (&b"/run/etcdshim.sock"[..], &b"localhost"[..]),
            (b"%2Frun%2Fetcdshim.sock", b"localhost"),
            (b"unix:///run/etcdshim.sock", b"localhost"),
            (b"http://127.0.0.1:2379", b"127.0.0.1:2379"),
        ] {
            let out = through(client_bytes(sent)).await;
            assert_eq!(
                authority_of(&out),
                repaired,
                "{}",
                String::from_utf8_lossy(sent)
            );
            assert!(out.ends_with(b"\0\0\0\0\0"), "the request's body follows");
        }
    }

    #[test]
    fn long_integers_take_continuation_bytes() {
        let mut out = BytesMut::new();
        encode_integer(&mut out, 1337, 5, 0);
        assert_eq!(&out[..], [31, 154, 10], "RFC 7541 C.1.2");
    }
}
