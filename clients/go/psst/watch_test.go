package psst_test

// Unit tests of Client.Watch against an in-process fake agent whose WatchSecrets streams are
// scripted by each test.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/psst-dev/psst/clients/go/psst"
	"github.com/psst-dev/psst/clients/go/psstv1"
)

type watchStream = grpc.ServerStreamingServer[psstv1.WatchEvent]

// watchHandler serves one WatchSecrets call.
type watchHandler func(req *psstv1.WatchSecretsRequest, stream watchStream) error

// watchFake records every WatchSecrets request and serves each with the next queued handler
// (a call with none queued waits for one).
type watchFake struct {
	psstv1.UnimplementedSecretsServer
	mu       sync.Mutex
	requests []*psstv1.WatchSecretsRequest
	handlers chan watchHandler
}

func newWatchFake() *watchFake { return &watchFake{handlers: make(chan watchHandler, 16)} }

func (f *watchFake) WatchSecrets(req *psstv1.WatchSecretsRequest, stream watchStream) error {
	f.mu.Lock()
	f.requests = append(f.requests, proto.Clone(req).(*psstv1.WatchSecretsRequest))
	f.mu.Unlock()
	select {
	case h := <-f.handlers:
		return h(req, stream)
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
}

func (f *watchFake) calls() []*psstv1.WatchSecretsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// serveWatch starts a fake agent on sock; the test may Stop it early (an agent going away).
func serveWatch(t *testing.T, sock string, f *watchFake) *grpc.Server {
	t.Helper()
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	psstv1.RegisterSecretsServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return srv
}

func event(ref string, kind psstv1.WatchEvent_Kind, version, previous string) *psstv1.WatchEvent {
	e := &psstv1.WatchEvent{Reference: ref, Kind: kind, PreviousVersionId: previous, ObservedAt: timestamppb.New(created)}
	switch kind {
	case psstv1.WatchEvent_CURRENT, psstv1.WatchEvent_NEW_VERSION:
		e.Secret = &psstv1.Secret{Reference: ref, Value: []byte("value-" + version), VersionId: version}
	case psstv1.WatchEvent_PENDING_VERSION:
		e.PendingVersionId = version
	}
	return e
}

// sendAll starts a stream: it sends headers first, as the agent does, then the events.
func sendAll(stream watchStream, events ...*psstv1.WatchEvent) error {
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	return sendMore(stream, events...)
}

func sendMore(stream watchStream, events ...*psstv1.WatchEvent) error {
	for _, e := range events {
		if err := stream.Send(e); err != nil {
			return err
		}
	}
	return nil
}

// script returns a handler that sends events, then waits for the test: each value received
// on steps is sent too; a closed steps channel ends the stream with end.
func script(steps <-chan []*psstv1.WatchEvent, end error, first ...*psstv1.WatchEvent) watchHandler {
	return func(_ *psstv1.WatchSecretsRequest, stream watchStream) error {
		if err := sendAll(stream, first...); err != nil {
			return err
		}
		for {
			select {
			case batch, ok := <-steps:
				if !ok {
					return end
				}
				if err := sendMore(stream, batch...); err != nil {
					return err
				}
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
		}
	}
}

// describe is "ref KIND version<-previous" (the value checked against the version).
func describe(t *testing.T, e *psst.WatchEvent) string {
	t.Helper()
	s := e.Reference + " " + e.Kind.String()
	if e.Secret != nil {
		if e.Secret.Text() != "value-"+e.Secret.VersionID {
			t.Errorf("%v carries %q", e, e.Secret.Text())
		}
		s += " " + e.Secret.VersionID
	}
	if e.PendingVersionID != "" {
		s += " pending " + e.PendingVersionID
	}
	return s + "<-" + e.PreviousVersionID
}

// expectEvents reads len(want) events, each within 5s, and compares them.
func expectEvents(t *testing.T, w *psst.Watch, want ...string) {
	t.Helper()
	for i, wantOne := range want {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		e, err := w.Next(c)
		cancel()
		if err != nil {
			t.Fatalf("event %d: %v, want %s", i, err, wantOne)
		}
		if got := describe(t, e); got != wantOne {
			t.Fatalf("event %d = %s, want %s", i, got, wantOne)
		}
	}
}

// expectQuiet checks that no event arrives for a while (no duplicate, nothing unfolded).
func expectQuiet(t *testing.T, w *psst.Watch, d time.Duration) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if e, err := w.Next(c); err == nil {
		t.Fatalf("unexpected event %s", describe(t, e))
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unexpected end of the watch: %v", err)
	}
}

func watchSetup(t *testing.T, opts ...psst.Option) (*watchFake, string, *grpc.Server, *psst.Client) {
	t.Helper()
	f := newWatchFake()
	sock := filepath.Join(t.TempDir(), "psst.sock")
	srv := serveWatch(t, sock, f)
	c := newClient(t, append([]psst.Option{psst.WithSocket(sock), psst.WithBackoff(10*time.Millisecond, 50*time.Millisecond)}, opts...)...)
	return f, sock, srv, c
}

func openWatch(t *testing.T, c *psst.Client, refs ...string) *psst.Watch {
	t.Helper()
	w, err := c.Watch(context.Background(), refs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

const (
	current  = psstv1.WatchEvent_CURRENT
	newVer   = psstv1.WatchEvent_NEW_VERSION
	pending  = psstv1.WatchEvent_PENDING_VERSION
	deleted  = psstv1.WatchEvent_DELETED
	settling = 300 * time.Millisecond // for events sent to reach the client before it reads
)

func TestWatchMapsEveryField(t *testing.T) {
	f, _, _, c := watchSetup(t)
	f.handlers <- script(nil, nil, event("local:a", current, "1", ""))
	w := openWatch(t, c, "local:a", "local:b")
	e, err := w.Next(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if e.Reference != "local:a" || e.Kind != psst.EventCurrent || e.Secret.Text() != "value-1" ||
		e.Secret.VersionID != "1" || e.Secret.Reference != "local:a" || !e.ObservedAt.Equal(created) {
		t.Errorf("event = %v (%s)", e, e.Secret.Text())
	}
	req := f.calls()[0]
	if !slices.Equal(req.GetReferences(), []string{"local:a", "local:b"}) || len(req.GetKnownVersions()) != 0 {
		t.Errorf("request = %v", req)
	}
	if psst.EventCurrent.String() != "CURRENT" || psst.EventNewVersion.String() != "NEW_VERSION" ||
		psst.EventPendingVersion.String() != "PENDING_VERSION" || psst.EventDeleted.String() != "DELETED" {
		t.Errorf("kind names")
	}
	if _, err := c.Watch(context.Background()); !psst.IsInvalidArgument(err) {
		t.Errorf("Watch without references = %v, want INVALID_ARGUMENT", err)
	}
}

// Events that arrived before the reader asked are folded: a slow reader gets the newest
// version of each reference, with the previous version it actually had.
func TestWatchFoldsEventsThatArrivedTogether(t *testing.T) {
	f, _, _, c := watchSetup(t)
	steps := make(chan []*psstv1.WatchEvent)
	f.handlers <- script(steps, nil,
		event("a", current, "1", ""), event("a", newVer, "2", "1"), event("b", current, "7", ""),
		event("a", newVer, "3", "2"), event("b", pending, "8", "7"))
	w := openWatch(t, c, "a", "b")
	time.Sleep(settling)
	expectEvents(t, w, "a CURRENT 3<-", "b CURRENT 7<-", "b PENDING_VERSION pending 8<-7")
	expectQuiet(t, w, 100*time.Millisecond)

	steps <- []*psstv1.WatchEvent{event("b", newVer, "8", "7"), event("a", newVer, "4", "3"), event("a", newVer, "5", "4"), event("b", newVer, "9", "8")}
	time.Sleep(settling)
	expectEvents(t, w, "b NEW_VERSION 9<-7", "a NEW_VERSION 5<-3")

	// A deletion between two versions is not folded over.
	steps <- []*psstv1.WatchEvent{event("a", newVer, "6", "5"), event("a", deleted, "", ""), event("a", newVer, "1", "")}
	time.Sleep(settling)
	expectEvents(t, w, "a NEW_VERSION 6<-5", "a DELETED<-", "a NEW_VERSION 1<-")
	expectQuiet(t, w, 100*time.Millisecond)

	// Read as they come, nothing is folded.
	for _, v := range []string{"2", "3"} {
		prev := map[string]string{"2": "1", "3": "2"}[v]
		steps <- []*psstv1.WatchEvent{event("a", newVer, v, prev)}
		expectEvents(t, w, "a NEW_VERSION "+v+"<-"+prev)
	}
}

// The stream breaking (the agent shutting down, or going away) is reconnected, and the new
// request carries known_versions: what the reader has, plus what it received and has not read
// yet, so no version is delivered twice.
func TestWatchResumesWithKnownVersions(t *testing.T) {
	f, sock, srv, c := watchSetup(t)
	steps := make(chan []*psstv1.WatchEvent)
	// 1: the agent says it is shutting down (UNAVAILABLE status on the stream).
	f.handlers <- script(steps, status.Error(codes.Unavailable, "the agent is shutting down"),
		event("a", current, "1", ""), event("b", current, "7", ""))
	w := openWatch(t, c, "a", "b")
	expectEvents(t, w, "a CURRENT 1<-", "b CURRENT 7<-")
	close(steps)

	// 2: a change made meanwhile comes as a new version, which the client receives but the
	// reader does not read before the agent goes away altogether.
	sent := make(chan struct{})
	f.handlers <- func(req *psstv1.WatchSecretsRequest, stream watchStream) error {
		if err := sendAll(stream, event("a", newVer, "2", req.GetKnownVersions()["a"])); err != nil {
			return err
		}
		close(sent)
		<-stream.Context().Done()
		return nil
	}
	select {
	case <-sent:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not reconnect after UNAVAILABLE")
	}
	time.Sleep(settling)
	srv.Stop()

	// 3: a new agent on the same socket, after a while.
	time.Sleep(200 * time.Millisecond)
	f2 := newWatchFake()
	f2.handlers <- script(nil, nil) // nothing new: the watch is up to date
	serveWatch(t, sock, f2)
	expectEvents(t, w, "a NEW_VERSION 2<-1")
	deadline := time.Now().Add(5 * time.Second)
	for len(f2.calls()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	expectQuiet(t, w, 200*time.Millisecond)

	reqs := append(f.calls(), f2.calls()...)
	if len(reqs) != 3 {
		t.Fatalf("%d WatchSecrets calls, want 3", len(reqs))
	}
	wantKnown := []map[string]string{{}, {"a": "1", "b": "7"}, {"a": "2", "b": "7"}}
	for i, r := range reqs {
		if !slices.Equal(r.GetReferences(), []string{"a", "b"}) {
			t.Errorf("call %d: references %q", i, r.GetReferences())
		}
		got := r.GetKnownVersions()
		if got == nil {
			got = map[string]string{}
		}
		if !maps.Equal(got, wantKnown[i]) {
			t.Errorf("call %d: known_versions = %v, want %v", i, got, wantKnown[i])
		}
	}
}

// A stream reset (INTERNAL, UNKNOWN, CANCELLED from the agent) is reconnected too.
func TestWatchReconnectsAfterAReset(t *testing.T) {
	for _, code := range []codes.Code{codes.Internal, codes.Unknown, codes.Canceled} {
		t.Run(psst.CodeName(code), func(t *testing.T) {
			f, _, _, c := watchSetup(t)
			steps := make(chan []*psstv1.WatchEvent)
			f.handlers <- script(steps, status.Error(code, "stream reset"), event("a", current, "1", ""))
			f.handlers <- script(nil, nil, event("a", newVer, "2", "1"))
			w := openWatch(t, c, "a")
			expectEvents(t, w, "a CURRENT 1<-")
			close(steps)
			expectEvents(t, w, "a NEW_VERSION 2<-1")
			if reqs := f.calls(); len(reqs) != 2 || reqs[1].GetKnownVersions()["a"] != "1" {
				t.Errorf("requests = %v", reqs)
			}
		})
	}
}

func TestWatchGivesUpWhenAskedTo(t *testing.T) {
	f, sock, srv, c := watchSetup(t, psst.WithWatchGiveUp(400*time.Millisecond))
	f.handlers <- script(nil, nil, event("a", current, "1", ""))
	w := openWatch(t, c, "a")
	expectEvents(t, w, "a CURRENT 1<-")
	srv.Stop()
	start := time.Now()
	_, err := w.Next(ctx(t))
	elapsed := time.Since(start)
	if !psst.IsUnavailable(err) || !strings.Contains(err.Error(), sock) {
		t.Fatalf("err = %v, want UNAVAILABLE naming the socket", err)
	}
	if elapsed < 400*time.Millisecond || elapsed > 4*time.Second {
		t.Errorf("gave up after %v, want about the 400ms give-up", elapsed)
	}
	// The end is sticky, and the channel form agrees.
	if _, err2 := w.Next(ctx(t)); err2 != err {
		t.Errorf("second Next = %v, want %v again", err2, err)
	}
	if _, ok := <-w.Events(); ok || w.Err() != err {
		t.Errorf("Events still open or Err = %v", w.Err())
	}
}

// Errors other than a broken stream end the watch at once, after the events before them.
func TestWatchErrorsEndIt(t *testing.T) {
	cases := []struct {
		code codes.Code
		is   func(error) bool
	}{
		{codes.PermissionDenied, psst.IsPermissionDenied},
		{codes.NotFound, psst.IsNotFound},
		{codes.InvalidArgument, psst.IsInvalidArgument},
		{codes.Unauthenticated, psst.IsUnauthenticated},
	}
	for _, tc := range cases {
		t.Run(psst.CodeName(tc.code), func(t *testing.T) {
			// At the start.
			f, _, _, c := watchSetup(t)
			f.handlers <- func(*psstv1.WatchSecretsRequest, watchStream) error {
				return status.Error(tc.code, "no")
			}
			w := openWatch(t, c, "a")
			if e, err := w.Next(ctx(t)); !tc.is(err) || e != nil || err.Error() != "psst: "+psst.CodeName(tc.code)+": no" {
				t.Fatalf("Next = %v, %v", e, err)
			}
			// Mid-stream (a revoked grant): the events received before it come first.
			steps := make(chan []*psstv1.WatchEvent)
			f.handlers <- script(steps, status.Error(tc.code, "revoked"), event("a", current, "1", ""))
			w2 := openWatch(t, c, "a")
			steps <- []*psstv1.WatchEvent{event("a", newVer, "2", "1")}
			close(steps)
			time.Sleep(settling)
			var got []string
			for e := range w2.Events() {
				got = append(got, describe(t, e))
			}
			if !slices.Equal(got, []string{"a CURRENT 2<-"}) || !tc.is(w2.Err()) {
				t.Errorf("events %q, Err %v", got, w2.Err())
			}
			time.Sleep(100 * time.Millisecond)
			if n := len(f.calls()); n != 2 {
				t.Errorf("%d calls: the watch reconnected after %s", n, psst.CodeName(tc.code))
			}
		})
	}
}

func TestWatchCloseAndContexts(t *testing.T) {
	f, _, _, c := watchSetup(t)
	for range 3 {
		f.handlers <- script(nil, nil, event("a", current, "1", ""))
	}

	// Next's own context bounds one wait; the watch goes on.
	w := openWatch(t, c, "a")
	expectEvents(t, w, "a CURRENT 1<-")
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := w.Next(short); !errors.Is(err, context.DeadlineExceeded) || psst.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Next with an expired context = %v", err)
	}

	// Close ends a Next blocked in another goroutine; Err is nil after Close.
	done := make(chan error)
	go func() {
		_, err := w.Next(context.Background())
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, psst.ErrWatchClosed) || !errors.Is(err, context.Canceled) {
			t.Errorf("Next after Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end Next")
	}
	if w.Err() != nil || w.Close() != nil {
		t.Errorf("Err after Close = %v", w.Err())
	}

	// The watch's context ends it with that context's error.
	wctx, wcancel := context.WithCancel(context.Background())
	w2, err := c.Watch(wctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	expectEvents(t, w2, "a CURRENT 1<-")
	wcancel()
	if _, err := w2.Next(ctx(t)); !errors.Is(err, context.Canceled) || psst.Code(err) != codes.Canceled {
		t.Errorf("Next after the watch context ended = %v", err)
	}

	// Closing the client ends its watches.
	w3 := openWatch(t, c, "a")
	expectEvents(t, w3, "a CURRENT 1<-")
	_ = c.Close()
	if _, err := w3.Next(ctx(t)); psst.Code(err) != codes.Canceled {
		t.Errorf("Next after the client closed = %v", err)
	}
}

func TestWatchEventNeverPrintsItsValue(t *testing.T) {
	f, _, _, c := watchSetup(t)
	f.handlers <- func(_ *psstv1.WatchSecretsRequest, stream watchStream) error {
		e := event("local:app/db", current, "3", "")
		e.Secret.Value = []byte(secretValue)
		return sendAll(stream, e)
	}
	w := openWatch(t, c, "local:app/db")
	e, err := w.Next(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		outputs = append(outputs, fmt.Sprintf(verb, e), fmt.Sprintf(verb, *e), fmt.Sprintf(verb, []*psst.WatchEvent{e}),
			fmt.Sprintf(verb, struct{ E psst.WatchEvent }{*e}))
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("changed", "event", e, "plain", *e)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("changed", "event", e)
	outputs = append(outputs, e.String(), e.GoString(), logs.String())
	for _, out := range outputs {
		if strings.Contains(out, "hunter2") || strings.Contains(out, fmt.Sprintf("%x", "hunter2")) {
			t.Errorf("output shows the value: %s", out)
		}
	}
	if s := e.String(); !strings.Contains(s, `"local:app/db"`) || !strings.Contains(s, "CURRENT") ||
		!strings.Contains(s, `VersionID: "3"`) || !strings.Contains(s, fmt.Sprintf("<redacted %d bytes>", len(secretValue))) {
		t.Errorf("String() = %s", s)
	}
	if !strings.Contains(logs.String(), "local:app/db") || !strings.Contains(logs.String(), "CURRENT") {
		t.Errorf("logs = %s", logs.String())
	}
}
