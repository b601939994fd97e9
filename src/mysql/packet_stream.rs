//! `PacketStream`, the I/O half of the wire codec: one socket with its
//! read buffer and pending output, reading whole physical packets and
//! writing packets built with `wire/`. Both legs use it (client and
//! upstream server); the codec itself stays sans-IO.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wire::packet::{self, Header};
use crate::stream::Stream;

/// Bytes asked from the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// A stream with its read buffer and pending output.
pub(super) struct PacketStream {
    pub(super) stream: Stream,
    pub(super) buf: BytesMut,
    pub(super) out: BytesMut,
}

impl PacketStream {
    pub(super) fn new(stream: Stream) -> Self {
        PacketStream {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            out: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Reads one physical packet; end of stream is `UnexpectedEof`.
    pub(super) async fn read_packet(&mut self) -> io::Result<(Header, Bytes)> {
        loop {
            if let Some(packet) = packet::take_packet(&mut self.buf) {
                return Ok(packet);
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes into the buffer; end of stream is `UnexpectedEof`.
    pub(super) async fn fill(&mut self) -> io::Result<()> {
        self.buf.reserve(READ_CHUNK);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Queues `payload` as a packet starting at sequence `seq`; returns the
    /// next sequence id.
    pub(super) fn queue(&mut self, seq: u8, payload: &[u8]) -> u8 {
        packet::write_packet(&mut self.out, seq, payload)
    }

    /// Queues one physical packet as it came (a piece of a longer packet
    /// stays a piece).
    pub(super) fn queue_physical(&mut self, seq: u8, payload: &[u8]) {
        let header = Header {
            len: payload.len(),
            seq,
        };
        self.out.extend_from_slice(&header.encode());
        self.out.extend_from_slice(payload);
    }

    /// Writes everything queued.
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Queues and writes one packet; returns the next sequence id.
    pub(super) async fn send(&mut self, seq: u8, payload: &[u8]) -> io::Result<u8> {
        let next = self.queue(seq, payload);
        self.flush().await?;
        Ok(next)
    }
}
