package psst_test

// The client keeps working through an agent that is away for longer than any retry budget:
// watches reconnect for as long as they are open and say when the agent is unreachable, and
// every unary call (not only the first) waits for the agent within its deadline.

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/psst-dev/psst/clients/go/psst"
	"github.com/psst-dev/psst/clients/go/psstv1"
)

func expectStatus(t *testing.T, w *psst.Watch, reachable bool, within time.Duration) psst.WatchStatus {
	t.Helper()
	select {
	case s := <-w.Status():
		if s.Reachable != reachable {
			t.Fatalf("status = %+v, want Reachable %v", s, reachable)
		}
		return s
	case <-time.After(within):
		t.Fatalf("no status Reachable=%v within %v", reachable, within)
	}
	return psst.WatchStatus{}
}

// Away for 2.5 s (the old 5 s budget would do; this runs with a 300 ms give-up-free backoff cap
// so the test stays short), the watch neither ends nor repeats a version.
func TestWatchOutlivesALongOutageAndReportsIt(t *testing.T) {
	f, sock, srv, c := watchSetup(t, psst.WithWatchBackoff(300*time.Millisecond), psst.WithRetryTimeout(100*time.Millisecond))
	f.handlers <- script(nil, nil, event("a", current, "1", ""))
	w := openWatch(t, c, "a")
	expectEvents(t, w, "a CURRENT 1<-")
	srv.Stop()
	s := expectStatus(t, w, false, 3*time.Second)
	if !psst.IsUnavailable(s.Err) || s.Since.IsZero() {
		t.Errorf("unreachable status = %+v, want an UNAVAILABLE error and a start", s)
	}
	expectQuiet(t, w, 2500*time.Millisecond) // neither an event nor an end
	f2 := newWatchFake()
	f2.handlers <- script(nil, nil, event("a", newVer, "2", "1"))
	serveWatch(t, sock, f2)
	expectEvents(t, w, "a NEW_VERSION 2<-1")
	expectStatus(t, w, true, 3*time.Second)
	if reqs := f2.calls(); len(reqs) != 1 || reqs[0].GetKnownVersions()["a"] != "1" {
		t.Errorf("resumed with %v, want known_versions a=1", reqs)
	}
}

// The backoff between reconnects is capped: after a long outage the watch is back within about
// the cap of the agent's return, not after an ever-growing delay.
func TestWatchBackoffIsCapped(t *testing.T) {
	f, sock, srv, c := watchSetup(t, psst.WithWatchBackoff(200*time.Millisecond))
	f.handlers <- script(nil, nil, event("a", current, "1", ""))
	w := openWatch(t, c, "a")
	expectEvents(t, w, "a CURRENT 1<-")
	srv.Stop()
	time.Sleep(3 * time.Second)
	f2 := newWatchFake()
	f2.handlers <- script(nil, nil, event("a", newVer, "2", "1"))
	start := time.Now()
	serveWatch(t, sock, f2)
	expectEvents(t, w, "a NEW_VERSION 2<-1")
	if back := time.Since(start); back > 2*time.Second {
		t.Errorf("back %v after the agent returned; the cap is 200ms (+ gRPC's 1s reconnect)", back)
	}
}

// Each call waits for the agent within its deadline, also after earlier calls succeeded.
func TestEveryCallRetriesWithinItsDeadline(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "psst.sock")
	f := &fakeAgent{errs: map[string]error{}}
	srv, err := serveAgent(sock, f)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, psst.WithSocket(sock), psst.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
	if _, err := c.Get(ctx(t), "local:x"); err != nil {
		t.Fatalf("first Get: %v", err)
	}
	srv.Stop()
	for round := 0; round < 2; round++ {
		// The agent comes back late; t.Fatal belongs to this goroutine, so the late one reports.
		back := make(chan *grpc.Server, 1)
		go func() {
			time.Sleep(700 * time.Millisecond)
			srv, err := serveAgent(sock, f)
			if err != nil {
				t.Errorf("the late agent could not listen: %v", err)
			}
			back <- srv
		}()
		start := time.Now()
		s, err := c.Get(ctx(t), "local:x")
		if srv := <-back; srv != nil {
			defer srv.Stop()
			if err != nil || s.Text() != secretValue {
				t.Fatalf("round %d: Get while the agent is away = %v, %v", round, s, err)
			}
			if waited := time.Since(start); waited < 600*time.Millisecond {
				t.Errorf("round %d: answered after %v, before the agent was back?", round, waited)
			}
			srv.Stop()
		}
	}
}

// serveAgent starts a fake agent on sock without a *testing.T (it may run on another goroutine).
func serveAgent(sock string, f *fakeAgent) (*grpc.Server, error) {
	lis, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer()
	psstv1.RegisterSecretsServer(srv, f)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	return srv, nil
}

// A call without a deadline gets the client's default one; a deadline ends the wait with
// DEADLINE_EXCEEDED saying the agent could not be reached.
func TestDefaultCallDeadline(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nobody-here.sock")
	c := newClient(t, psst.WithSocket(missing), psst.WithCallTimeout(500*time.Millisecond))
	start := time.Now()
	_, err := c.Get(context.Background(), "local:x")
	elapsed := time.Since(start)
	if psst.Code(err) != codes.DeadlineExceeded || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DEADLINE_EXCEEDED", err)
	}
	if elapsed < 450*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("gave up after %v, want about the 500ms default deadline", elapsed)
	}
	if msg := err.Error(); !strings.Contains(msg, missing) || !strings.Contains(msg, "attempts") {
		t.Errorf("message %q should name the socket and the attempts", msg)
	}
}
