package psst

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/psst-dev/psst/clients/go/psstv1"
)

// EventKind says what a WatchEvent reports.
type EventKind int32

const (
	// EventCurrent is the state when the watch starts: Secret holds the current version.
	EventCurrent = EventKind(psstv1.WatchEvent_CURRENT)
	// EventNewVersion is a new current version: Secret holds it, PreviousVersionID is the
	// version it replaced (the one the reader had).
	EventNewVersion = EventKind(psstv1.WatchEvent_NEW_VERSION)
	// EventPendingVersion is a version staged but not current yet (a rotation started):
	// PendingVersionID names it. Secret is nil.
	EventPendingVersion = EventKind(psstv1.WatchEvent_PENDING_VERSION)
	// EventDeleted says the secret no longer exists. Secret is nil.
	EventDeleted = EventKind(psstv1.WatchEvent_DELETED)
)

// String is the kind as the proto spells it: "CURRENT", "NEW_VERSION", "PENDING_VERSION",
// "DELETED".
func (k EventKind) String() string { return psstv1.WatchEvent_Kind(k).String() }

// WatchEvent is one change a Watch reports.
//
// Like Secret, it never shows the value when printed (fmt, slog).
type WatchEvent struct {
	// Reference is the watched reference, as passed to Watch.
	Reference string
	Kind      EventKind
	// Secret is the new current version for EventCurrent and EventNewVersion, nil otherwise.
	Secret *Secret
	// PreviousVersionID is, for EventNewVersion, the version the reader had before this one
	// (when events were folded together, the one before the first of them). For
	// EventPendingVersion it is the current version.
	PreviousVersionID string
	// PendingVersionID is the staged version of an EventPendingVersion.
	PendingVersionID string
	// ObservedAt is when the agent saw the change; zero when it does not say.
	ObservedAt time.Time
}

func (e *WatchEvent) carriesValue() bool {
	return e.Kind == EventCurrent || e.Kind == EventNewVersion
}

// String describes the event without the secret's value.
func (e WatchEvent) String() string {
	var b strings.Builder
	b.WriteString("psst.WatchEvent{Reference: " + strconv.Quote(e.Reference) + ", Kind: " + e.Kind.String())
	if e.Secret != nil {
		b.WriteString(", VersionID: " + strconv.Quote(e.Secret.VersionID))
	}
	if e.PreviousVersionID != "" {
		b.WriteString(", PreviousVersionID: " + strconv.Quote(e.PreviousVersionID))
	}
	if e.PendingVersionID != "" {
		b.WriteString(", PendingVersionID: " + strconv.Quote(e.PendingVersionID))
	}
	if e.Secret != nil {
		b.WriteString(", Value: <redacted " + strconv.Itoa(len(e.Secret.value)) + " bytes>")
	}
	b.WriteString("}")
	return b.String()
}

// GoString is String: %#v does not show the value either.
func (e WatchEvent) GoString() string { return e.String() }

// Format makes every fmt verb print String.
func (e WatchEvent) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(e.String())) }

// LogValue makes slog log the event without the value.
func (e WatchEvent) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("reference", e.Reference),
		slog.String("kind", e.Kind.String()),
	}
	if e.Secret != nil {
		attrs = append(attrs, slog.Any("secret", *e.Secret))
	}
	if e.PreviousVersionID != "" {
		attrs = append(attrs, slog.String("previous_version_id", e.PreviousVersionID))
	}
	if e.PendingVersionID != "" {
		attrs = append(attrs, slog.String("pending_version_id", e.PendingVersionID))
	}
	return slog.GroupValue(attrs...)
}

func watchEventFromProto(p *psstv1.WatchEvent) *WatchEvent {
	e := &WatchEvent{
		Reference:         p.GetReference(),
		Kind:              EventKind(p.GetKind()),
		PreviousVersionID: p.GetPreviousVersionId(),
		PendingVersionID:  p.GetPendingVersionId(),
		ObservedAt:        timeOf(p.GetObservedAt()),
	}
	if p.GetSecret() != nil {
		e.Secret = secretFromProto(p.GetSecret())
	}
	return e
}

// WatchStatus is a change in whether a watch can reach the agent (see Watch.Status).
type WatchStatus struct {
	// Reachable is false when the stream broke and reconnecting failed: the watch keeps trying
	// (unless WithWatchGiveUp ends it), and the values the reader has may be out of date.
	// It is true again once the agent has taken the watch back.
	Reachable bool
	// Err says why the agent is unreachable (an UNAVAILABLE *Error); nil when Reachable.
	Err error
	// Since is when this status began.
	Since time.Time
}

// ErrWatchClosed is what Next returns once the watch was closed with Close.
var ErrWatchClosed = &Error{Code: codes.Canceled, Message: "the watch was closed", cause: context.Canceled}

// Watch follows secrets: see Client.Watch. Read it with Next, or range over Events and check
// Err at the end; Close it when done.
type Watch struct {
	c      *Client
	refs   []string
	ctx    context.Context
	cancel context.CancelFunc
	out    chan *WatchEvent
	done   chan struct{}
	closed chan struct{}
	close1 sync.Once
	status chan WatchStatus // holds the latest status only

	mu  sync.Mutex
	err error // what ended the watch; set before out is closed
}

func (w *Watch) setErr(err error) {
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
}

func (w *Watch) endErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Watch follows references: for each, the current secret first (EventCurrent), then one event
// per change (EventNewVersion, EventPendingVersion, EventDeleted). It returns at once; what
// the agent says, including a refusal (PERMISSION_DENIED, NOT_FOUND, INVALID_ARGUMENT), comes
// from Next.
//
// The watch reconnects by itself when the agent restarts or the stream breaks (UNAVAILABLE,
// or UNKNOWN, INTERNAL, CANCELLED from a reset connection), for as long as it is open: the
// first attempt at once, then exponential backoff with jitter capped at WithWatchBackoff
// (default 5s, at most 30s). Status reports when the agent becomes unreachable and reachable
// again; WithWatchGiveUp opts in to ending the watch with UNAVAILABLE after failing for that
// long. On reconnect it tells the agent the version it last received per reference
// (known_versions), so a version is never delivered twice and a change made while it was away
// arrives as EventNewVersion. Any other error ends the watch.
//
// Events are received in the background and folded until read: when several changes of one
// reference arrived since the last Next, the reader gets one event for the newest version,
// whose PreviousVersionID is the version it had (an EventCurrent not yet read stays
// EventCurrent). A slow reader gets the latest value, never a backlog.
//
// ctx bounds the whole watch; Close ends it too and releases its resources.
func (c *Client) Watch(ctx context.Context, references ...string) (*Watch, error) {
	if len(references) == 0 {
		return nil, &Error{Code: codes.InvalidArgument, Message: "watch at least one reference"}
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &Watch{
		c:      c,
		refs:   append([]string(nil), references...),
		ctx:    wctx,
		cancel: cancel,
		out:    make(chan *WatchEvent),
		done:   make(chan struct{}),
		closed: make(chan struct{}),
		status: make(chan WatchStatus, 1),
	}
	go w.run()
	return w, nil
}

// Next waits for the next event. It returns an error (an *Error) when the watch has ended: the
// agent's (PERMISSION_DENIED when the grant is revoked, NOT_FOUND, INVALID_ARGUMENT),
// UNAVAILABLE when reconnecting failed for the WithWatchGiveUp time, the watch context's
// (CANCELLED, DEADLINE_EXCEEDED; errors.Is works with the context errors), or ErrWatchClosed.
// Once ended it keeps returning that error.
//
// ctx bounds this wait only: when it ends, Next returns its error and the watch goes on.
func (w *Watch) Next(ctx context.Context) (*WatchEvent, error) {
	select {
	case e, ok := <-w.out:
		if ok {
			return e, nil
		}
		if err := w.endErr(); err != nil {
			return nil, err
		}
		return nil, ErrWatchClosed
	case <-ctx.Done():
		return nil, fromRPC(ctx, status.FromContextError(ctx.Err()).Err())
	}
}

// Events is the events as a channel, for select loops:
//
//	for e := range w.Events() { ... }
//	if err := w.Err(); err != nil { ... }
//
// It is unbuffered, and events are folded until received, so a slow reader still gets the
// latest value. The channel is closed when the watch ends; Err then says why. Use Events or
// Next, not both.
func (w *Watch) Events() <-chan *WatchEvent { return w.out }

// Err is the error that ended the watch (see Next), once the Events channel is closed; nil
// while the watch runs, and after Close.
func (w *Watch) Err() error { return w.endErr() }

// Status delivers the watch's reachability changes: WatchStatus{Reachable: false} when the
// stream broke and reconnecting failed, Reachable: true once the agent took the watch back. The
// watch goes on either way. The channel holds the latest change only (an unread one is
// replaced), so a reader that never looks costs nothing.
func (w *Watch) Status() <-chan WatchStatus { return w.status }

// setStatus replaces any unread status with s. Only run sends, so the drain cannot race.
func (w *Watch) setStatus(s WatchStatus) {
	select {
	case <-w.status:
	default:
	}
	w.status <- s
}

// Close ends the watch and waits for its goroutines. It is safe to call more than once and
// concurrently with Next.
func (w *Watch) Close() error {
	w.close1.Do(func() { close(w.closed) })
	w.cancel()
	<-w.done
	return nil
}

// streamMsg is what a receiving goroutine reports about its stream, in order.
type streamMsg struct {
	event       *WatchEvent
	established bool  // the agent answered with headers: the stream is up
	err         error // the stream ended (io.EOF when it ended without a status)
}

// run owns the watch's state: the events received and not yet read (folded), the versions
// received per reference (sent on reconnect), and the reconnect backoff.
func (w *Watch) run() {
	defer close(w.done)
	defer w.cancel()
	defer close(w.out)

	var (
		queue        []*WatchEvent
		known        = map[string]string{}
		incoming     chan streamMsg
		reconnect    <-chan time.Time
		failingSince time.Time
		attempts     int
		delay        = w.c.cfg.initialBackoff
		final        error // ends the watch once the queue is read
		unreachable  bool  // reported through Status
	)
	connect := func() {
		req := &psstv1.WatchSecretsRequest{References: w.refs}
		if len(known) > 0 {
			req.KnownVersions = make(map[string]string, len(known))
			for k, v := range known {
				req.KnownVersions[k] = v
			}
		}
		incoming = make(chan streamMsg)
		go w.receive(req, incoming)
	}
	connect()

	for {
		var out chan *WatchEvent
		var head *WatchEvent
		if len(queue) > 0 {
			out, head = w.out, queue[0]
		} else if final != nil {
			w.setErr(final)
			return
		}
		select {
		case <-w.ctx.Done():
			select {
			case <-w.closed:
			default:
				w.setErr(fromRPC(w.ctx, status.FromContextError(w.ctx.Err()).Err()))
			}
			for _, e := range queue {
				if e.Secret != nil {
					e.Secret.Wipe()
				}
			}
			return
		case out <- head:
			queue[0] = nil
			queue = queue[1:]
		case <-reconnect:
			reconnect = nil
			connect()
		case m := <-incoming:
			switch {
			case m.established:
				failingSince, attempts = time.Time{}, 0
				if unreachable {
					unreachable = false
					w.setStatus(WatchStatus{Reachable: true, Since: time.Now()})
				}
			case m.event != nil:
				failingSince, attempts, delay = time.Time{}, 0, w.c.cfg.initialBackoff
				if m.event.Secret != nil {
					known[m.event.Reference] = m.event.Secret.VersionID
				}
				queue = fold(queue, m.event)
			default:
				incoming = nil
				if w.ctx.Err() != nil {
					continue // the Done case ends it
				}
				if w.c.conn.GetState() == connectivity.Shutdown {
					final = &Error{Code: codes.Canceled, Message: "watch: the client was closed"}
					continue
				}
				if !brokenStream(m.err) {
					final = fromRPC(w.ctx, m.err)
					continue
				}
				if pe := w.c.untrusted.Load(); pe != nil {
					final = pe.asError()
					continue
				}
				now := time.Now()
				attempts++
				first := failingSince.IsZero()
				if first {
					failingSince = now
				}
				// The opt-in give-up, after that long of failures in a row.
				if g := w.c.cfg.watchGiveUp; g > 0 && !first && now.Sub(failingSince) >= g {
					final = w.c.unreachable(m.err, attempts, now.Sub(failingSince))
					continue
				}
				// The first attempt after a stream broke is immediate; when it fails too, the
				// agent is down: say so, and back off.
				wait := time.Duration(0)
				if !first {
					if !unreachable {
						unreachable = true
						w.setStatus(WatchStatus{Err: w.c.unreachable(m.err, 1, 0), Since: failingSince})
					}
					wait = jitter(delay)
					delay = min(2*delay, w.c.cfg.watchMaxDelay)
				}
				if g := w.c.cfg.watchGiveUp; g > 0 {
					wait = min(wait, max(0, g-now.Sub(failingSince)))
				}
				reconnect = time.After(wait)
			}
		}
	}
}

// receive opens one stream and reports what it gets on ch until the stream ends.
func (w *Watch) receive(req *psstv1.WatchSecretsRequest, ch chan<- streamMsg) {
	send := func(m streamMsg) bool {
		select {
		case ch <- m:
			return true
		case <-w.ctx.Done():
			return false
		}
	}
	stream, err := w.c.secrets.WatchSecrets(w.ctx, req)
	if err != nil {
		send(streamMsg{err: err})
		return
	}
	// Headers mean the agent took the watch (a refusal comes as a status without them).
	if md, err := stream.Header(); err == nil && md != nil {
		if !send(streamMsg{established: true}) {
			return
		}
	}
	for {
		p, err := stream.Recv()
		if err != nil {
			send(streamMsg{err: err})
			return
		}
		if !send(streamMsg{event: watchEventFromProto(p)}) {
			return
		}
	}
}

// brokenStream reports a stream that ended because the connection did (the agent restarting):
// UNAVAILABLE, or UNKNOWN, INTERNAL or CANCELLED from a reset, or an end without a status.
// Those are reconnected and resumed.
func brokenStream(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Unknown, codes.Internal, codes.Canceled:
		return true
	}
	return false
}

// fold adds e to the events not yet read. A new version of a reference whose last unread event
// also carries a version replaces that event: the reader gets the newest version, with the
// previous version it actually had (and CURRENT stays CURRENT). Other events are kept in order.
func fold(queue []*WatchEvent, e *WatchEvent) []*WatchEvent {
	if e.carriesValue() {
		for i := len(queue) - 1; i >= 0; i-- {
			earlier := queue[i]
			if earlier.Reference != e.Reference {
				continue
			}
			if earlier.carriesValue() {
				e.PreviousVersionID = earlier.PreviousVersionID
				if earlier.Kind == EventCurrent {
					e.Kind = EventCurrent
				}
				if earlier.Secret != nil {
					earlier.Secret.Wipe()
				}
				queue[i] = e
				return queue
			}
			break
		}
	}
	return append(queue, e)
}
