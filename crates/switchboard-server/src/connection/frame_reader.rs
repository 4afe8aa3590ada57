//! Frames read from a connection's byte stream into a buffer that is released whenever
//! a read would block between frames, so that an idle connection holds no read buffer.
//!
//! A frame still arriving is the peer's promise, not its bytes: its buffer grows only as
//! the bytes come, a large one is admitted against the server-wide [`FrameBudget`]
//! before more of it is read, and the time it started is kept so that the request loop
//! can give it a deadline.
//!
//! A large frame (from [`OWN_BUFFER_FRAME_LEN`] bytes) is read into a buffer of its own,
//! of about its length, once its prefix is in: the hub keeps a large body as it was read,
//! shared by history and every receiver rather than copied, and a body must not keep a
//! read buffer of other frames alive. Reads then stop at the end of that frame, with a
//! little room to see the head of the next one. Such buffers come from the server's
//! [`FrameBuffers`](switchboard_proto::frame_buffers::FrameBuffers) (kept with the
//! [`FrameBudget`]) and go back there once the frame's last view is dropped.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use switchboard_proto::codec::declared_frame_len;
use switchboard_proto::{Frame, FrameCodec, FrameHead, ProtoError};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use super::frame_budget::{FrameBudget, NoRoom, UNCOUNTED_FRAME_LEN};
use super::transport::Readable;

/// A large frame that arrived while the server's budget for partial frames was spent.
#[derive(Debug)]
pub(super) struct BusyFrame {
    pub head: FrameHead,
    pub no_room: NoRoom,
}

impl BusyFrame {
    /// The message of the ERROR and DISCONNECT refusing it.
    pub(super) fn message(&self) -> String {
        format!(
            "server busy: a frame of {} bytes does not fit in what is left of the {} bytes \
             the server keeps for large frames being read ({} held); try again later",
            self.no_room.len, self.no_room.limit, self.no_room.held
        )
    }
}

/// Why no frame could be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The bytes are not a frame, or the stream failed.
    Frame(ProtoError),
    Busy(Box<BusyFrame>),
}

impl From<ProtoError> for ReadError {
    fn from(error: ProtoError) -> Self {
        ReadError::Frame(error)
    }
}

impl From<std::io::Error> for ReadError {
    fn from(error: std::io::Error) -> Self {
        ReadError::Frame(ProtoError::Io(error))
    }
}

/// Reads frames from a byte stream into a buffer that is released while idle.
///
/// It holds no codec: the hub's is cloned by whoever decodes a batch of frames, so that
/// a waiting connection does not keep a copy of its own.
pub(super) struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
    /// The last read filled all the room the buffer had.
    streaming: bool,
    /// The buffer is the own buffer of the large frame at its front (see the module's
    /// documentation); it is never grown.
    own: bool,
    /// The last frame had a buffer of its own: the next read into the shared buffer asks
    /// for little, in case it is the head of another large frame (whose bytes would be
    /// copied to its own buffer).
    after_own: bool,
    /// What the partial frame at the front of the buffer holds of the budget (its
    /// declared length), given back when it is decoded or the reader goes.
    charge: Option<Charge>,
    /// When the reader first waited for the rest of the frame at the front of the
    /// buffer ([`millis_now`]); `None` between frames. Four bytes rather than an
    /// `Instant`'s sixteen: every idle connection holds a reader.
    frame_started: Option<NonZeroU32>,
    budget: Arc<FrameBudget>,
}

/// Budget held by a large frame still arriving; given back when dropped.
struct Charge {
    budget: Arc<FrameBudget>,
    len: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give_back(self.len);
    }
}

/// Milliseconds since the first call, wrapping after 49 days (differences stay right
/// as long as no frame takes that long, which the frame deadline sees to).
fn millis_now() -> u32 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // Truncation is the wrap-around.
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u32
}

/// Milliseconds from `started` to `now`, both of [`millis_now`]. A start that reads as
/// later than now (the clock wrapped to 0, which a start cannot be, and was recorded as
/// 1) counts as no time.
fn millis_between(started: NonZeroU32, now: u32) -> u64 {
    let waited = now.wrapping_sub(started.get());
    if waited > u32::MAX / 2 {
        0
    } else {
        u64::from(waited)
    }
}

fn whole_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A read buffer grown past this is given back once it is empty.
const KEEP_READ_BUFFER: usize = 16 * 1024;
/// Bytes asked of the socket per read while frames stream in.
const READ_CHUNK: usize = switchboard_proto::batch::READ_CHUNK_BYTES;
/// Bytes asked of the socket per read otherwise.
const SMALL_READ: usize = 4 * 1024;
/// Frames at least this long are read into a buffer of their own (see the module's
/// documentation): the size from which the hub keeps a body apart from its MESSAGE head.
pub(super) const OWN_BUFFER_FRAME_LEN: usize = crate::hub::message::BODY_APART_BYTES;
/// Frames longer than this grow in the shared buffer as their bytes come instead: a
/// buffer of the declared length is allocated at once only up to this length, beyond
/// which what a frame declares is no measure of what it will send.
const OWN_BUFFER_MAX_FRAME_LEN: usize = 1024 * 1024;
/// Room a frame's own buffer has past its end, so that the read finishing the frame also
/// brings the head of the next one (moved on into a buffer of its own if it is large
/// too): one read per frame while large frames stream in.
const NEXT_HEAD_ROOM: usize = 1024;

impl<R: Readable> FrameReader<R> {
    pub(super) fn new(reader: R, budget: Arc<FrameBudget>) -> Self {
        FrameReader {
            reader,
            buf: BytesMut::new(),
            streaming: false,
            own: false,
            after_own: false,
            charge: None,
            frame_started: None,
            budget,
        }
    }

    /// When the wait for more bytes ends: at `heartbeat` (the heartbeat deadline), or
    /// sooner when the frame at the front of the buffer, still arriving, must be complete
    /// (`frame_limit` after the reader first waited for its rest).
    pub(super) fn wait_deadline(&mut self, heartbeat: Instant, frame_limit: Duration) -> Instant {
        if self.buf.is_empty() {
            return heartbeat;
        }
        let now_ms = millis_now();
        let started = *self
            .frame_started
            .get_or_insert(NonZeroU32::new(now_ms).unwrap_or(NonZeroU32::MIN));
        let waited_ms = millis_between(started, now_ms);
        let left_ms = whole_millis(frame_limit).saturating_sub(waited_ms);
        heartbeat.min(Instant::now() + Duration::from_millis(left_ms))
    }

    /// Whether the reader is between frames with no buffer: nothing of a frame is read,
    /// so the connection may wait without its task (see `parking`).
    pub(super) fn is_between_frames(&self) -> bool {
        self.buf.is_empty() && !self.own && self.charge.is_none()
    }

    /// Whether the frame at the front of the buffer has been arriving for `frame_limit`
    /// or more (counted as [`FrameReader::wait_deadline`] does, in whole milliseconds, so
    /// that a wait ended by the frame deadline is always seen as such).
    pub(super) fn frame_overdue(&self, frame_limit: Duration) -> bool {
        self.frame_started.is_some_and(|started| {
            millis_between(started, millis_now()) >= whole_millis(frame_limit)
        })
    }

    /// Bytes of the frame still arriving that are in, and what its head declares (when
    /// its prefix is in).
    pub(super) fn partial_frame(&self, codec: &FrameCodec) -> (usize, Option<usize>) {
        let declared = codec
            .frame_head(&self.buf)
            .ok()
            .flatten()
            .map(|head| head.total_len);
        (self.buf.len(), declared)
    }

    /// Admits the frame at the front of the buffer, still arriving, against the budget
    /// if it is large; once per frame. To be called before each [`FrameReader::fill`]
    /// (apart, so that the future of a waiting fill holds nothing more).
    pub(super) fn admit_partial_frame(&mut self, codec: &FrameCodec) -> Result<(), Box<BusyFrame>> {
        if self.charge.is_some() || self.buf.is_empty() {
            return Ok(());
        }
        // A bad prefix is left for the decoder to report.
        let Ok(Some(head)) = codec.frame_head(&self.buf) else {
            return Ok(());
        };
        if head.total_len <= UNCOUNTED_FRAME_LEN || head.total_len <= self.buf.len() {
            return Ok(());
        }
        self.budget
            .take(head.total_len)
            .map_err(|no_room| Box::new(BusyFrame { head, no_room }))?;
        self.charge = Some(Charge {
            budget: self.budget.clone(),
            len: head.total_len,
        });
        Ok(())
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

    /// Whether a whole frame (as its prefix declares it) is in the buffer.
    pub(super) fn holds_whole_frame(&self) -> bool {
        declared_frame_len(&self.buf).is_some_and(|len| len <= self.buf.len())
    }

    /// The next frame if it is already complete in the buffer, without reading.
    pub(super) fn buffered_frame(
        &mut self,
        codec: &mut FrameCodec,
    ) -> Result<Option<Frame>, ProtoError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        // The frame leaves the buffer when decoded: its share of the budget goes first.
        if self.charge.is_some()
            && declared_frame_len(&self.buf).is_some_and(|len| len <= self.buf.len())
        {
            self.charge = None;
        }
        self.give_large_frame_its_own_buffer(codec)?;
        if let Some(frame) = self.copy_out_whole_large_frame(codec)? {
            return Ok(Some(frame));
        }
        if self.own {
            return self.own_frame(codec);
        }
        let frame = codec.decode(&mut self.buf)?;
        if frame.is_some() {
            self.frame_started = None;
            if self.buf.is_empty() && self.buf.capacity() > KEEP_READ_BUFFER {
                self.buf = BytesMut::new();
            }
        }
        Ok(frame)
    }

    /// The large frame in its own buffer once it is whole: the buffer is lent to the
    /// frame (it comes back to the server's buffers when the frame's last view goes), and
    /// what came after the frame (the head of the next one, if it came) is moved to a
    /// buffer of its own.
    fn own_frame(&mut self, codec: &FrameCodec) -> Result<Option<Frame>, ProtoError> {
        let whole = declared_frame_len(&self.buf).is_some_and(|len| len <= self.buf.len());
        if !whole {
            codec.check_partial(&self.buf)?;
            return Ok(None);
        }
        let have = self.buf.len();
        // The buffer was made from a vector and never shared: no copy.
        let own = Vec::from(std::mem::take(&mut self.buf));
        let own = self.budget.buffers().lend(own);
        let Some((frame, len)) = codec.decode_whole(&own)? else {
            return Err(ProtoError::Truncated {
                needed: have + 1,
                have,
            });
        };
        if own.len() > len {
            self.buf = BytesMut::from(&own[len..]);
        }
        self.own = false;
        self.after_own = true;
        self.frame_started = None;
        Ok(Some(frame))
    }

    /// A large frame that arrived whole with other bytes (read before its length was
    /// known) is decoded from a copy of its own: its body must not keep the shared
    /// buffer alive.
    fn copy_out_whole_large_frame(
        &mut self,
        codec: &mut FrameCodec,
    ) -> Result<Option<Frame>, ProtoError> {
        if self.own {
            return Ok(None);
        }
        let Some(len) = declared_frame_len(&self.buf) else {
            return Ok(None);
        };
        if !(OWN_BUFFER_FRAME_LEN..=OWN_BUFFER_MAX_FRAME_LEN).contains(&len) || len > self.buf.len()
        {
            return Ok(None);
        }
        let buffers = self.budget.buffers();
        let mut own = buffers.take(len);
        own.extend_from_slice(&self.buf[..len]);
        let frame = codec
            .decode_whole(&buffers.lend(own))?
            .map(|(frame, _)| frame);
        if frame.is_some() {
            self.buf.advance(len);
            self.frame_started = None;
            if self.buf.is_empty() && self.buf.capacity() > KEEP_READ_BUFFER {
                self.buf = BytesMut::new();
            }
        }
        Ok(frame)
    }

    /// Moves a large frame at the front of the shared buffer, once its prefix is in, to
    /// a buffer of its length (and a little room; [`NEXT_HEAD_ROOM`]), perhaps one used
    /// before and a little larger, which will hold that frame only: what came in is
    /// copied, the rest is read straight into it.
    fn give_large_frame_its_own_buffer(&mut self, codec: &FrameCodec) -> Result<(), ProtoError> {
        if self.own {
            return Ok(());
        }
        let Some(len) = declared_frame_len(&self.buf) else {
            return Ok(());
        };
        if !(OWN_BUFFER_FRAME_LEN..=OWN_BUFFER_MAX_FRAME_LEN).contains(&len) {
            return Ok(());
        }
        // Lengths past the limits are refused before anything is reserved for them.
        codec.frame_head(&self.buf)?;
        if len <= self.buf.len() {
            return Ok(());
        }
        let mut own = self.budget.buffers().take(len + NEXT_HEAD_ROOM);
        own.extend_from_slice(&self.buf);
        // Through `Bytes`, the conversion there is: unique, so the vector's memory
        // is kept as it is.
        self.buf = BytesMut::from(bytes::Bytes::from(own));
        self.own = true;
        Ok(())
    }

    /// Reads more bytes into the buffer; 0 at the end of the stream. Cancel-safe.
    pub(super) async fn fill(&mut self) -> std::io::Result<usize> {
        if self.own {
            // Boxed: the future of a fill is what every idle connection holds, and this
            // state is only for large frames.
            return Box::pin(self.fill_own()).await;
        }
        loop {
            // A connection that sends a frame now and then reads into a small buffer;
            // once a read fills all the room it had, frames are streaming in and reads
            // get room for a burst (a few KiB would mean one system call per handful of
            // 1 KiB publishes). A frame too large for a buffer of its own gets room in
            // proportion to what it has sent (the buffer at most doubles), never the
            // length it declares. Right after a frame that had its own buffer, little is
            // asked: a few bytes more may be the head of another one.
            let want = if self.after_own {
                NEXT_HEAD_ROOM
            } else if self.streaming {
                READ_CHUNK.max(self.buf.len())
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
            self.after_own = false;
            return Ok(read);
        }
    }

    /// Reads the rest of the large frame at the front into its own buffer, and perhaps
    /// the head of the next one, never more than the buffer's room.
    async fn fill_own(&mut self) -> std::io::Result<usize> {
        // A buffer used before may be larger than this frame needs: reads still stop a
        // little past its end.
        let end = declared_frame_len(&self.buf).map_or(self.buf.capacity(), |len| {
            self.buf.capacity().min(len + NEXT_HEAD_ROOM)
        });
        let room = end.saturating_sub(self.buf.len());
        if room == 0 {
            // Whole already, and not taken: nothing may be read before it is.
            return std::future::pending().await;
        }
        let read = self
            .reader
            .read_buf(&mut (&mut self.buf).limit(room))
            .await?;
        self.streaming = read == room;
        Ok(read)
    }

    /// The next frame, `None` at a clean end of stream.
    pub(super) async fn read_frame(
        &mut self,
        codec: &mut FrameCodec,
    ) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.buffered_frame(codec)? {
                return Ok(Some(frame));
            }
            self.admit_partial_frame(codec).map_err(ReadError::Busy)?;
            if self.fill().await? == 0 {
                return Ok(self.ended()?);
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

impl<R> FrameReader<R> {
    /// The byte stream alone, for a connection that parks between frames (see
    /// [`FrameReader::is_between_frames`]): it holds no buffer, and a reader is made
    /// again with [`FrameReader::new`] when it resumes.
    pub(super) fn into_read_half(self) -> R {
        self.reader
    }
}

#[cfg(test)]
mod tests {
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
        let budget = Arc::new(FrameBudget::new(1 << 20));
        let mut reader = FrameReader::new(read_half, budget);
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

    #[tokio::test]
    async fn a_large_partial_frame_takes_budget_and_buffer_as_its_bytes_come() {
        use switchboard_proto::packet::Publish;
        let (mut client, server) = pair().await;
        let (read_half, _write_half) = server.into_halves();
        let budget = Arc::new(FrameBudget::new(3 * 1024 * 1024));
        let mut reader = FrameReader::new(read_half, budget.clone());
        let codec = FrameCodec::new(Limits::default());
        let publish = Packet::Publish(Publish {
            channel: "big".into(),
            body: bytes::Bytes::from(vec![1u8; 2 * 1024 * 1024]),
            ..Publish::default()
        });
        let mut frame = BytesMut::new();
        codec
            .encode_packet(1, Flags::empty(), &publish, &mut frame)
            .unwrap();
        let sent = 300 * 1024;
        client.write_all(&frame[..sent]).await.unwrap();
        let mut arrived = 0;
        while arrived < sent {
            reader.admit_partial_frame(&codec).unwrap();
            arrived += reader.fill().await.unwrap();
        }
        reader.admit_partial_frame(&codec).unwrap();
        assert_eq!(budget.held(), frame.len(), "charged at its declared length");
        assert!(
            reader.buffer_capacity() <= 2 * sent + READ_CHUNK,
            "{} bytes of buffer for {sent} arrived of {}",
            reader.buffer_capacity(),
            frame.len()
        );
        // A second one does not fit what is left.
        assert!(budget.take(frame.len()).is_err());
        // The reader going away gives its share back.
        drop(reader);
        assert_eq!(budget.held(), 0);
    }

    /// A large PUBLISH of `body_len` bytes followed by heartbeats 2..=`heartbeats`+1.
    fn large_then_heartbeats(codec: &FrameCodec, body_len: usize, heartbeats: u32) -> BytesMut {
        use switchboard_proto::packet::Publish;
        let publish = Packet::Publish(Publish {
            channel: "big".into(),
            body: bytes::Bytes::from(vec![7u8; body_len]),
            ..Publish::default()
        });
        let mut bytes = BytesMut::new();
        codec
            .encode_packet(1, Flags::empty(), &publish, &mut bytes)
            .unwrap();
        for request_id in 2..=heartbeats + 1 {
            codec
                .encode_packet(
                    request_id,
                    Flags::empty(),
                    &Packet::Heartbeat(Heartbeat),
                    &mut bytes,
                )
                .unwrap();
        }
        bytes
    }

    /// Sends the head of `bytes` first and the rest a moment later, so that the rest of
    /// the large frame in front is read straight into its own buffer; returns that frame.
    async fn read_sent_in_two<R: Readable>(
        reader: &mut FrameReader<R>,
        codec: &mut FrameCodec,
        client: &mut TcpStream,
        bytes: &[u8],
    ) -> Frame {
        client.write_all(&bytes[..100]).await.unwrap();
        let (frame, ()) = tokio::join!(reader.read_frame(codec), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(&bytes[100..]).await.unwrap();
        });
        frame.unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_large_frames_buffer_is_read_into_again_once_the_frame_is_dropped() {
        let (mut client, server) = pair().await;
        let (read_half, _write_half) = server.into_halves();
        let budget = Arc::new(FrameBudget::new(1 << 20));
        let mut reader = FrameReader::new(read_half, budget.clone());
        let mut codec = FrameCodec::new(Limits::default());

        let first = large_then_heartbeats(&codec, 40 * 1024, 1);
        let large = read_sent_in_two(&mut reader, &mut codec, &mut client, &first).await;
        assert_eq!(large.content.len(), 40 * 1024);
        let memory = large.content.as_ptr();
        let heartbeat = reader.read_frame(&mut codec).await.unwrap().unwrap();
        assert_eq!(heartbeat.request_id, 2);
        assert!(budget.buffers().in_use(), "lent out");
        drop(large);

        // A smaller one goes into the same memory, and reads stop a little past its end
        // although the buffer has room for more: the heartbeats behind it come whole.
        let second = large_then_heartbeats(&codec, 30 * 1024, 40);
        let large = read_sent_in_two(&mut reader, &mut codec, &mut client, &second).await;
        assert_eq!(
            large.content.as_ptr(),
            memory,
            "the same buffer, read into again"
        );
        assert_eq!(&large.content[..], &[7u8; 30 * 1024][..]);
        for request_id in 2..=41 {
            let heartbeat = reader.read_frame(&mut codec).await.unwrap().unwrap();
            assert_eq!(heartbeat.request_id, request_id);
        }

        // Whole in one read with other frames: copied out into a kept buffer too.
        drop(large);
        let third = large_then_heartbeats(&codec, 30 * 1024, 1);
        let mut both = BytesMut::new();
        codec
            .encode_packet(9, Flags::empty(), &Packet::Heartbeat(Heartbeat), &mut both)
            .unwrap();
        both.extend_from_slice(&third);
        client.write_all(&both).await.unwrap();
        // Let it all arrive, so that one read takes the small frame and the large one.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut next = async || reader.read_frame(&mut codec).await.unwrap().unwrap();
        assert_eq!(next().await.request_id, 9);
        assert_eq!(next().await.content.as_ptr(), memory);
        assert_eq!(next().await.request_id, 2);
    }
}
