// Package psst is the Go client of the psst agent (psstd): it asks the agent for secrets over
// gRPC on the agent's Unix socket.
//
//	c, err := psst.Dial(ctx)
//	if err != nil { ... }
//	defer c.Close()
//	s, err := c.Get(ctx, "local:demo/db-password")
//	if psst.IsNotFound(err) { ... }
//	password := s.Value()
//
// The socket is WithSocket's path, else $PSST_SOCKET, else /run/psst/psst.sock. Every call has a
// deadline: the context's, else DefaultCallTimeout (WithCallTimeout). While the agent cannot be
// reached (it is starting, or restarting), every call retries with exponential backoff and
// jitter until that deadline, then fails with UNAVAILABLE (or DEADLINE_EXCEEDED). Errors are
// *Error values keeping the gRPC code: see IsNotFound, IsPermissionDenied and the Err* sentinels.
//
// Before gRPC sends anything on a new connection, the client checks that the process serving
// the socket runs as the expected uid (WithExpectedUID, $PSST_EXPECTED_UID, default the socket
// file's owner); otherwise calls fail with ErrUntrustedAgent and nothing is sent.
//
// Client.Watch follows secrets as they change and reconnects for as long as it is open; Source
// keeps the current values in memory (NewSource).
package psst

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/psst-dev/psst/clients/go/psstv1"
)

const (
	// DefaultSocket is where the agent listens unless told otherwise.
	DefaultSocket = "/run/psst/psst.sock"
	// SocketEnv is the environment variable naming the agent's socket.
	SocketEnv = "PSST_SOCKET"
	// DefaultCallTimeout is the deadline of a call whose context has none.
	DefaultCallTimeout = 10 * time.Second
	// DefaultInitialBackoff and DefaultMaxBackoff bound the delay between a call's retries.
	DefaultInitialBackoff = 50 * time.Millisecond
	DefaultMaxBackoff     = time.Second
	// DefaultWatchMaxBackoff caps the delay between a watch's reconnect attempts;
	// MaxWatchBackoff is the most WithWatchBackoff accepts.
	DefaultWatchMaxBackoff = 5 * time.Second
	MaxWatchBackoff        = 30 * time.Second

	// untilDeadline is the retry timeout that only the call's deadline bounds.
	untilDeadline = time.Duration(math.MaxInt64)

	// authority is the HTTP/2 :authority every request carries. Stock HTTP/2 servers reject a
	// socket path there (psstd's patched h2 ignores one: third_party/h2/PSST-PATCH.md), so it is
	// set explicitly rather than left to the target, and the client works with either.
	authority = "localhost"
)

// SocketPath is the socket a client uses when WithSocket is not given: $PSST_SOCKET when set and
// not empty, else DefaultSocket.
func SocketPath() string {
	if p := os.Getenv(SocketEnv); p != "" {
		return p
	}
	return DefaultSocket
}

type config struct {
	socket         string
	callTimeout    time.Duration
	retryTimeout   time.Duration
	initialBackoff time.Duration
	maxBackoff     time.Duration
	watchMaxDelay  time.Duration
	watchGiveUp    time.Duration
	expectedUID    *uint32
	expectedSource string
	dialOptions    []grpc.DialOption
}

// Option configures a Client.
type Option func(*config)

// WithSocket sets the agent's socket path, instead of $PSST_SOCKET or DefaultSocket.
func WithSocket(path string) Option { return func(c *config) { c.socket = path } }

// WithCallTimeout sets the deadline of calls whose context has none (default
// DefaultCallTimeout). Zero or less: no default deadline.
func WithCallTimeout(d time.Duration) Option { return func(c *config) { c.callTimeout = d } }

// WithRetryTimeout caps how long a call keeps retrying while the agent cannot be reached; by
// default only the call's deadline does. Zero or less: one attempt, no retry.
func WithRetryTimeout(d time.Duration) Option { return func(c *config) { c.retryTimeout = d } }

// WithWatchBackoff caps the delay between a watch's reconnect attempts (default
// DefaultWatchMaxBackoff, at most MaxWatchBackoff); the delays start at the client's initial
// backoff and double, jittered by ±20%.
func WithWatchBackoff(max time.Duration) Option { return func(c *config) { c.watchMaxDelay = max } }

// WithWatchGiveUp makes a watch end with UNAVAILABLE once it has failed to reach the agent for d
// in a row. By default (zero) a watch reconnects for as long as it is open.
func WithWatchGiveUp(d time.Duration) Option { return func(c *config) { c.watchGiveUp = d } }

// WithExpectedUID sets the uid the process serving the socket must run as, instead of
// $PSST_EXPECTED_UID or the socket file's owner.
func WithExpectedUID(uid uint32) Option {
	return func(c *config) { c.expectedUID, c.expectedSource = &uid, "WithExpectedUID" }
}

// WithBackoff sets the first delay between retries and the cap it doubles up to (defaults
// DefaultInitialBackoff, DefaultMaxBackoff). Each delay is jittered by ±20%.
func WithBackoff(initial, max time.Duration) Option {
	return func(c *config) { c.initialBackoff, c.maxBackoff = initial, max }
}

// WithDialOptions adds grpc-go dial options (interceptors, stats handlers, ...). Transport
// credentials and the authority are set by the client, and its dialer (which checks the
// server's uid) replaces any WithContextDialer given here.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOptions = append(c.dialOptions, opts...) }
}

// Client talks to one agent. It is safe for concurrent use; share one per process.
type Client struct {
	cfg       config
	conn      *grpc.ClientConn
	secrets   psstv1.SecretsClient
	health    healthpb.HealthClient
	untrusted atomic.Pointer[peerError] // the last connect refused by the peer check
}

// New returns a client for the agent's socket without connecting: the connection is made on the
// first call (which retries while the agent is not there yet). It fails only on bad options.
func New(opts ...Option) (*Client, error) {
	cfg := config{
		callTimeout:    DefaultCallTimeout,
		retryTimeout:   untilDeadline,
		initialBackoff: DefaultInitialBackoff,
		maxBackoff:     DefaultMaxBackoff,
		watchMaxDelay:  DefaultWatchMaxBackoff,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.socket == "" {
		cfg.socket = SocketPath()
	}
	if err := cfg.expectedUIDFromEnv(); err != nil {
		return nil, &Error{Code: codes.InvalidArgument, Message: err.Error()}
	}
	if cfg.initialBackoff <= 0 {
		cfg.initialBackoff = DefaultInitialBackoff
	}
	if cfg.maxBackoff < cfg.initialBackoff {
		cfg.maxBackoff = cfg.initialBackoff
	}
	cfg.watchMaxDelay = min(max(cfg.watchMaxDelay, cfg.initialBackoff), MaxWatchBackoff)
	c := &Client{cfg: cfg}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(authority),
		// grpc-go's own reconnect backoff (default 1s base) would otherwise make the first
		// retries wait for it; keep it in step with ours.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  cfg.initialBackoff,
				Multiplier: 2,
				Jitter:     0.2,
				MaxDelay:   cfg.maxBackoff,
			},
			MinConnectTimeout: 2 * time.Second,
		}),
	}
	// The client's dialer goes last, so that no option given can replace the peer-uid check.
	dial = append(dial, cfg.dialOptions...)
	dial = append(dial, grpc.WithContextDialer(c.dial))
	// The target only names the socket; c.dial connects to it (and checks who serves it).
	conn, err := grpc.NewClient("passthrough:///"+cfg.socket, dial...)
	if err != nil {
		return nil, &Error{Code: codes.InvalidArgument, Message: "psst agent socket " + cfg.socket + ": " + err.Error()}
	}
	c.conn = conn
	c.secrets = psstv1.NewSecretsClient(conn)
	c.health = healthpb.NewHealthClient(conn)
	return c, nil
}

// Dial returns a client that has reached the agent: it checks the agent's health, waiting for
// the agent within the call's deadline, and fails if it does not answer SERVING.
func Dial(ctx context.Context, opts ...Option) (*Client, error) {
	c, err := New(opts...)
	if err != nil {
		return nil, err
	}
	if err := c.Health(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// Socket is the socket path the client uses.
func (c *Client) Socket() string { return c.cfg.socket }

// Conn is the underlying gRPC connection, for calls the wrapper does not cover.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Get returns one secret. A reference is BACKEND:NAME[?SELECTOR][#KEY], e.g.
// "local:demo/db-password", "local:a?version=2", "sm:prod/db#password".
func (c *Client) Get(ctx context.Context, reference string) (*Secret, error) {
	var resp *psstv1.Secret
	err := c.invoke(ctx, true, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
		resp, err = c.secrets.GetSecret(ctx, &psstv1.GetSecretRequest{Reference: reference}, opts...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return secretFromProto(resp), nil
}

// BatchGet returns one Result per reference, in order: a bad item sets that Result's Err and
// does not fail the batch. The error is for the call as a whole.
func (c *Client) BatchGet(ctx context.Context, references []string) ([]Result, error) {
	var resp *psstv1.BatchGetSecretsResponse
	err := c.invoke(ctx, true, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
		resp, err = c.secrets.BatchGetSecrets(ctx, &psstv1.BatchGetSecretsRequest{References: references}, opts...)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(resp.GetResults()))
	for _, r := range resp.GetResults() {
		res := Result{Reference: r.GetReference()}
		switch item := r.GetResult().(type) {
		case *psstv1.BatchGetResult_Secret:
			res.Secret = secretFromProto(item.Secret)
		case *psstv1.BatchGetResult_Error:
			res.Err = &Error{Code: codes.Code(item.Error.GetCode()), Message: item.Error.GetMessage()}
		default:
			res.Err = &Error{Code: codes.Internal, Message: "the agent sent an empty batch result"}
		}
		out = append(out, res)
	}
	return out, nil
}

// List returns the secrets under prefix (e.g. "local:demo/"; "local:" is the whole backend) that
// the caller may list: metadata only, never values.
func (c *Client) List(ctx context.Context, prefix string) ([]SecretMetadata, error) {
	var resp *psstv1.ListSecretsResponse
	err := c.invoke(ctx, true, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
		resp, err = c.secrets.ListSecrets(ctx, &psstv1.ListSecretsRequest{Prefix: prefix}, opts...)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]SecretMetadata, 0, len(resp.GetSecrets()))
	for _, m := range resp.GetSecrets() {
		out = append(out, SecretMetadata{
			Reference: m.GetReference(),
			VersionID: m.GetVersionId(),
			UpdatedAt: timeOf(m.GetUpdatedAt()),
		})
	}
	return out, nil
}

// Put writes value as a new version of the secret. The reference has no selector or key.
func (c *Client) Put(ctx context.Context, reference string, value []byte) (*Written, error) {
	var resp *psstv1.PutSecretResponse
	err := c.invoke(ctx, false, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
		resp, err = c.secrets.PutSecret(ctx, &psstv1.PutSecretRequest{Reference: reference, Value: value}, opts...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Written{
		Reference: resp.GetReference(),
		VersionID: resp.GetVersionId(),
		CreatedAt: timeOf(resp.GetCreatedAt()),
	}, nil
}

// WhoAmI says how the agent sees the calling process and what the policy grants it.
func (c *Client) WhoAmI(ctx context.Context) (*Identity, error) {
	var resp *psstv1.WhoAmIResponse
	err := c.invoke(ctx, true, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
		resp, err = c.secrets.WhoAmI(ctx, &psstv1.WhoAmIRequest{}, opts...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return identityFromProto(resp), nil
}

// Health checks the agent's gRPC health service: nil when it is SERVING, else an *Error
// (UNAVAILABLE when it answers another status).
func (c *Client) Health(ctx context.Context) error {
	var resp *healthpb.HealthCheckResponse
	err := c.invoke(ctx, true, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
		resp, err = c.health.Check(ctx, &healthpb.HealthCheckRequest{}, opts...)
		return err
	})
	if err != nil {
		return err
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return &Error{Code: codes.Unavailable, Message: "the psst agent is " + st.String()}
	}
	return nil
}

// withDefaultDeadline gives ctx the client's call timeout when it has no deadline.
func (c *Client) withDefaultDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.cfg.callTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.cfg.callTimeout)
}

// invoke runs one unary call, retrying while the agent cannot be reached, until the call's
// deadline (or the retry timeout, when set).
//
// Only UNAVAILABLE from the connection is retried: the socket missing or refusing connections
// (the request was never sent) for every call, and for reads (idempotent) also a connection that
// broke before the agent answered (an agent stopping under the call). An UNAVAILABLE the agent
// itself answers (a backend it cannot reach) is returned at once, and a Put that left is never
// sent twice. A server refused by the peer check fails the call at once.
func (c *Client) invoke(ctx context.Context, idempotent bool, call func(context.Context, ...grpc.CallOption) error) error {
	ctx, cancel := c.withDefaultDeadline(ctx)
	defer cancel()
	var giveUpAt time.Time
	var lastUnavailable error
	start := time.Now()
	delay := c.cfg.initialBackoff
	for attempt := 1; ; attempt++ {
		var p peer.Peer
		var trailer metadata.MD
		err := call(ctx, grpc.Peer(&p), grpc.Trailer(&trailer))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil && lastUnavailable != nil {
			return c.deadlineWhileUnreachable(ctx, lastUnavailable, attempt-1)
		}
		// Sent is the request having left on a connection; answered, the agent's own status
		// (whose trailers carry at least the content type) rather than a connection that broke.
		sent, answered := p.Addr != nil, len(trailer) > 0
		if status.Code(err) != codes.Unavailable || answered || (sent && !idempotent) || ctx.Err() != nil {
			return fromRPC(ctx, err)
		}
		lastUnavailable = err
		if pe := c.untrusted.Load(); pe != nil {
			return pe.asError()
		}
		now := time.Now()
		if attempt == 1 {
			giveUpAt = addCapped(now, c.cfg.retryTimeout)
		}
		// A deadline before giveUpAt ends the wait through ctx.Done below.
		remaining := giveUpAt.Sub(now)
		if c.cfg.retryTimeout <= 0 || remaining <= 0 {
			return c.unreachable(err, attempt, now.Sub(start))
		}
		sleep := jitter(delay)
		if sleep > remaining {
			sleep = remaining
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return c.deadlineWhileUnreachable(ctx, err, attempt)
		case <-t.C:
		}
		delay = min(2*delay, c.cfg.maxBackoff)
	}
}

func (c *Client) unreachable(err error, attempts int, spent time.Duration) error {
	msg := "cannot reach the psst agent at " + c.cfg.socket
	if attempts > 1 {
		msg += " (" + strconv.Itoa(attempts) + " attempts in " + spent.Round(time.Millisecond).String() + ")"
	}
	return &Error{Code: codes.Unavailable, Message: msg + ": " + status.Convert(err).Message()}
}

// deadlineWhileUnreachable is the call's context ending while it waited for the agent: the
// context's code (DEADLINE_EXCEEDED or CANCELLED, errors.Is matches the context error), with a
// message that says why it waited.
func (c *Client) deadlineWhileUnreachable(ctx context.Context, err error, attempts int) error {
	code := status.FromContextError(ctx.Err()).Code()
	return &Error{
		Code:    code,
		Message: "cannot reach the psst agent at " + c.cfg.socket + " before the call's deadline (" + strconv.Itoa(attempts) + " attempts): " + status.Convert(err).Message(),
		cause:   ctx.Err(),
	}
}

// addCapped is t+d, saturating instead of overflowing (d may be untilDeadline).
func addCapped(t time.Time, d time.Duration) time.Time {
	if d > 100*365*24*time.Hour {
		return t.Add(100 * 365 * 24 * time.Hour)
	}
	return t.Add(d)
}

// jitter spreads d by ±20% so that many clients restarting together do not retry in step.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
