package psst_test

// Unit tests against an in-process fake agent (grpc-go server on a temp Unix socket).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/psst-dev/psst/clients/go/psst"
	"github.com/psst-dev/psst/clients/go/psstv1"
)

const secretValue = "hunter2-do-not-print"

// fakeAgent answers from a table: a reference maps to a value, or to an error code.
type fakeAgent struct {
	psstv1.UnimplementedSecretsServer
	mu          sync.Mutex
	calls       atomic.Int64
	authorities []string
	errs        map[string]error
	put         *psstv1.PutSecretRequest
}

func (f *fakeAgent) seen(ctx context.Context) {
	f.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.authorities = append(f.authorities, md.Get(":authority")...)
	f.mu.Unlock()
}

var created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func (f *fakeAgent) secret(ref string) (*psstv1.Secret, error) {
	if err, ok := f.errs[ref]; ok {
		return nil, err
	}
	return &psstv1.Secret{
		Reference: ref,
		Value:     []byte(secretValue),
		VersionId: "7",
		Stages:    []string{"AWSCURRENT"},
		CreatedAt: timestamppb.New(created),
		Cache:     &psstv1.CacheInfo{Hit: true, FetchedAt: timestamppb.New(created.Add(time.Minute))},
	}, nil
}

func (f *fakeAgent) GetSecret(ctx context.Context, r *psstv1.GetSecretRequest) (*psstv1.Secret, error) {
	f.seen(ctx)
	return f.secret(r.GetReference())
}

func (f *fakeAgent) BatchGetSecrets(ctx context.Context, r *psstv1.BatchGetSecretsRequest) (*psstv1.BatchGetSecretsResponse, error) {
	f.seen(ctx)
	out := &psstv1.BatchGetSecretsResponse{}
	for _, ref := range r.GetReferences() {
		item := &psstv1.BatchGetResult{Reference: ref}
		if ref == "empty" {
			// neither secret nor error
		} else if s, err := f.secret(ref); err != nil {
			st := status.Convert(err)
			item.Result = &psstv1.BatchGetResult_Error{Error: &psstv1.Error{Code: int32(st.Code()), Message: st.Message()}}
		} else {
			item.Result = &psstv1.BatchGetResult_Secret{Secret: s}
		}
		out.Results = append(out.Results, item)
	}
	return out, nil
}

func (f *fakeAgent) ListSecrets(ctx context.Context, r *psstv1.ListSecretsRequest) (*psstv1.ListSecretsResponse, error) {
	f.seen(ctx)
	if err, ok := f.errs[r.GetPrefix()]; ok {
		return nil, err
	}
	return &psstv1.ListSecretsResponse{Secrets: []*psstv1.SecretMetadata{
		{Reference: r.GetPrefix() + "a", VersionId: "1", UpdatedAt: timestamppb.New(created)},
		{Reference: r.GetPrefix() + "b", VersionId: "2"},
	}}, nil
}

func (f *fakeAgent) PutSecret(ctx context.Context, r *psstv1.PutSecretRequest) (*psstv1.PutSecretResponse, error) {
	f.seen(ctx)
	if err, ok := f.errs[r.GetReference()]; ok {
		return nil, err
	}
	f.mu.Lock()
	f.put = r
	f.mu.Unlock()
	return &psstv1.PutSecretResponse{Reference: r.GetReference() + "?version=3", VersionId: "3", CreatedAt: timestamppb.New(created)}, nil
}

func (f *fakeAgent) WhoAmI(ctx context.Context, _ *psstv1.WhoAmIRequest) (*psstv1.WhoAmIResponse, error) {
	f.seen(ctx)
	return &psstv1.WhoAmIResponse{
		Caller:       &psstv1.Caller{Uid: 1000, Gid: 1001, Pid: 42, User: "app", SupplementaryGids: []uint32{5, 6}, IdentitySource: "process"},
		Grants:       []*psstv1.Grant{{Operation: "read", Patterns: []string{"local:app/**"}}},
		MatchedRules: []string{"app"},
	}, nil
}

// serve starts a fake agent on sock and stops it when the test ends.
func serve(t *testing.T, sock string, f *fakeAgent, hs *health.Server) {
	t.Helper()
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	psstv1.RegisterSecretsServer(srv, f)
	if hs == nil {
		hs = health.NewServer()
	}
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
}

func newFake(t *testing.T) (*fakeAgent, string) {
	t.Helper()
	f := &fakeAgent{errs: map[string]error{}}
	sock := filepath.Join(t.TempDir(), "psst.sock")
	serve(t, sock, f, nil)
	return f, sock
}

func newClient(t *testing.T, opts ...psst.Option) *psst.Client {
	t.Helper()
	c, err := psst.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestGetMapsEveryField(t *testing.T) {
	f, sock := newFake(t)
	c := newClient(t, psst.WithSocket(sock))
	s, err := c.Get(ctx(t), "local:app/db")
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Value()) != secretValue || s.Text() != secretValue || !s.IsText() {
		t.Errorf("value = %q", s.Value())
	}
	if s.Reference != "local:app/db" || s.VersionID != "7" || len(s.Stages) != 1 || s.Stages[0] != "AWSCURRENT" {
		t.Errorf("metadata = %v %q %q", s.Reference, s.VersionID, s.Stages)
	}
	if !s.CreatedAt.Equal(created) || !s.Cache.Hit || s.Cache.Stale || !s.Cache.FetchedAt.Equal(created.Add(time.Minute)) || !s.Cache.ExpiresAt.IsZero() {
		t.Errorf("times/cache = %v %+v", s.CreatedAt, s.Cache)
	}
	s.Wipe()
	if s.Value() != nil || s.Text() != "" {
		t.Errorf("Wipe left %q", s.Value())
	}
	if f.calls.Load() != 1 {
		t.Errorf("%d calls, want 1", f.calls.Load())
	}
}

// Stock HTTP/2 servers reject a socket path as :authority; the client must send localhost.
func TestAuthorityIsLocalhost(t *testing.T) {
	f, sock := newFake(t)
	c := newClient(t, psst.WithSocket(sock))
	if _, err := c.Get(ctx(t), "local:x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.List(ctx(t), "local:"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.authorities) != 2 || f.authorities[0] != "localhost" || f.authorities[1] != "localhost" {
		t.Errorf(":authority = %q, want localhost on every call", f.authorities)
	}
}

func TestSecretNeverPrintsItsValue(t *testing.T) {
	_, sock := newFake(t)
	c := newClient(t, psst.WithSocket(sock))
	s, err := c.Get(ctx(t), "local:app/db")
	if err != nil {
		t.Fatal(err)
	}
	results, err := c.BatchGet(ctx(t), []string{"local:app/db"})
	if err != nil {
		t.Fatal(err)
	}
	var outputs []string
	// How the value itself looks under each verb, as bytes and as a string: none may appear.
	forbidden := []string{secretValue, "hunter2"}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "% x", "%d", "%o", "%b", "%c", "%U", "%T %v"}
	for _, verb := range verbs {
		for _, form := range []string{fmt.Sprintf(verb, []byte(secretValue)), fmt.Sprintf(verb, secretValue)} {
			form = strings.Trim(form, "[]{}\"")
			if len(form) > 8 {
				forbidden = append(forbidden, form[:len(form)/2])
			}
		}
		outputs = append(outputs,
			fmt.Sprintf(verb, s), fmt.Sprintf(verb, *s), fmt.Sprintf(verb, []*psst.Secret{s}),
			fmt.Sprintf(verb, []psst.Secret{*s}), fmt.Sprintf(verb, results),
			fmt.Sprintf(verb, struct{ S psst.Secret }{*s}), fmt.Sprintf(verb, map[string]*psst.Secret{"k": s}))
	}
	outputs = append(outputs, s.String(), s.GoString(), fmt.Sprint(s), fmt.Sprintln(*s))
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("got", "secret", s, "plain", *s)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("got", "secret", s, "plain", *s)
	outputs = append(outputs, logs.String())
	js, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(js))

	for _, out := range outputs {
		for _, f := range forbidden {
			if strings.Contains(out, f) {
				t.Errorf("output shows the value (as %q): %s", f, out)
				break
			}
		}
	}
	// ...and the redacted form is what it shows instead.
	if want := fmt.Sprintf("<redacted %d bytes>", len(secretValue)); !strings.Contains(fmt.Sprintf("%+v", s), want) {
		t.Errorf("%%+v = %s, want it to say %s", fmt.Sprintf("%+v", s), want)
	}
	if !strings.Contains(s.String(), `"local:app/db"`) {
		t.Errorf("String() = %s, want the reference", s.String())
	}
	if !strings.Contains(logs.String(), "local:app/db") {
		t.Errorf("logs = %s, want the reference", logs.String())
	}
}

func TestErrorMapping(t *testing.T) {
	f, sock := newFake(t)
	c := newClient(t, psst.WithSocket(sock), psst.WithRetryTimeout(0))
	cases := []struct {
		code     codes.Code
		name     string
		sentinel error
		is       func(error) bool
	}{
		{codes.InvalidArgument, "INVALID_ARGUMENT", psst.ErrInvalidArgument, psst.IsInvalidArgument},
		{codes.PermissionDenied, "PERMISSION_DENIED", psst.ErrPermissionDenied, psst.IsPermissionDenied},
		{codes.NotFound, "NOT_FOUND", psst.ErrNotFound, psst.IsNotFound},
		{codes.Unavailable, "UNAVAILABLE", psst.ErrUnavailable, psst.IsUnavailable},
		{codes.Unauthenticated, "UNAUTHENTICATED", psst.ErrUnauthenticated, psst.IsUnauthenticated},
		{codes.FailedPrecondition, "FAILED_PRECONDITION", psst.ErrFailedPrecondition, psst.IsFailedPrecondition},
		{codes.ResourceExhausted, "RESOURCE_EXHAUSTED", psst.ErrResourceExhausted, psst.IsResourceExhausted},
		{codes.DataLoss, "DATA_LOSS", psst.ErrDataLoss, nil},
	}
	for _, tc := range cases {
		ref := "local:err/" + tc.name
		f.errs[ref] = status.Error(tc.code, "because "+tc.name)
	}
	var refs []string
	for _, tc := range cases {
		ref := "local:err/" + tc.name
		refs = append(refs, ref)
		t.Run(tc.name, func(t *testing.T) {
			s, err := c.Get(ctx(t), ref)
			if s != nil {
				t.Errorf("got a secret with the error")
			}
			var e *psst.Error
			if !errors.As(err, &e) {
				t.Fatalf("%v (%T) is not a *psst.Error", err, err)
			}
			if e.Code != tc.code || e.Message != "because "+tc.name {
				t.Errorf("got %v / %q", e.Code, e.Message)
			}
			if got := err.Error(); got != "psst: "+tc.name+": because "+tc.name {
				t.Errorf("Error() = %q", got)
			}
			if psst.Code(err) != tc.code || status.Code(err) != tc.code {
				t.Errorf("Code = %v, status.Code = %v", psst.Code(err), status.Code(err))
			}
			for _, other := range cases {
				match := errors.Is(err, other.sentinel)
				if match != (other.code == tc.code) {
					t.Errorf("errors.Is(%s, Err for %s) = %v", tc.name, other.name, match)
				}
				if other.is != nil && other.is(err) != (other.code == tc.code) {
					t.Errorf("Is%s(%s) = %v", other.name, tc.name, other.is(err))
				}
			}
			if code, ok := psst.ParseCode(tc.name); !ok || code != tc.code || psst.CodeName(tc.code) != tc.name {
				t.Errorf("ParseCode/CodeName disagree on %s", tc.name)
			}
		})
	}
	// The same codes arrive as batch items, and one bad item does not fail the batch.
	results, err := c.BatchGet(ctx(t), append(append(refs, "local:ok"), "empty"))
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(cases)+2 {
		t.Fatalf("%d results", len(results))
	}
	for i, tc := range cases {
		r := results[i]
		if r.Secret != nil || psst.Code(r.Err) != tc.code || !errors.Is(r.Err, tc.sentinel) || r.Reference != refs[i] {
			t.Errorf("item %d: %+v", i, r)
		}
	}
	if ok := results[len(cases)]; ok.Err != nil || ok.Secret.Text() != secretValue {
		t.Errorf("good item: %v", ok)
	}
	if empty := results[len(cases)+1]; psst.Code(empty.Err) != codes.Internal {
		t.Errorf("empty item: %v", empty)
	}
	if psst.Code(nil) != codes.OK || psst.Code(errors.New("x")) != codes.Unknown || psst.IsNotFound(nil) {
		t.Errorf("Code of nil / a plain error")
	}
	if psst.CodeName(codes.Canceled) != "CANCELLED" || psst.CodeName(codes.OK) != "OK" {
		t.Errorf("CodeName")
	}
	if _, ok := psst.ParseCode("NOPE"); ok {
		t.Errorf("ParseCode accepted NOPE")
	}
	wrapped := fmt.Errorf("loading config: %w", &psst.Error{Code: codes.NotFound, Message: "m"})
	if !psst.IsNotFound(wrapped) || !errors.Is(wrapped, psst.ErrNotFound) {
		t.Errorf("a wrapped *Error loses its code")
	}
}

func TestListPutWhoAmI(t *testing.T) {
	f, sock := newFake(t)
	c := newClient(t, psst.WithSocket(sock))
	metas, err := c.List(ctx(t), "local:app/")
	if err != nil {
		t.Fatal(err)
	}
	if len(metas) != 2 || metas[0].Reference != "local:app/a" || metas[0].VersionID != "1" ||
		!metas[0].UpdatedAt.Equal(created) || metas[1].Reference != "local:app/b" || !metas[1].UpdatedAt.IsZero() {
		t.Errorf("List = %+v", metas)
	}
	f.errs["bad"] = status.Error(codes.InvalidArgument, "bad prefix")
	if metas, err := c.List(ctx(t), "bad"); !psst.IsInvalidArgument(err) || metas != nil {
		t.Errorf("List(bad) = %v, %v", metas, err)
	}

	w, err := c.Put(ctx(t), "local:app/db", []byte{0, 1, 0xff})
	if err != nil {
		t.Fatal(err)
	}
	if w.Reference != "local:app/db?version=3" || w.VersionID != "3" || !w.CreatedAt.Equal(created) {
		t.Errorf("Put = %+v", w)
	}
	if f.put.GetReference() != "local:app/db" || !bytes.Equal(f.put.GetValue(), []byte{0, 1, 0xff}) {
		t.Errorf("agent got %v", f.put)
	}

	id, err := c.WhoAmI(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if id.Caller.UID != 1000 || id.Caller.GID != 1001 || id.Caller.PID != 42 || id.Caller.User != "app" ||
		len(id.Caller.SupplementaryGIDs) != 2 || id.Caller.IdentitySource != "process" ||
		len(id.Grants) != 1 || id.Grants[0].Operation != "read" || id.Grants[0].Patterns[0] != "local:app/**" ||
		len(id.MatchedRules) != 1 || id.MatchedRules[0] != "app" {
		t.Errorf("WhoAmI = %+v", id)
	}
}

func TestHealth(t *testing.T) {
	hs := health.NewServer()
	sock := filepath.Join(t.TempDir(), "psst.sock")
	serve(t, sock, &fakeAgent{}, hs)
	c := newClient(t, psst.WithSocket(sock))
	if err := c.Health(ctx(t)); err != nil {
		t.Fatalf("Health = %v, want nil (SERVING)", err)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if err := c.Health(ctx(t)); !psst.IsUnavailable(err) || !strings.Contains(err.Error(), "NOT_SERVING") {
		t.Fatalf("Health = %v, want UNAVAILABLE saying NOT_SERVING", err)
	}
	if _, err := psst.Dial(ctx(t), psst.WithSocket(sock)); !psst.IsUnavailable(err) {
		t.Fatalf("Dial to a NOT_SERVING agent = %v", err)
	}
}

func TestSocketPath(t *testing.T) {
	t.Setenv(psst.SocketEnv, "")
	if got := psst.SocketPath(); got != "/run/psst/psst.sock" || psst.DefaultSocket != "/run/psst/psst.sock" {
		t.Errorf("default = %q", got)
	}
	c := newClient(t)
	if c.Socket() != "/run/psst/psst.sock" {
		t.Errorf("New() socket = %q", c.Socket())
	}
	t.Setenv(psst.SocketEnv, "/tmp/from-env.sock")
	if got := psst.SocketPath(); got != "/tmp/from-env.sock" {
		t.Errorf("from env = %q", got)
	}
	if got := newClient(t).Socket(); got != "/tmp/from-env.sock" {
		t.Errorf("New() with env = %q", got)
	}
	if got := newClient(t, psst.WithSocket("/tmp/option.sock")).Socket(); got != "/tmp/option.sock" {
		t.Errorf("WithSocket beats env: %q", got)
	}
}

// The env var is what the client actually dials, not just what it reports.
func TestSocketFromEnvIsDialled(t *testing.T) {
	_, sock := newFake(t)
	t.Setenv(psst.SocketEnv, sock)
	c, err := psst.Dial(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if s, err := c.Get(ctx(t), "local:x"); err != nil || s.Text() != secretValue {
		t.Fatalf("Get via $PSST_SOCKET = %v, %v", s, err)
	}
}

func TestRetryThenUnavailableOnMissingSocket(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nobody-here.sock")
	c := newClient(t, psst.WithSocket(missing), psst.WithRetryTimeout(400*time.Millisecond),
		psst.WithBackoff(20*time.Millisecond, 100*time.Millisecond))
	start := time.Now()
	_, err := c.Get(ctx(t), "local:x")
	elapsed := time.Since(start)
	if !psst.IsUnavailable(err) || !errors.Is(err, psst.ErrUnavailable) {
		t.Fatalf("err = %v, want UNAVAILABLE", err)
	}
	if elapsed < 400*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("gave up after %v, want about the 400ms retry timeout", elapsed)
	}
	if msg := err.Error(); !strings.Contains(msg, missing) || !strings.Contains(msg, "attempts") {
		t.Errorf("message %q should name the socket and the attempts", msg)
	}

	// No retry: one quick attempt.
	c0 := newClient(t, psst.WithSocket(missing), psst.WithRetryTimeout(0))
	start = time.Now()
	if err := c0.Health(ctx(t)); !psst.IsUnavailable(err) {
		t.Fatalf("err = %v", err)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("no-retry call took %v", elapsed)
	}

	// The caller's context bounds the retries too.
	short, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = newClient(t, psst.WithSocket(missing)).Get(short, "local:x")
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("context deadline ignored: %v", elapsed)
	}
	if !errors.Is(err, context.DeadlineExceeded) || psst.Code(err) != codes.DeadlineExceeded {
		t.Errorf("err = %v, want DEADLINE_EXCEEDED wrapping context.DeadlineExceeded", err)
	}
}

func TestRetryUntilTheAgentStarts(t *testing.T) {
	f := &fakeAgent{errs: map[string]error{}}
	sock := filepath.Join(t.TempDir(), "psst.sock")
	c := newClient(t, psst.WithSocket(sock), psst.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	// The agent starts late; t.Fatal and t.Cleanup belong to this goroutine, so the late one
	// only listens and serves, and reports a failed Listen back.
	srv := grpc.NewServer()
	psstv1.RegisterSecretsServer(srv, f)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	t.Cleanup(srv.Stop)
	listened := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		lis, err := net.Listen("unix", sock)
		listened <- err
		if err == nil {
			_ = srv.Serve(lis)
		}
	}()
	start := time.Now()
	s, err := c.Get(ctx(t), "local:late")
	if lerr := <-listened; lerr != nil {
		t.Fatalf("the late agent could not listen: %v", lerr)
	}
	if err != nil {
		t.Fatalf("Get while the agent starts = %v", err)
	}
	if s.Text() != secretValue {
		t.Errorf("value mismatch")
	}
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond {
		t.Errorf("succeeded after %v, before the agent was up?", elapsed)
	}
}

// An UNAVAILABLE the agent itself answers reached it: no retry (a Put must not be sent twice).
func TestServerUnavailableIsNotRetried(t *testing.T) {
	f, sock := newFake(t)
	f.errs["local:down"] = status.Error(codes.Unavailable, "backend unreachable")
	c := newClient(t, psst.WithSocket(sock))
	start := time.Now()
	_, err := c.Put(ctx(t), "local:down", []byte("v"))
	if !psst.IsUnavailable(err) || !strings.Contains(err.Error(), "backend unreachable") {
		t.Fatalf("err = %v", err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("agent saw %d calls, want exactly 1", n)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("took %v: was it retried?", elapsed)
	}
}
