package psst_test

// The client checks who serves the socket (SO_PEERCRED) before gRPC sends a byte: a server
// running as another uid than expected gets nothing, not even the HTTP/2 preface.

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/psst-dev/psst/clients/go/psst"
)

func expectUntrusted(t *testing.T, err error, start time.Time) {
	t.Helper()
	if !errors.Is(err, psst.ErrUntrustedAgent) || psst.Code(err) != codes.Unauthenticated {
		t.Fatalf("err = %v, want ErrUntrustedAgent (UNAUTHENTICATED)", err)
	}
	if !strings.Contains(err.Error(), "expected uid") {
		t.Errorf("message %q should say which uid was expected", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("refused after %v: a refusal must not be retried", took)
	}
}

// Against the in-process fake (our own uid), an expected uid that is not ours refuses.
func TestPeerUIDMismatchRefusesEveryCall(t *testing.T) {
	f, sock := newFake(t)
	c := newClient(t, psst.WithSocket(sock), psst.WithExpectedUID(uint32(os.Getuid())+4242))
	start := time.Now()
	_, err := c.Put(ctx(t), "local:x", []byte("never sent"))
	expectUntrusted(t, err, start)
	start = time.Now()
	_, err = c.Get(ctx(t), "local:x")
	expectUntrusted(t, err, start)
	w, err := c.Watch(context.Background(), "local:x")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	start = time.Now()
	_, err = w.Next(ctx(t))
	expectUntrusted(t, err, start)
	// A dialer passed in the options does not replace the check.
	plain := grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	})
	start = time.Now()
	_, err = newClient(t, psst.WithSocket(sock), psst.WithExpectedUID(uint32(os.Getuid())+4242),
		psst.WithDialOptions(plain)).Get(ctx(t), "local:x")
	expectUntrusted(t, err, start)
	if n := f.calls.Load(); n != 0 {
		t.Errorf("the server saw %d calls", n)
	}
	// The same uid, from the environment, is accepted.
	t.Setenv(psst.ExpectedUIDEnv, strconv.Itoa(os.Getuid()))
	if _, err := newClient(t, psst.WithSocket(sock)).Get(ctx(t), "local:x"); err != nil {
		t.Fatalf("with the right uid: %v", err)
	}
	t.Setenv(psst.ExpectedUIDEnv, "not-a-uid")
	if _, err := psst.New(psst.WithSocket(sock)); !psst.IsInvalidArgument(err) {
		t.Errorf("a bad %s = %v, want INVALID_ARGUMENT", psst.ExpectedUIDEnv, err)
	}
}

// A fake agent run by another user (tests/conformance/with-fake-agent) on a socket file owned by
// the runner's uid gets nothing from the client.
func TestFakeAgentOfAnotherUserGetsNothing(t *testing.T) {
	sock := os.Getenv("PSST_FAKE_SOCKET")
	if sock == "" {
		if os.Getenv("PSST_REQUIRE_FAKE_AGENT") != "" {
			t.Fatal("PSST_FAKE_SOCKET is not set: run under tests/conformance/with-fake-agent (see ./test.sh)")
		}
		t.Skip("PSST_FAKE_SOCKET is not set: run under tests/conformance/with-fake-agent (as root)")
	}
	received := func() int {
		raw, err := os.ReadFile(os.Getenv("PSST_FAKE_RECEIVED"))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
		return n
	}
	fakeUID, _ := strconv.Atoi(os.Getenv("PSST_FAKE_UID"))

	// Default: the socket file's owner (the runner) is expected; the fake user serves it.
	start := time.Now()
	_, err := newClient(t, psst.WithSocket(sock)).Put(ctx(t), "local:x", []byte("for the agent only"))
	expectUntrusted(t, err, start)
	// An explicit expected uid, the runner's.
	start = time.Now()
	_, err = newClient(t, psst.WithSocket(sock), psst.WithExpectedUID(uint32(os.Getuid()))).Put(ctx(t), "local:x", []byte("for the agent only"))
	expectUntrusted(t, err, start)
	time.Sleep(200 * time.Millisecond)
	if n := received(); n != 0 {
		t.Fatalf("the fake agent received %d bytes", n)
	}

	// Control: told to trust the fake user, the client does send (the fake never answers).
	t.Setenv(psst.ExpectedUIDEnv, strconv.Itoa(fakeUID))
	short, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := newClient(t, psst.WithSocket(sock)).Put(short, "local:x", []byte("control")); err == nil {
		t.Fatal("the fake agent answered?")
	}
	deadline := time.Now().Add(3 * time.Second)
	for received() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if received() == 0 {
		t.Fatal("control: the trusted fake received nothing, so the refusal above proves nothing")
	}
}
