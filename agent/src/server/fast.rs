//! The unary fast path: a layer between a connection's socket and h2 that answers a cached
//! `GetSecret` from the frames as they arrive, and hands every other frame to h2.
//!
//! Why: with everything going through h2, a cached read cost the server ~56k instructions, ~32k
//! of them in h2, `http` and their copies (BENCHMARKS.md, "The unary fast path in front of h2"):
//! stream state in a slab, frames queued and moved between h2's layers, a `HeaderMap` built and
//! read for every request. Here the common case — a request whose HEADERS and whole body arrived,
//! answered from the cache — is a few table look-ups and three frames written straight into the
//! connection's output, and the replies to every request of one read go out in one `write`.
//!
//! How it stays one correct HTTP/2 peer with h2 behind it:
//! - **Header compression.** Every header block is decoded here with h2's own HPACK decoder, so
//!   the client's dynamic table lives here; the blocks h2 gets are re-encoded as plain literals
//!   (h2's table stays empty and is never referred to). A block past the header list limit is
//!   handed on over the limit, so h2 refuses it as it would have; a block that cannot be decoded
//!   (or is four times the limit) switches the layer to passing bytes through untouched, and h2
//!   then ends the connection with the error it finds.
//! - **Streams.** A stream is answered here only when its HEADERS and then its whole body (the
//!   frame with END_STREAM) came, the body within `HOLD` of the headers (up to `MAX_PENDING`
//!   streams wait at once), it is a plain `GetSecret`, the caller is identified and admitted,
//!   and it can be answered at once (`Agent::get_now`: a denial, or a fresh cache entry); then
//!   it is closed here and h2 never hears of it. Everything else — a miss, a body still on its way, every other
//!   method — goes to h2 as it came (headers re-encoded), in order, before any later stream's
//!   HEADERS. Frames the client sends later for a stream answered here (a WINDOW_UPDATE, an
//!   RST_STREAM) are dropped, as the RFC lets a peer ignore them on a closed stream.
//! - **Flow control.** The client's DATA on streams answered here is given back to it with
//!   connection WINDOW_UPDATEs of our own (h2 never saw those bytes). What the client lets the
//!   server send is split between h2 and this layer without either overdrawing it: part of the
//!   client's connection WINDOW_UPDATEs is kept back for replies sent here (up to half the
//!   window, and only while h2 has `H2_FLOOR` or more), the rest goes to h2, and when h2's
//!   share runs low it gets the kept part back at once (a WINDOW_UPDATE made up for it), so h2's
//!   streams never wait on this layer. A reply is sent here only if it fits both what is kept
//!   and a new stream's window (the client's SETTINGS), so nothing here ever waits for window.
//! - **Output.** h2's frames and the replies made here share one buffer and one `write`; a reply
//!   is only ever put between two of h2's frames, never inside one, which the layer knows by
//!   reading the frame headers h2 writes.
//! - **Shutdown.** Once h2 sends GOAWAY (graceful shutdown, an error) nothing more is answered
//!   here; new streams go to h2, which treats them as a draining connection does.

use std::{
    future::Future,
    io::{self, Cursor, IoSlice},
    ops::ControlFlow,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
    task::{ready, Context, Poll, Waker},
    time::Duration,
};

use bytes::{Buf, BufMut, BytesMut};
use h2::hpack::{self, Header};
use prost::Message;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};
use tonic::Status;

use super::{Shared, GET_SECRET, MAX_HEADER_LIST, MAX_SMALL_REQUEST};
use crate::{
    admission::{BodyBudget, ConnectionPermit},
    api::secrets,
    cache::CachedSecret,
    transport::ConnectedCaller,
};

/// The largest frame h2 accepts (its SETTINGS_MAX_FRAME_SIZE, the protocol's default).
const MAX_FRAME: usize = 16_384;
/// The largest header block (HEADERS and its CONTINUATIONs) decoded here; beyond it, bytes pass
/// through and h2 ends the connection (its own bound is four times the header list limit).
const MAX_BLOCK: usize = 4 * MAX_HEADER_LIST as usize;
/// The table size h2 advertises (SETTINGS_HEADER_TABLE_SIZE, the protocol's default).
const TABLE_SIZE: usize = 4_096;
/// The largest header block kept to compare the next one with, and the most its fields may add
/// up to (a gRPC call's block, once its fields are in the table, is tens of bytes): what a
/// connection holds between its requests stays small.
const LAST_BLOCK: usize = 512;
/// The least of the client's connection window kept for replies sent here (when the window is
/// larger, half of it): half of the protocol's initial window, so a client that never raises
/// it still gets replies here.
const POOL_TARGET: i64 = 32 * 1024;
/// h2's share of the connection window below which nothing is kept from it, and it gets the
/// kept part back.
const H2_FLOOR: i64 = 16 * 1024;
/// Received bytes given back to the client (a WINDOW_UPDATE) once this many are owed.
const OWED_FLUSH: u32 = 32 * 1024;
/// Output beyond which nothing more is read or taken from h2 until the socket drains; and the
/// most handed to h2 before it reads.
const OUT_LIMIT: usize = 256 * 1024;
/// Room made in the input buffer before each read.
const READ_CHUNK: usize = 32 * 1024;
/// How long a `GetSecret` whose headers came without its body waits here for the body before
/// it goes to h2 (which then applies the body timeout): clients write the two separately (tonic
/// does, one write each), so the body is usually one read behind.
const HOLD: Duration = Duration::from_millis(50);
/// The most `GetSecret`s waiting for their bodies on one connection (half of h2's default stream
/// limit); past it, the oldest goes to h2. Each holds its decoded headers and at most 4 KiB of
/// body, for at most `HOLD`.
const MAX_PENDING: usize = 128;
/// The client connection preface, which goes to h2 as it came.
const PREFACE_LEN: usize = 24;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// What the fast path needs of its connection.
pub(super) struct FastPath {
    pub(super) shared: Arc<Shared>,
    /// Set once the caller is identified; until then every stream goes to h2.
    pub(super) caller: Arc<OnceLock<ConnectedCaller>>,
    pub(super) permit: Arc<ConnectionPermit>,
    /// Streams answered here, which the connection's idle and keepalive timers count as activity.
    pub(super) answered: Arc<AtomicU64>,
}

/// One frame's 9-byte header.
#[derive(Clone, Copy, Debug)]
struct Head {
    len: usize,
    kind: u8,
    flags: u8,
    id: u32,
}

impl Head {
    fn parse(bytes: &[u8]) -> Option<Head> {
        let head: &[u8; 9] = bytes.get(..9)?.try_into().ok()?;
        Some(Head {
            len: usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]),
            kind: head[3],
            flags: head[4],
            id: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        })
    }
}

fn put_head(out: &mut BytesMut, len: usize, kind: u8, flags: u8, id: u32) {
    let len = u32::try_from(len).expect("a frame's length fits 24 bits");
    out.put_slice(&len.to_be_bytes()[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(id);
}

fn window_update(out: &mut BytesMut, id: u32, increment: u32) {
    put_head(out, 4, WINDOW_UPDATE, 0, id);
    out.put_u32(increment);
}

/// Where the layer is with the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Answering what it can.
    Serving,
    /// h2 sent GOAWAY: every frame goes to h2 (header blocks still re-encoded).
    Draining,
    /// A frame could not be read (or its block decoded): bytes pass through untouched, and h2
    /// finds the error and ends the connection.
    Raw,
}

/// A `GetSecret` whose HEADERS arrived and whose body is being collected.
struct Pending {
    id: u32,
    headers: Vec<Header>,
    /// The body's payload (padding removed).
    body: BytesMut,
    /// The DATA frames as they came, for h2 if the stream goes there.
    frames: BytesMut,
    /// Flow-controlled bytes of those frames (padding included).
    flow: u32,
    /// The body's bytes, counted against the caller's uid as h2's path counts them.
    budget: BodyBudget,
    /// When a read ended with its body still to come: its wait (`HOLD`) started.
    held_at: Option<Instant>,
}

/// The client's header blocks, decoded with h2's HPACK decoder (the client's compression table
/// lives here).
struct Blocks {
    decoder: hpack::Decoder,
    /// The last block decoded, while no block since has changed the table.
    last: Option<LastBlock>,
}

/// A header block's bytes and what they decoded to.
struct LastBlock {
    bytes: BytesMut,
    headers: Vec<Header>,
    over: bool,
}

impl Blocks {
    fn new() -> Self {
        Self {
            decoder: hpack::Decoder::new(TABLE_SIZE),
            last: None,
        }
    }

    /// The fields of the header block of a HEADERS frame (with its CONTINUATIONs), into
    /// `headers`: whether the block is over the header list limit (its fields then are not all
    /// kept); None if it cannot be decoded or is far over the limit.
    ///
    /// A client sends the same block for every call of a method once its table holds the
    /// fields; those bytes decode to the fields they did last time while no block since has
    /// changed the table, so such a block is not decoded again.
    fn fields(&mut self, head: Head, frame: &[u8], headers: &mut Vec<Header>) -> Option<bool> {
        let whole = head.flags & (PADDED | PRIORITY_FLAG) == 0 && frame.len() == 9 + head.len;
        if let Some(last) = &self.last {
            if whole && last.bytes[..] == frame[9..] {
                headers.clone_from(&last.headers);
                return Some(last.over);
            }
        }
        self.last = None;
        let mut block = header_block(head, frame)?;
        let kept = (block.len() <= LAST_BLOCK && leaves_table_alone(&block))
            .then(|| BytesMut::from(&block[..]));
        headers.clear();
        let mut size = 0usize;
        let mut over = false;
        let mut way_over = false;
        let decoded = self.decoder.decode(&mut Cursor::new(&mut block), |header| {
            size += header.len();
            if size > 4 * MAX_HEADER_LIST as usize {
                way_over = true;
                return ControlFlow::Break(());
            }
            if size >= MAX_HEADER_LIST as usize {
                over = true;
            } else {
                headers.push(header);
            }
            ControlFlow::Continue(())
        });
        if decoded.is_err() || way_over {
            return None;
        }
        if let Some(bytes) = kept.filter(|_| size <= TABLE_SIZE) {
            self.last = Some(LastBlock {
                bytes,
                headers: headers.clone(),
                over,
            });
        }
        Some(over)
    }
}

/// The connection's socket as h2 sees it (see the module's documentation).
pub(super) struct Filtered<T> {
    io: T,
    fast: FastPath,
    /// Read from the socket, not yet taken apart.
    input: BytesMut,
    /// Frames for h2, not yet read by it.
    to_h2: BytesMut,
    /// Bytes for the socket: h2's frames and the replies made here.
    out: BytesMut,
    /// Replies made while h2 was part-way through writing a frame.
    deferred: BytesMut,
    preface_left: usize,
    mode: Mode,
    blocks: Blocks,
    /// The decoded headers of the block in hand.
    headers: Vec<Header>,
    /// h2's output: bytes of the frame header read so far, and bytes of its payload to come.
    scan_head: [u8; 9],
    scan_have: usize,
    scan_left: usize,
    /// A new stream's send window (the client's SETTINGS_INITIAL_WINDOW_SIZE).
    peer_window: i64,
    /// The client's SETTINGS_MAX_FRAME_SIZE.
    peer_max_frame: usize,
    /// What the client lets the server send on the connection, split with h2.
    window: Split,
    /// Received DATA bytes h2 never saw, not yet given back with a WINDOW_UPDATE.
    owed: u32,
    /// The highest stream id the client has opened, and the highest h2 has seen.
    last_stream: u32,
    h2_last: u32,
    /// `GetSecret`s whose headers came and whose bodies are being collected, by stream id.
    pending: Vec<Pending>,
    /// The oldest pending stream's wait for its body; made once a connection first needs it.
    hold: Option<Pin<Box<Sleep>>>,
    eof: bool,
    /// The task to wake when frames for h2 appear outside its read (a window update made up
    /// while h2 writes).
    reader: Option<Waker>,
}

impl<T> Filtered<T> {
    pub(super) fn new(io: T, fast: FastPath) -> Self {
        Self {
            io,
            fast,
            input: BytesMut::with_capacity(READ_CHUNK),
            to_h2: BytesMut::new(),
            out: BytesMut::new(),
            deferred: BytesMut::new(),
            preface_left: PREFACE_LEN,
            mode: Mode::Serving,
            blocks: Blocks::new(),
            headers: Vec::new(),
            scan_head: [0; 9],
            scan_have: 0,
            scan_left: 0,
            peer_window: 65_535,
            peer_max_frame: MAX_FRAME,
            window: Split::new(),
            owed: 0,
            last_stream: 0,
            h2_last: 0,
            pending: Vec::new(),
            hold: None,
            eof: false,
            reader: None,
        }
    }

    /// Takes apart every whole frame read so far.
    fn process(&mut self) {
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.input.len());
            self.to_h2.extend_from_slice(&self.input.split_to(n));
            self.preface_left -= n;
            if self.preface_left > 0 {
                return;
            }
        }
        loop {
            if self.out.len() + self.deferred.len() > OUT_LIMIT || self.to_h2.len() > OUT_LIMIT {
                // Enough for now: the rest waits until the client reads its replies, or until
                // h2 reads what it was handed (a header block re-encoded as literals can be a
                // thousand times its size on the wire).
                break;
            }
            if self.mode == Mode::Raw {
                self.forward_pending();
                let mut rest = self.input.split();
                self.to_h2.extend_from_slice(&rest);
                rest.fill(0);
                break;
            }
            let Some(head) = Head::parse(&self.input) else {
                break;
            };
            if head.len > MAX_FRAME {
                self.mode = Mode::Raw;
                continue;
            }
            let total = match head.kind {
                HEADERS if head.flags & END_HEADERS == 0 => match self.block_end(head) {
                    Some(Some(total)) => total,
                    // The CONTINUATIONs are still on their way.
                    Some(None) => break,
                    None => {
                        self.mode = Mode::Raw;
                        continue;
                    }
                },
                _ => 9 + head.len,
            };
            if self.input.len() < total {
                break;
            }
            let mut frame = self.input.split_to(total);
            self.frame(head, &frame);
            // A request's bytes (a PutSecret's value) do not stay behind in the buffer.
            frame.fill(0);
        }
        // A stream whose body is still on its way waits for it here, at most `HOLD`
        // (`poll_read`); then it is h2's, with the body timeout.
        if self.pending.last().is_some_and(|p| p.held_at.is_none()) {
            let now = Instant::now();
            for pending in self.pending.iter_mut().rev() {
                if pending.held_at.is_some() {
                    break;
                }
                pending.held_at = Some(now);
            }
        }
        self.give_back(false);
    }

    /// The end of a header block that CONTINUATION frames finish: Some(None) while they are not
    /// all read yet, None if the block is malformed or too large to decode here.
    fn block_end(&self, first: Head) -> Option<Option<usize>> {
        let mut at = 9 + first.len;
        loop {
            if at > MAX_BLOCK + 9 * (MAX_BLOCK / 1024) {
                return None;
            }
            let Some(head) = Head::parse(&self.input[at.min(self.input.len())..]) else {
                return Some(None);
            };
            if head.kind != CONTINUATION || head.id != first.id || head.len > MAX_FRAME {
                return None;
            }
            at += 9 + head.len;
            if head.flags & END_HEADERS != 0 {
                return Some(Some(at));
            }
        }
    }

    fn frame(&mut self, head: Head, frame: &[u8]) {
        if let Some(at) = self.pending.iter().position(|p| p.id == head.id) {
            match head.kind {
                DATA => return self.pending_data(at, head, frame),
                RST_STREAM => {
                    // Cancelled before it was answered: h2 never hears of it, and the body
                    // received so far is given back to the client's window here.
                    let pending = self.pending.remove(at);
                    self.owed = self.owed.saturating_add(pending.flow);
                    return;
                }
                _ => self.forward_pending_through(head.id),
            }
        }
        match head.kind {
            HEADERS => self.headers(head, frame),
            DATA if self.is_closed_here(head.id) => {
                self.owed = self.owed.saturating_add(head.len as u32);
            }
            WINDOW_UPDATE if head.id == 0 && head.len == 4 => self.connection_window(frame),
            WINDOW_UPDATE | RST_STREAM | PRIORITY if self.is_closed_here(head.id) => {}
            SETTINGS if head.id == 0 && head.flags & ACK == 0 && head.len.is_multiple_of(6) => {
                for setting in frame[9..].chunks_exact(6) {
                    let value =
                        u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
                    match u16::from_be_bytes([setting[0], setting[1]]) {
                        // SETTINGS_INITIAL_WINDOW_SIZE (h2 refuses a value over 2^31-1)
                        4 => self.peer_window = i64::from(value),
                        // SETTINGS_MAX_FRAME_SIZE
                        5 => self.peer_max_frame = (value as usize).clamp(MAX_FRAME, 1 << 24),
                        _ => {}
                    }
                }
                self.to_h2.extend_from_slice(frame);
            }
            CONTINUATION => {
                // Not after a HEADERS that asked for it: h2 finds the protocol error.
                self.to_h2.extend_from_slice(frame);
                self.mode = Mode::Raw;
            }
            _ => self.to_h2.extend_from_slice(frame),
        }
    }

    /// A stream the client opened that h2 never saw and that is not pending was answered (or
    /// cancelled) here: every stream handed to h2 raised `h2_last`.
    fn is_closed_here(&self, id: u32) -> bool {
        id > self.h2_last && id <= self.last_stream && !self.pending.iter().any(|p| p.id == id)
    }

    /// A HEADERS frame and its CONTINUATIONs.
    fn headers(&mut self, head: Head, frame: &[u8]) {
        let Some(over) = self.blocks.fields(head, frame, &mut self.headers) else {
            // h2 decodes the raw block with its own (empty) table and ends the connection.
            self.to_h2.extend_from_slice(frame);
            self.mode = Mode::Raw;
            return;
        };
        if head.id == 0 || head.id.is_multiple_of(2) {
            self.to_h2.extend_from_slice(frame);
            self.mode = Mode::Raw;
            return;
        }
        let id = head.id;
        let end_stream = head.flags & END_STREAM != 0;
        let new = id > self.last_stream;
        if !new && self.is_closed_here(id) {
            // Trailers on a stream closed here: the decoder has seen them, nothing else will.
            return;
        }
        if new {
            self.last_stream = id;
        }
        if new
            && !end_stream
            && !over
            && self.mode == Mode::Serving
            && is_plain_get_secret(&self.headers)
        {
            if self.pending.len() == MAX_PENDING {
                let oldest = self.pending[0].id;
                self.forward_pending_through(oldest);
            }
            self.pending.push(Pending {
                id,
                headers: std::mem::take(&mut self.headers),
                body: BytesMut::new(),
                frames: BytesMut::new(),
                flow: 0,
                budget: self.fast.permit.body(),
                held_at: None,
            });
            return;
        }
        if new {
            // Streams reach h2 in the order they were opened: those still pending first.
            self.forward_pending_through(id);
        }
        let headers = std::mem::take(&mut self.headers);
        self.forward_headers(id, end_stream, &headers, over);
        self.headers = headers;
    }

    /// Re-encodes a header block for h2, as literals.
    fn forward_headers(&mut self, id: u32, end_stream: bool, headers: &[Header], over: bool) {
        let mut block = BytesMut::new();
        for header in headers {
            encode_literal(&mut block, name_of(header).as_bytes(), header.value_slice());
        }
        if over {
            // The block was over the header list limit: hand h2 one over it as well, so it
            // refuses the stream as it would have (431 and REFUSED_STREAM).
            let filler = vec![b'x'; MAX_HEADER_LIST as usize];
            encode_literal(&mut block, b"x-psst-over-limit", &filler);
        }
        let mut flags = if end_stream { END_STREAM } else { 0 };
        let mut kind = HEADERS;
        loop {
            let chunk = block.split_to(block.len().min(MAX_FRAME));
            if block.is_empty() {
                flags |= END_HEADERS;
            }
            put_head(&mut self.to_h2, chunk.len(), kind, flags, id);
            self.to_h2.extend_from_slice(&chunk);
            if block.is_empty() {
                break;
            }
            kind = CONTINUATION;
            flags = 0;
        }
        self.h2_last = self.h2_last.max(id);
    }

    /// Hands every pending stream to h2.
    fn forward_pending(&mut self) {
        if let Some(last) = self.pending.last() {
            self.forward_pending_through(last.id);
        }
    }

    /// Hands the pending streams up to `id` to h2, in order.
    fn forward_pending_through(&mut self, id: u32) {
        let n = self.pending.iter().take_while(|p| p.id <= id).count();
        if n == 0 {
            return;
        }
        let rest = self.pending.split_off(n);
        for pending in std::mem::replace(&mut self.pending, rest) {
            self.forward_headers(pending.id, false, &pending.headers, false);
            self.to_h2.extend_from_slice(&pending.frames);
        }
    }

    fn pending_data(&mut self, at: usize, head: Head, frame: &[u8]) {
        let pending = &mut self.pending[at];
        let id = pending.id;
        let Some(payload) = data_payload(head, frame) else {
            // Bad padding: h2 finds it.
            pending.frames.extend_from_slice(frame);
            return self.forward_pending_through(id);
        };
        pending.flow = pending.flow.saturating_add(head.len as u32);
        if pending.body.len() + payload.len() > MAX_SMALL_REQUEST
            || pending.budget.buffer(payload.len()).is_err()
        {
            // h2's path refuses it: with the method's own limit, or the uid's byte share.
            pending.frames.extend_from_slice(frame);
            return self.forward_pending_through(id);
        }
        if head.flags & END_STREAM == 0 {
            pending.frames.extend_from_slice(frame);
            pending.body.extend_from_slice(payload);
            return;
        }
        let mut pending = self.pending.remove(at);
        // The usual request has its body in one DATA frame: answered from the frame itself,
        // copied only if it goes to h2.
        let body = if pending.body.is_empty() {
            None
        } else {
            pending.body.extend_from_slice(payload);
            Some(std::mem::take(&mut pending.body))
        };
        if let Some(mut pending) = self.answer(pending, body.as_deref().unwrap_or(payload)) {
            pending.frames.extend_from_slice(frame);
            self.pending.insert(at, pending);
            self.forward_pending_through(id);
        }
    }

    /// Answers a whole `GetSecret` if the cache can; gives it back otherwise.
    fn answer(&mut self, pending: Pending, body: &[u8]) -> Option<Pending> {
        let Some(Ok(caller)) = self.fast.caller.get().map(|c| c.as_ref()) else {
            return Some(pending);
        };
        if body.len() < 5 || body[0] != 0 {
            return Some(pending);
        }
        let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        if body.len() != 5 + length {
            return Some(pending);
        }
        let Ok(request) = psst_proto::v1::GetSecretRequest::decode(&body[5..]) else {
            return Some(pending);
        };
        let room = self.window.pool().min(self.peer_window);
        let max_message = self.fast.shared.max_message;
        let mut permit = None;
        let proceed = |secret: Option<&CachedSecret>| {
            if let Some(secret) = secret {
                let bound = secrets::encoded_len_bound(&request.reference, secret);
                if bound > max_message || (bound + 5) as i64 > room {
                    return false;
                }
            }
            // Admitted as h2's path admits a request (in flight and rate, per uid), once the
            // read is known to be answered here: a request handed to h2 is admitted there.
            permit = self.fast.permit.request().ok();
            permit.is_some()
        };
        let Some(answer) = self
            .fast
            .shared
            .agent
            .get_now(caller, &request.reference, proceed)
        else {
            return Some(pending);
        };
        let id = pending.id;
        // Written straight into the output (after h2's frame in progress, if there is one).
        let idle = self.scan_have == 0 && self.scan_left == 0;
        let reply = if idle {
            &mut self.out
        } else {
            &mut self.deferred
        };
        match answer {
            Ok(served) => {
                let secret = secrets::to_proto(&request.reference, served);
                let sent = put_reply(reply, id, &secret, self.peer_max_frame);
                self.window.sent_here(sent);
            }
            Err(error) => trailers_only(reply, id, Status::from(error)),
        }
        self.owed = self.owed.saturating_add(pending.flow);
        self.fast.answered.fetch_add(1, Ordering::Relaxed);
        self.fast.shared.agent.metrics().fast_path_answer();
        drop(permit);
        // The next request's headers are decoded into this one's vector.
        let mut headers = pending.headers;
        if headers.capacity() > self.headers.capacity() {
            headers.clear();
            self.headers = headers;
        }
        None
    }

    /// A WINDOW_UPDATE for the connection: part of it may be kept for replies sent here.
    fn connection_window(&mut self, frame: &[u8]) {
        let increment =
            u32::from_be_bytes([frame[9], frame[10], frame[11], frame[12]]) & 0x7fff_ffff;
        let passed = self.window.update(increment, self.mode == Mode::Serving);
        if passed == increment {
            self.to_h2.extend_from_slice(frame);
        } else if passed > 0 {
            window_update(&mut self.to_h2, 0, passed);
        }
    }

    /// Gives received bytes h2 never saw back to the client, once enough are owed (or `now`).
    fn give_back(&mut self, now: bool) {
        if self.owed >= OWED_FLUSH || (now && self.owed > 0) {
            let mut frame = BytesMut::with_capacity(13);
            window_update(&mut frame, 0, self.owed);
            self.owed = 0;
            self.emit(&frame);
        }
    }

    /// Queues frames made here: after h2's frame in progress, if there is one.
    fn emit(&mut self, frames: &[u8]) {
        if self.scan_have == 0 && self.scan_left == 0 {
            self.out.extend_from_slice(frames);
        } else {
            self.deferred.extend_from_slice(frames);
        }
    }

    /// Follows the frames h2 writes: its DATA uses up its share of the window, its GOAWAY ends
    /// answering here, and replies made meanwhile go out after its frame.
    fn scan_h2(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.scan_left > 0 {
                let n = self.scan_left.min(bytes.len());
                self.scan_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.scan_have).min(bytes.len());
            self.scan_head[self.scan_have..self.scan_have + n].copy_from_slice(&bytes[..n]);
            self.scan_have += n;
            bytes = &bytes[n..];
            if self.scan_have < 9 {
                break;
            }
            self.scan_have = 0;
            let head = Head::parse(&self.scan_head).expect("nine bytes");
            self.scan_left = head.len;
            match head.kind {
                DATA => {
                    if let Some(back) = self.window.sent_by_h2(head.len) {
                        window_update(&mut self.to_h2, 0, back);
                        if let Some(reader) = &self.reader {
                            reader.wake_by_ref();
                        }
                    }
                }
                GOAWAY if self.mode == Mode::Serving => self.mode = Mode::Draining,
                _ => {}
            }
        }
        if self.scan_have == 0 && self.scan_left == 0 && !self.deferred.is_empty() {
            let deferred = self.deferred.split();
            self.out.extend_from_slice(&deferred);
        }
    }

    fn take_from_h2(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
        self.scan_h2(bytes);
    }
}

impl<T: AsyncWrite + Unpin> Filtered<T> {
    /// Writes out what is buffered for the socket.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            // Replies carry secret values: none stays behind in the buffer once written.
            self.out[..n].fill(0);
            self.out.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Filtered<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.to_h2.is_empty() {
                let n = this.to_h2.len().min(buf.remaining());
                buf.put_slice(&this.to_h2[..n]);
                this.to_h2[..n].fill(0);
                this.to_h2.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if let Some(held_at) = this.pending.first().and_then(|p| p.held_at) {
                let due = held_at + HOLD;
                let hold = this
                    .hold
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if hold.deadline() != due {
                    hold.as_mut().reset(due);
                }
                if hold.as_mut().poll(cx).is_ready() {
                    let now = Instant::now();
                    // The oldest at least (the timer fired for it), and every other one due.
                    let late = this
                        .pending
                        .iter()
                        .take_while(|p| p.held_at.is_some_and(|at| at + HOLD <= now))
                        .last()
                        .map_or(this.pending[0].id, |p| p.id);
                    this.forward_pending_through(late);
                    continue;
                }
            }
            if !this.out.is_empty() {
                // Replies first; a client that does not read its replies is not read either.
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
                if this.out.len() > OUT_LIMIT {
                    return Poll::Pending;
                }
            }
            if this.input.len() >= 9 {
                // Frames left by a read cut short at the output limit come before new bytes.
                let before = this.input.len();
                this.process();
                if this.input.len() != before {
                    continue;
                }
            }
            this.input.reserve(READ_CHUNK);
            let n = match tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.input)
            {
                Poll::Pending => {
                    if !this
                        .reader
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        this.reader = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                Poll::Ready(result) => result?,
            };
            if n == 0 {
                this.eof = true;
                this.process();
                this.forward_pending();
                // A frame cut short by the end of the connection: h2 sees what there was.
                let mut rest = this.input.split();
                this.to_h2.extend_from_slice(&rest);
                rest.fill(0);
            } else {
                this.process();
            }
            if !this.out.is_empty() {
                // One write for every reply this read made.
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Filtered<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.out.len() > OUT_LIMIT {
            ready!(this.poll_drain(cx))?;
        }
        this.take_from_h2(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.out.len() > OUT_LIMIT {
            ready!(this.poll_drain(cx))?;
        }
        let mut n = 0;
        for buf in bufs {
            this.take_from_h2(buf);
            n += buf.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.give_back(true);
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// The client's connection window (what the server may send), split between h2 and the fast
/// path so that neither can overdraw it: h2 sees only the part of the client's WINDOW_UPDATEs
/// passed to it (`h2`), the rest (`pool`) is what replies sent here may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Split {
    /// What the client lets the server send.
    send: i64,
    /// h2's view of it: the protocol's initial window plus what was passed to it, less its DATA.
    h2: i64,
}

impl Split {
    fn new() -> Self {
        // The protocol's initial window, which h2 assumes too.
        Split {
            send: 65_535,
            h2: 65_535,
        }
    }

    /// What replies sent here may use.
    fn pool(&self) -> i64 {
        self.send - self.h2
    }

    /// The client raised the window by `increment`: how much of it to pass on to h2. Part is
    /// kept for the pool (up to half the window, at least `POOL_TARGET`) while `keeping` and
    /// while h2 has `H2_FLOOR` or more.
    fn update(&mut self, increment: u32, keeping: bool) -> u32 {
        let pool = self.pool();
        self.send += i64::from(increment);
        let mut keep = 0;
        if keeping && self.h2 >= H2_FLOOR {
            // A client that gives its window back only when half of a large one is used
            // (hyper's does) keeps the pool supplied.
            let target = (self.send / 2).max(POOL_TARGET);
            keep = (target - pool).clamp(0, i64::from(increment));
        }
        let passed = increment - keep as u32;
        self.h2 += i64::from(passed);
        passed
    }

    fn sent_here(&mut self, len: usize) {
        self.send -= len as i64;
    }

    /// h2 sent `len` bytes of DATA. When its share falls under `H2_FLOOR` it gets the pool back
    /// at once (the increment to pass on): h2's streams never wait on what is kept here.
    fn sent_by_h2(&mut self, len: usize) -> Option<u32> {
        self.h2 -= len as i64;
        self.send -= len as i64;
        let pool = self.pool();
        if self.h2 < H2_FLOOR && pool > 0 {
            self.h2 += pool;
            return Some(pool as u32);
        }
        None
    }
}

/// The block of a HEADERS frame and its CONTINUATIONs, padding and priority removed; None if
/// the padding is longer than the frame.
fn header_block(first: Head, frame: &[u8]) -> Option<BytesMut> {
    let mut payload = &frame[9..9 + first.len];
    let mut pad = 0;
    if first.flags & PADDED != 0 {
        pad = usize::from(*payload.first()?);
        payload = &payload[1..];
    }
    if first.flags & PRIORITY_FLAG != 0 {
        payload = payload.get(5..)?;
    }
    let end = payload.len().checked_sub(pad)?;
    let mut block = BytesMut::with_capacity(frame.len());
    block.extend_from_slice(&payload[..end]);
    let mut at = 9 + first.len;
    while at < frame.len() {
        let head = Head::parse(&frame[at..])?;
        block.extend_from_slice(&frame[at + 9..at + 9 + head.len]);
        at += 9 + head.len;
    }
    Some(block)
}

/// Whether decoding `block` leaves an HPACK table as it was: it holds only indexed fields and
/// literals not added to the table (RFC 7541, 6.1, 6.2.2, 6.2.3) — no literal with incremental
/// indexing (6.2.1), no table size update (6.3). A block it cannot walk counts as changing it.
fn leaves_table_alone(mut block: &[u8]) -> bool {
    while let Some(&first) = block.first() {
        let rest = if first & 0x80 != 0 {
            hpack_int(block, 7).map(|(_, rest)| rest)
        } else if first & 0xc0 == 0x40 || first & 0xe0 == 0x20 {
            return false;
        } else {
            hpack_int(block, 4).and_then(|(name, rest)| {
                let rest = if name == 0 { hpack_string(rest)? } else { rest };
                hpack_string(rest)
            })
        };
        match rest {
            Some(rest) => block = rest,
            None => return false,
        }
    }
    true
}

/// An integer with an `n`-bit prefix (RFC 7541, 5.1) and what follows it.
fn hpack_int(bytes: &[u8], n: u32) -> Option<(usize, &[u8])> {
    let mask = (1u8 << n) - 1;
    let mut value = usize::from(*bytes.first()? & mask);
    let mut at = 1;
    if value == usize::from(mask) {
        let mut shift = 0;
        loop {
            let byte = *bytes.get(at)?;
            at += 1;
            value += usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
            if shift > 21 {
                return None;
            }
        }
    }
    Some((value, &bytes[at..]))
}

/// What follows a string literal (RFC 7541, 5.2).
fn hpack_string(bytes: &[u8]) -> Option<&[u8]> {
    let (len, rest) = hpack_int(bytes, 7)?;
    rest.get(len..)
}

/// A DATA frame's payload without its padding; None if the padding is longer than the frame.
fn data_payload(head: Head, frame: &[u8]) -> Option<&[u8]> {
    let payload = &frame[9..9 + head.len];
    if head.flags & PADDED == 0 {
        return Some(payload);
    }
    let pad = usize::from(*payload.first()?);
    let end = payload.len().checked_sub(1 + pad)?;
    Some(&payload[1..1 + end])
}

/// `:status: 200` (static table index 8) and `content-type: application/grpc` (a literal with
/// the static table's name 31, not indexed): the reply's headers, the same for every reply.
const OK_HEADERS: &[u8] = b"\x88\x0f\x10\x10application/grpc";
/// `grpc-status: 0`, a literal not indexed.
const OK_TRAILERS: &[u8] = b"\x00\x0bgrpc-status\x010";

/// A successful reply to stream `id` carrying `secret`: HEADERS, the message in DATA frames of
/// at most `max_frame` bytes, the trailers; reserved once, the message encoded in place. The
/// message's length with its prefix (what the DATA frames take of the window).
fn put_reply(
    out: &mut BytesMut,
    id: u32,
    secret: &psst_proto::v1::Secret,
    max_frame: usize,
) -> usize {
    let length = secret.encoded_len();
    let message = 5 + length;
    let frames = message.div_ceil(max_frame);
    out.reserve(9 + OK_HEADERS.len() + 9 * frames + message + 9 + OK_TRAILERS.len());
    put_head(out, OK_HEADERS.len(), HEADERS, END_HEADERS, id);
    out.put_slice(OK_HEADERS);
    if frames == 1 {
        put_head(out, message, DATA, 0, id);
        out.put_u8(0);
        out.put_u32(length as u32);
        secret
            .encode(out)
            .expect("the buffer was reserved for the message");
    } else {
        let mut whole = BytesMut::with_capacity(message);
        whole.put_u8(0);
        whole.put_u32(length as u32);
        secret
            .encode(&mut whole)
            .expect("the buffer was sized for the message");
        for chunk in whole.chunks(max_frame) {
            put_head(out, chunk.len(), DATA, 0, id);
            out.put_slice(chunk);
        }
        // The value does not stay behind in the freed buffer's last owner.
        whole.fill(0);
    }
    put_head(
        out,
        OK_TRAILERS.len(),
        HEADERS,
        END_STREAM | END_HEADERS,
        id,
    );
    out.put_slice(OK_TRAILERS);
    message
}

/// A trailers-only response carrying `status`, as h2 would write the one `send_status` makes.
fn trailers_only(out: &mut BytesMut, id: u32, status: Status) {
    let (parts, ()) = status.into_http::<()>().into_parts();
    let mut block = BytesMut::new();
    block.put_u8(0x88);
    for (name, value) in &parts.headers {
        encode_literal(&mut block, name.as_str().as_bytes(), value.as_bytes());
    }
    put_head(out, block.len(), HEADERS, END_STREAM | END_HEADERS, id);
    out.extend_from_slice(&block);
}

/// A header field as a literal not added to the table, its name a literal too (RFC 7541, 6.2.2).
fn encode_literal(block: &mut BytesMut, name: &[u8], value: &[u8]) {
    block.put_u8(0);
    encode_string(block, name);
    encode_string(block, value);
}

fn encode_string(block: &mut BytesMut, text: &[u8]) {
    // A 7-bit prefix integer, no Huffman coding (RFC 7541, 5.1 and 5.2).
    let mut len = text.len();
    if len < 127 {
        block.put_u8(len as u8);
    } else {
        block.put_u8(127);
        len -= 127;
        while len >= 128 {
            block.put_u8((len % 128) as u8 | 0x80);
            len /= 128;
        }
        block.put_u8(len as u8);
    }
    block.put_slice(text);
}

fn name_of(header: &Header) -> &str {
    match header {
        Header::Field { name, .. } => name.as_str(),
        Header::Authority(_) => ":authority",
        Header::Method(_) => ":method",
        Header::Scheme(_) => ":scheme",
        Header::Path(_) => ":path",
        Header::Protocol(_) => ":protocol",
        Header::Status(_) => ":status",
    }
}

/// A `GetSecret` this layer can answer: POST, uncompressed gRPC with protobuf, no connection
/// headers (those are h2's to refuse).
fn is_plain_get_secret(headers: &[Header]) -> bool {
    let mut path = false;
    let mut post = false;
    let mut grpc = false;
    for header in headers {
        match header {
            Header::Path(p) => path = &**p == GET_SECRET,
            Header::Method(m) => post = m == http::Method::POST,
            Header::Field { name, value } => match name.as_str() {
                "content-type" => {
                    grpc = value == "application/grpc" || value == "application/grpc+proto"
                }
                "grpc-encoding" if value != "identity" => return false,
                "te" if value != "trailers" => return false,
                "connection" | "transfer-encoding" | "upgrade" | "keep-alive"
                | "proxy-connection" => return false,
                _ => {}
            },
            Header::Protocol(_) | Header::Status(_) => return false,
            Header::Authority(_) | Header::Scheme(_) => {}
        }
    }
    path && post && grpc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(block: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut decoder = hpack::Decoder::new(TABLE_SIZE);
        let mut block = BytesMut::from(block);
        let mut out = Vec::new();
        decoder
            .decode(&mut Cursor::new(&mut block), |header| {
                out.push((name_of(&header).to_owned(), header.value_slice().to_vec()));
                ControlFlow::Continue(())
            })
            .unwrap();
        out
    }

    #[test]
    fn literals_decode_as_written_whatever_their_length() {
        let mut block = BytesMut::new();
        let long = vec![b'x'; 127 + 128 * 3 + 5];
        encode_literal(&mut block, b":path", GET_SECRET.as_bytes());
        encode_literal(&mut block, b"x-short", b"");
        encode_literal(&mut block, b"x-edge", &[b'e'; 126]);
        encode_literal(&mut block, b"x-long", &long);
        let decoded = decode(&block);
        assert_eq!(decoded[0], (":path".into(), GET_SECRET.as_bytes().to_vec()));
        assert_eq!(decoded[1], ("x-short".into(), vec![]));
        assert_eq!(decoded[2].1.len(), 126);
        assert_eq!(decoded[3], ("x-long".into(), long));
    }

    #[test]
    fn the_replies_fixed_blocks_are_what_they_say() {
        assert_eq!(
            decode(OK_HEADERS),
            vec![
                (":status".into(), b"200".to_vec()),
                ("content-type".into(), b"application/grpc".to_vec())
            ]
        );
        assert_eq!(
            decode(OK_TRAILERS),
            vec![("grpc-status".into(), b"0".to_vec())]
        );
        let mut out = BytesMut::new();
        trailers_only(&mut out, 7, Status::permission_denied("no, 100%"));
        let head = Head::parse(&out).unwrap();
        assert_eq!(
            (head.kind, head.flags, head.id),
            (HEADERS, END_STREAM | END_HEADERS, 7)
        );
        let fields = decode(&out[9..]);
        assert!(
            fields.contains(&("grpc-status".into(), b"7".to_vec())),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("grpc-message".into(), b"no,%20100%25".to_vec())),
            "{fields:?}"
        );
    }

    fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        put_head(&mut out, payload.len(), kind, flags, id);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn only_indexed_fields_and_unindexed_literals_leave_the_table_alone() {
        // Indexed (static 2, `:method: GET`; dynamic 62; index 200 in two bytes).
        assert!(leaves_table_alone(&[0x82, 0xbe, 0xff, 0x49]));
        // Literals without indexing and never indexed, indexed name and literal name.
        assert!(leaves_table_alone(b"\x04\x05/path\x10\x01a\x01b"));
        assert!(leaves_table_alone(b""));
        // A literal with incremental indexing, a table size update.
        assert!(!leaves_table_alone(b"\x82\x40\x01a\x01b"));
        assert!(!leaves_table_alone(&[0x20, 0x82]));
        // Cut short: a string longer than the block, an integer without its end.
        assert!(!leaves_table_alone(b"\x04\x05/pa"));
        assert!(!leaves_table_alone(&[0xff, 0x80]));
        assert!(!leaves_table_alone(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]));
    }

    #[test]
    fn a_repeated_block_is_decoded_again_once_the_table_has_changed() {
        fn fields(blocks: &mut Blocks, id: u32, block: &[u8]) -> Vec<(String, Vec<u8>)> {
            let mut headers = Vec::new();
            let frame = frame(HEADERS, END_HEADERS, id, block);
            let over = blocks.fields(Head::parse(&frame).unwrap(), &frame, &mut headers);
            assert_eq!(over, Some(false));
            headers
                .iter()
                .map(|h| (name_of(h).to_owned(), h.value_slice().to_vec()))
                .collect()
        }
        let a = || ("x-a".to_owned(), b"1".to_vec());
        let b = || ("x-b".to_owned(), b"2".to_vec());
        let mut blocks = Blocks::new();
        // `x-a: 1` added to the table (dynamic index 62).
        assert_eq!(fields(&mut blocks, 1, b"\x40\x03x-a\x011"), [a()]);
        assert!(blocks.last.is_none());
        // Index 62, twice: the second time from the last block.
        assert_eq!(fields(&mut blocks, 3, &[0xbe]), [a()]);
        assert!(blocks.last.is_some());
        assert_eq!(fields(&mut blocks, 5, &[0xbe]), [a()]);
        // `x-b: 2` added: 62 is now `x-b: 2`, and the same byte decodes to it.
        assert_eq!(fields(&mut blocks, 7, b"\x40\x03x-b\x012"), [b()]);
        assert!(blocks.last.is_none());
        assert_eq!(fields(&mut blocks, 9, &[0xbe]), [b()]);
        assert_eq!(fields(&mut blocks, 11, &[0xbe, 0xbf]), [b(), a()]);
        // Large blocks and blocks whose fields add up to more than the table are not kept.
        // A string literal of `n` bytes (n ≥ 127: a two-byte continuation).
        let literal = |n: usize, fill: u8| {
            let more = n - 127;
            let mut out = vec![0x7f, 0x80 | (more & 0x7f) as u8, (more >> 7) as u8];
            out.resize(3 + n, fill);
            out
        };
        let mut long = b"\x00\x03x-c".to_vec();
        long.extend_from_slice(&literal(600, b'c'));
        assert_eq!(fields(&mut blocks, 13, &long).len(), 1);
        assert!(blocks.last.is_none());
        let mut big = b"\x40\x03x-d".to_vec();
        big.extend_from_slice(&literal(3000, b'd'));
        assert_eq!(fields(&mut blocks, 15, &big).len(), 1);
        assert_eq!(fields(&mut blocks, 17, &[0xbe, 0xbe]).len(), 2);
        assert!(blocks.last.is_none());
        assert_eq!(fields(&mut blocks, 19, &[0xbe]).len(), 1);
        assert!(blocks.last.is_some());
        // A padded frame is taken apart and decoded, never compared.
        let mut headers = Vec::new();
        let padded = frame(HEADERS, END_HEADERS | PADDED, 21, &[1, 0xbe, 0]);
        let head = Head::parse(&padded).unwrap();
        assert_eq!(blocks.fields(head, &padded, &mut headers), Some(false));
        assert_eq!(headers.len(), 1);
        // An undecodable block (index 70 is past the table) is refused.
        let bad = frame(HEADERS, END_HEADERS, 23, &[0x80 | 70]);
        let head = Head::parse(&bad).unwrap();
        assert_eq!(blocks.fields(head, &bad, &mut headers), None);
    }

    #[test]
    fn header_blocks_lose_their_padding_and_priority_and_join_their_continuations() {
        // PADDED (2 bytes of padding) and PRIORITY (5 bytes), then a CONTINUATION.
        let mut payload = vec![2u8];
        payload.extend_from_slice(&[0, 0, 0, 3, 16]);
        payload.extend_from_slice(b"abc");
        payload.extend_from_slice(&[0, 0]);
        let mut frames = frame(HEADERS, PADDED | PRIORITY_FLAG, 1, &payload);
        frames.extend_from_slice(&frame(CONTINUATION, END_HEADERS, 1, b"def"));
        let head = Head::parse(&frames).unwrap();
        assert_eq!(&header_block(head, &frames).unwrap()[..], b"abcdef");
        // Padding longer than the frame.
        let bad = frame(HEADERS, PADDED, 1, &[9, b'a']);
        assert!(header_block(Head::parse(&bad).unwrap(), &bad).is_none());
        // DATA padding.
        let data = frame(DATA, PADDED, 1, &[1, b'h', b'i', 0]);
        assert_eq!(
            data_payload(Head::parse(&data).unwrap(), &data),
            Some(&b"hi"[..])
        );
        let bad = frame(DATA, PADDED, 1, &[4, b'h']);
        assert_eq!(data_payload(Head::parse(&bad).unwrap(), &bad), None);
    }

    #[test]
    fn the_window_is_split_without_either_side_overdrawing_it() {
        // A hyper-sized window: half of it is kept for the fast path, h2 gets the rest.
        let mut split = Split::new();
        let passed = split.update(5 * 1024 * 1024 - 65_535, true);
        assert_eq!(split.send, 5 * 1024 * 1024);
        assert_eq!(split.pool(), 5 * 1024 * 1024 / 2);
        assert_eq!(split.h2, 65_535 + i64::from(passed));
        // Whatever the two send, their total never passes what the client allowed, and h2's
        // share never falls under the floor while something is kept.
        split.sent_here(1_000_000);
        assert_eq!(split.sent_by_h2(100_000), None);
        let before = split;
        let back = split
            .sent_by_h2(split.h2 as usize - 1_000)
            .expect("the pool given back");
        assert_eq!(i64::from(back), before.pool(), "all of what was kept");
        assert_eq!(split.pool(), 0);
        assert_eq!(split.h2, split.send);
        // With h2 low, the client's updates all go to h2; nothing is kept while draining.
        let mut low = Split::new();
        assert_eq!(low.sent_by_h2(60_000), None, "nothing to give back");
        assert_eq!(low.update(32_768, true), 32_768);
        let mut draining = Split::new();
        assert_eq!(draining.update(1 << 20, false), 1 << 20);
        assert_eq!(draining.pool(), 0);
        // The protocol's default window: the pool gets its share once h2 has enough.
        let mut default = Split::new();
        assert_eq!(default.sent_by_h2(32_768), None);
        assert_eq!(default.update(32_768, true), 0, "kept: h2 still has 32 KiB");
        assert_eq!(default.pool(), 32_768);
        assert!(default.send >= default.h2 && default.h2 >= 0);
    }

    #[test]
    fn only_a_plain_get_secret_is_taken() {
        let block = |extra: &[(&str, &str)]| {
            let mut block = BytesMut::new();
            for (name, value) in [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", GET_SECRET),
                (":authority", "/run/psst/psst.sock"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]
            .iter()
            .chain(extra)
            {
                encode_literal(&mut block, name.as_bytes(), value.as_bytes());
            }
            let mut decoder = hpack::Decoder::new(TABLE_SIZE);
            let mut headers = Vec::new();
            decoder
                .decode(&mut Cursor::new(&mut block), |h| {
                    headers.push(h);
                    ControlFlow::Continue(())
                })
                .unwrap();
            is_plain_get_secret(&headers)
        };
        assert!(block(&[]));
        assert!(block(&[
            ("grpc-encoding", "identity"),
            ("grpc-timeout", "1S")
        ]));
        assert!(!block(&[("grpc-encoding", "gzip")]));
        assert!(!block(&[("connection", "close")]));
        assert!(!block(&[("te", "gzip")]));
        assert!(!block(&[("content-type", "application/json")]));
    }
}
