package psst

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
)

// ExpectedUIDEnv names the uid the agent must run as (see WithExpectedUID).
const ExpectedUIDEnv = "PSST_EXPECTED_UID"

// ErrUntrustedAgent matches (errors.Is) the error of a call refused because the process serving
// the socket does not run as the expected uid. Such a call is never retried.
var ErrUntrustedAgent = errors.New("the psst agent socket is served by an unexpected uid")

// peerError is what the dialer found wrong with the server; it makes the call fail at once.
type peerError struct {
	socket        string
	got, expected uint32
	source        string // where the expected uid came from
}

func (e *peerError) Error() string {
	return "refusing the psst agent at " + e.socket + ": it runs as uid " + strconv.FormatUint(uint64(e.got), 10) +
		", expected uid " + strconv.FormatUint(uint64(e.expected), 10) + " (" + e.source + ")"
}

func (e *peerError) Is(target error) bool { return target == ErrUntrustedAgent }

func (e *peerError) asError() *Error {
	return &Error{Code: codes.Unauthenticated, Message: e.Error(), cause: e}
}

// expectedUIDFromEnv reads $PSST_EXPECTED_UID when the option did not set the uid.
func (c *config) expectedUIDFromEnv() error {
	v := os.Getenv(ExpectedUIDEnv)
	if c.expectedUID != nil || v == "" {
		return nil
	}
	uid, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return fmt.Errorf("%s=%q is not a uid", ExpectedUIDEnv, v)
	}
	u := uint32(uid)
	c.expectedUID, c.expectedSource = &u, "$"+ExpectedUIDEnv
	return nil
}

// serverUID is the uid the server must run as: WithExpectedUID, else $PSST_EXPECTED_UID, else
// the socket file's owner (looked up at each connect, since the agent recreates its socket).
func (c *config) serverUID() (uint32, string, error) {
	if c.expectedUID != nil {
		return *c.expectedUID, c.expectedSource, nil
	}
	info, err := os.Stat(c.socket)
	if err != nil {
		return 0, "", err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, "", fmt.Errorf("cannot read the owner of %s", c.socket)
	}
	return st.Uid, "the socket file's owner", nil
}

// dial connects to the agent's socket and checks, before gRPC sends a byte on it, that the
// process that accepted runs as the expected uid (SO_PEERCRED: the kernel's record of the
// listening process's credentials). The check is on the connection gRPC then uses, so nothing
// can be swapped in between.
func (c *Client) dial(ctx context.Context, _ string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.cfg.socket)
	if err != nil {
		c.untrusted.Store(nil) // nobody there now: an earlier refusal no longer applies
		return nil, err
	}
	if err := c.checkPeer(conn.(*net.UnixConn)); err != nil {
		_ = conn.Close()
		return nil, err
	}
	c.untrusted.Store(nil)
	return conn, nil
}

func (c *Client) checkPeer(conn *net.UnixConn) error {
	expected, source, err := c.cfg.serverUID()
	if err != nil {
		return err
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if credErr != nil {
		return credErr
	}
	if cred.Uid != expected {
		pe := &peerError{socket: c.cfg.socket, got: cred.Uid, expected: expected, source: source}
		c.untrusted.Store(pe)
		return pe
	}
	return nil
}
