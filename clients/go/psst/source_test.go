package psst_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/psst-dev/psst/clients/go/psst"
	"github.com/psst-dev/psst/clients/go/psstv1"
)

func newSource(t *testing.T, c *psst.Client, refs ...string) *psst.Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := psst.NewSource(ctx, c, refs...)
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func expectValue(t *testing.T, s *psst.Source, ref, want string) {
	t.Helper()
	v, err := s.Get(ref)
	if err != nil || v.Text() != want {
		t.Fatalf("Get(%s) = %v, %v; want %q", ref, v, err, want)
	}
}

func expectUpdated(t *testing.T, s *psst.Source) {
	t.Helper()
	select {
	case _, ok := <-s.Updated():
		if !ok {
			t.Fatalf("Updated closed: %v", s.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no update within 5s")
	}
}

func TestSourceFollowsRotations(t *testing.T) {
	f, _, _, c := watchSetup(t)
	steps := make(chan []*psstv1.WatchEvent)
	f.handlers <- script(steps, nil, event("a", current, "1", ""), event("b", current, "7", ""))
	s := newSource(t, c, "a", "b", "a")
	expectValue(t, s, "a", "value-1")
	expectValue(t, s, "b", "value-7")
	if _, err := s.Get("c"); !psst.IsInvalidArgument(err) {
		t.Errorf("Get of a reference not followed = %v, want INVALID_ARGUMENT", err)
	}

	steps <- []*psstv1.WatchEvent{event("a", newVer, "2", "1")}
	expectUpdated(t, s)
	expectValue(t, s, "a", "value-2")
	// Neither a staged version nor a deletion replaces the value.
	steps <- []*psstv1.WatchEvent{event("a", pending, "3", "2"), event("b", deleted, "", "7")}
	time.Sleep(settling)
	expectValue(t, s, "a", "value-2")
	expectValue(t, s, "b", "value-7")
}

// Errors never replace a good value: with the agent gone, Get answers from memory and Status
// says the agent is unreachable; a revoked grant ends the following, not the values.
func TestSourceKeepsTheLastGoodValue(t *testing.T) {
	f, _, srv, c := watchSetup(t)
	f.handlers <- script(nil, nil, event("a", current, "1", ""))
	s := newSource(t, c, "a")
	srv.Stop()
	select {
	case st := <-s.Status():
		if st.Reachable {
			t.Fatalf("status %+v, want unreachable", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no unreachable status")
	}
	expectValue(t, s, "a", "value-1")

	f2, _, _, c2 := watchSetup(t)
	ended := make(chan []*psstv1.WatchEvent)
	close(ended)
	f2.handlers <- script(ended, status.Error(codes.PermissionDenied, "revoked"), event("a", current, "1", ""))
	s2 := newSource(t, c2, "a")
	select {
	case _, ok := <-s2.Updated():
		if ok || !psst.IsPermissionDenied(s2.Err()) {
			t.Fatalf("Updated open=%v, Err = %v; want closed with PERMISSION_DENIED", ok, s2.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked grant did not end the source")
	}
	expectValue(t, s2, "a", "value-1")
}

func TestSourceRefusedAtStart(t *testing.T) {
	f, _, _, c := watchSetup(t)
	f.handlers <- func(*psstv1.WatchSecretsRequest, watchStream) error {
		return status.Error(codes.PermissionDenied, "no watch grant")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s, err := psst.NewSource(ctx, c, "a"); !psst.IsPermissionDenied(err) {
		t.Fatalf("NewSource = %v, %v; want PERMISSION_DENIED", s, err)
	}
}
