//! Frames read from a connection's byte stream into a buffer that is released whenever
//! a read would block between frames, so that an idle connection holds no read buffer.

use std::future::Future;
use std::task::Poll;

use bytes::BytesMut;
use switchboard_proto::{Frame, FrameCodec, ProtoError};
use tokio::io::AsyncReadExt;
use tokio_util::codec::Decoder;

use super::transport::Readable;

/// Reads frames from a byte stream into a buffer that is released while idle.
///
/// It holds no codec: the hub's is cloned by whoever decodes a batch of frames, so that
/// a waiting connection does not keep a copy of its own.
pub(super) struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
    /// The last read filled all the room the buffer had.
    streaming: bool,
}

/// A read buffer grown past this is given back once it is empty.
const KEEP_READ_BUFFER: usize = 16 * 1024;
/// Bytes asked of the socket per read while frames stream in.
const READ_CHUNK: usize = switchboard_proto::batch::READ_CHUNK_BYTES;
/// Bytes asked of the socket per read otherwise.
const SMALL_READ: usize = 4 * 1024;

impl<R: Readable> FrameReader<R> {
    pub(super) fn new(reader: R) -> Self {
        FrameReader {
            reader,
            buf: BytesMut::new(),
            streaming: false,
        }
    }

    /// Whether bytes are waiting in the buffer (perhaps a frame, perhaps part of one).
    pub(super) fn has_bytes(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The byte stream itself, for what comes before frames (the preface). Bytes read
    /// from it bypass the buffer, so only while the buffer is empty.
    pub(super) fn unbuffered(&mut self) -> &mut R {
        debug_assert!(self.buf.is_empty());
        &mut self.reader
    }

    /// The next frame if it is already complete in the buffer, without reading.
    pub(super) fn buffered_frame(
        &mut self,
        codec: &mut FrameCodec,
    ) -> Result<Option<Frame>, ProtoError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let frame = codec.decode(&mut self.buf)?;
        if frame.is_some() && self.buf.is_empty() && self.buf.capacity() > KEEP_READ_BUFFER {
            self.buf = BytesMut::new();
        }
        Ok(frame)
    }

    /// Reads more bytes into the buffer; 0 at the end of the stream. Cancel-safe.
    pub(super) async fn fill(&mut self) -> std::io::Result<usize> {
        loop {
            // A connection that sends a frame now and then reads into a small buffer;
            // once a read fills all the room it had, frames are streaming in and reads
            // get room for a burst (a few KiB would mean one system call per handful of
            // 1 KiB publishes).
            let want = if self.streaming {
                READ_CHUNK
            } else {
                SMALL_READ
            };
            if self.buf.capacity() - self.buf.len() < want / 4 {
                self.buf.reserve(want);
            }
            let room = self.buf.capacity() - self.buf.len();
            // Between frames, a read that would block means the peer has nothing more to
            // say for now: that is when the buffer goes (a partial frame keeps it).
            let between_frames = self.buf.is_empty();
            let read = {
                let mut read = std::pin::pin!(self.reader.read_buf(&mut self.buf));
                std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
                    Poll::Pending if between_frames => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(result) => Poll::Ready(Some(result)),
                })
                .await
            };
            let Some(read) = read else {
                // Idle: wait for the socket without a buffer (several KiB per connection
                // otherwise), and take one again once bytes arrive.
                self.buf = BytesMut::new();
                std::future::poll_fn(|cx| self.reader.poll_read_ready(cx)).await?;
                continue;
            };
            let read = read?;
            self.streaming = read == room;
            return Ok(read);
        }
    }

    /// The next frame, `None` at a clean end of stream.
    pub(super) async fn read_frame(
        &mut self,
        codec: &mut FrameCodec,
    ) -> Result<Option<Frame>, ProtoError> {
        loop {
            if let Some(frame) = self.buffered_frame(codec)? {
                return Ok(Some(frame));
            }
            if self.fill().await? == 0 {
                return self.ended();
            }
        }
    }

    /// What the end of the stream means: a clean close between frames, or a truncated
    /// frame.
    pub(super) fn ended(&self) -> Result<Option<Frame>, ProtoError> {
        if self.buf.is_empty() {
            Ok(None)
        } else {
            Err(ProtoError::Truncated {
                needed: self.buf.len() + 1,
                have: self.buf.len(),
            })
        }
    }

    /// Bytes of buffer the reader holds (for tests of idle memory).
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchboard_proto::packet::{Heartbeat, Packet};
    use switchboard_proto::{Flags, Limits};
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::super::transport::Transport;
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn the_read_buffer_is_released_while_no_bytes_come_and_taken_again_when_they_do() {
        let (mut client, server) = pair().await;
        let (read_half, _write_half) = server.into_halves();
        let mut reader = FrameReader::new(read_half);
        let mut codec = FrameCodec::new(Limits::default());
        let mut frames = BytesMut::new();
        for request_id in 1..=2 {
            codec
                .encode_packet(
                    request_id,
                    Flags::empty(),
                    &Packet::Heartbeat(Heartbeat),
                    &mut frames,
                )
                .unwrap();
        }
        // One frame and half of the next: the partial frame keeps the buffer.
        let half = frames.len() * 3 / 4;
        client.write_all(&frames[..half]).await.unwrap();
        let first = reader.read_frame(&mut codec).await.unwrap().unwrap();
        assert_eq!(first.request_id, 1);
        let waiting = tokio::time::timeout(Duration::from_millis(50), reader.fill()).await;
        assert!(waiting.is_err(), "nothing more was sent");
        assert!(reader.buffer_capacity() > 0);

        client.write_all(&frames[half..]).await.unwrap();
        let second = reader.read_frame(&mut codec).await.unwrap().unwrap();
        assert_eq!(second.request_id, 2);
        // Between frames, with nothing to read, the buffer goes.
        let waiting = tokio::time::timeout(Duration::from_millis(50), reader.fill()).await;
        assert!(waiting.is_err(), "nothing more was sent");
        assert_eq!(reader.buffer_capacity(), 0);

        // Bytes arriving wake the idle reader, which takes a buffer again.
        let mut more = BytesMut::new();
        codec
            .encode_packet(3, Flags::empty(), &Packet::Heartbeat(Heartbeat), &mut more)
            .unwrap();
        client.write_all(&more).await.unwrap();
        let third = tokio::time::timeout(Duration::from_secs(5), reader.read_frame(&mut codec))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(third.request_id, 3);

        drop(client);
        let end = tokio::time::timeout(Duration::from_secs(5), reader.read_frame(&mut codec))
            .await
            .unwrap()
            .unwrap();
        assert!(end.is_none(), "a clean end of stream");
    }
}
