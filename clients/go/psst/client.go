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
// The socket is WithSocket's path, else $PSST_SOCKET, else /run/psst/psst.sock. While the agent
// cannot be reached (it is starting, or restarting), every call retries with exponential backoff
// and jitter for a bounded time (WithRetryTimeout, default 5s), then fails with UNAVAILABLE.
// Errors are *Error values keeping the gRPC code: see IsNotFound, IsPermissionDenied and the
// Err* sentinels.
//
// Client.Watch follows secrets as they change; the Watch reconnects and resumes by itself when
// the agent restarts.
package psst

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/psst-dev/psst/clients/go/psstv1"
)

const (
	// DefaultSocket is where the agent listens unless told otherwise.
	DefaultSocket = "/run/psst/psst.sock"
	// SocketEnv is the environment variable naming the agent's socket.
	SocketEnv = "PSST_SOCKET"
	// DefaultRetryTimeout is how long a call keeps retrying while the agent cannot be reached.
	DefaultRetryTimeout = 5 * time.Second
	// DefaultInitialBackoff and DefaultMaxBackoff bound the delay between those retries.
	DefaultInitialBackoff = 50 * time.Millisecond
	DefaultMaxBackoff     = time.Second

	// authority is the HTTP/2 :authority every request carries. The agent's HTTP/2 server rejects
	// a socket path there, so it is set explicitly rather than left to the target.
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
	retryTimeout   time.Duration
	initialBackoff time.Duration
	maxBackoff     time.Duration
	dialOptions    []grpc.DialOption
}

// Option configures a Client.
type Option func(*config)

// WithSocket sets the agent's socket path, instead of $PSST_SOCKET or DefaultSocket.
func WithSocket(path string) Option { return func(c *config) { c.socket = path } }

// WithRetryTimeout sets how long a call keeps retrying while the agent cannot be reached
// (default DefaultRetryTimeout). Zero or less: one attempt, no retry. The call's context still
// bounds everything.
func WithRetryTimeout(d time.Duration) Option { return func(c *config) { c.retryTimeout = d } }

// WithBackoff sets the first delay between retries and the cap it doubles up to (defaults
// DefaultInitialBackoff, DefaultMaxBackoff). Each delay is jittered by ±20%.
func WithBackoff(initial, max time.Duration) Option {
	return func(c *config) { c.initialBackoff, c.maxBackoff = initial, max }
}

// WithDialOptions adds grpc-go dial options (interceptors, stats handlers, ...). Transport
// credentials and the authority are set by the client.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOptions = append(c.dialOptions, opts...) }
}

// Client talks to one agent. It is safe for concurrent use; share one per process.
type Client struct {
	cfg     config
	conn    *grpc.ClientConn
	secrets psstv1.SecretsClient
	health  healthpb.HealthClient
}

// New returns a client for the agent's socket without connecting: the connection is made on the
// first call (which retries while the agent is not there yet). It fails only on bad options.
func New(opts ...Option) (*Client, error) {
	cfg := config{
		retryTimeout:   DefaultRetryTimeout,
		initialBackoff: DefaultInitialBackoff,
		maxBackoff:     DefaultMaxBackoff,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.socket == "" {
		cfg.socket = SocketPath()
	}
	if cfg.initialBackoff <= 0 {
		cfg.initialBackoff = DefaultInitialBackoff
	}
	if cfg.maxBackoff < cfg.initialBackoff {
		cfg.maxBackoff = cfg.initialBackoff
	}
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
	dial = append(dial, cfg.dialOptions...)
	conn, err := grpc.NewClient("unix:"+cfg.socket, dial...)
	if err != nil {
		return nil, &Error{Code: codes.InvalidArgument, Message: "psst agent socket " + cfg.socket + ": " + err.Error()}
	}
	return &Client{
		cfg:     cfg,
		conn:    conn,
		secrets: psstv1.NewSecretsClient(conn),
		health:  healthpb.NewHealthClient(conn),
	}, nil
}

// Dial returns a client that has reached the agent: it checks the agent's health, retrying for
// the retry timeout while the agent cannot be reached, and fails if it does not answer SERVING.
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
	err := c.invoke(ctx, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
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
	err := c.invoke(ctx, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
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
	err := c.invoke(ctx, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
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
	err := c.invoke(ctx, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
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
	err := c.invoke(ctx, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
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
	err := c.invoke(ctx, func(ctx context.Context, opts ...grpc.CallOption) (err error) {
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

// invoke runs one unary call, retrying while the agent cannot be reached.
//
// Only failures where the request never reached the agent are retried: UNAVAILABLE with no
// transport picked (no peer), i.e. the socket is missing or refuses connections. An UNAVAILABLE
// the agent itself answers (a backend it cannot reach) is returned at once, so a Put is never
// sent twice.
func (c *Client) invoke(ctx context.Context, call func(context.Context, ...grpc.CallOption) error) error {
	var deadline time.Time
	delay := c.cfg.initialBackoff
	for attempt := 1; ; attempt++ {
		var p peer.Peer
		err := call(ctx, grpc.Peer(&p))
		if err == nil {
			return nil
		}
		if status.Code(err) != codes.Unavailable || p.Addr != nil || ctx.Err() != nil {
			return fromRPC(ctx, err)
		}
		now := time.Now()
		if attempt == 1 {
			deadline = now.Add(c.cfg.retryTimeout)
		}
		remaining := deadline.Sub(now)
		if remaining <= 0 {
			return c.unreachable(err, attempt)
		}
		sleep := jitter(delay)
		if sleep > remaining {
			sleep = remaining
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return fromRPC(ctx, status.FromContextError(ctx.Err()).Err())
		case <-t.C:
		}
		delay = min(2*delay, c.cfg.maxBackoff)
	}
}

func (c *Client) unreachable(err error, attempts int) error {
	msg := "cannot reach the psst agent at " + c.cfg.socket
	if attempts > 1 {
		msg += " (" + strconv.Itoa(attempts) + " attempts in " + c.cfg.retryTimeout.String() + ")"
	}
	return &Error{Code: codes.Unavailable, Message: msg + ": " + status.Convert(err).Message()}
}

// jitter spreads d by ±20% so that many clients restarting together do not retry in step.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
