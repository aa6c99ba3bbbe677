package psst

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/psst-dev/psst/clients/go/psstv1"
)

// Secret is a secret as the agent served it.
//
// The value is only reachable through Value and Text: fmt (every verb, including %v, %+v and %#v),
// slog and encoding/json never show it.
type Secret struct {
	// Reference is the reference as asked for, in canonical form.
	Reference string
	// VersionID is the backend's id of the version served.
	VersionID string
	// Stages are the stages or labels of that version (e.g. AWSCURRENT), where the backend has them.
	Stages []string
	// CreatedAt is when the backend created this version; zero when it does not say.
	CreatedAt time.Time
	// Cache says how the agent's cache served the value.
	Cache CacheInfo

	value []byte
}

// CacheInfo says how the agent's cache served a secret.
type CacheInfo struct {
	// Hit is true when the value came from the cache without a backend call for this request.
	Hit bool
	// Stale is true when the value is past its TTL and served because the backend is unreachable.
	Stale bool
	// FetchedAt and ExpiresAt are zero when the agent does not say.
	FetchedAt time.Time
	ExpiresAt time.Time
}

// Value returns the secret's bytes (not a copy). Wipe clears them when you are done.
func (s *Secret) Value() []byte { return s.value }

// Text returns the value as a string (a copy, which Wipe cannot clear).
func (s *Secret) Text() string { return string(s.value) }

// Wipe overwrites the value with zeros and drops it.
func (s *Secret) Wipe() {
	clear(s.value)
	s.value = nil
}

// String describes the secret without its value.
func (s Secret) String() string {
	return "psst.Secret{Reference: " + strconv.Quote(s.Reference) + ", VersionID: " +
		strconv.Quote(s.VersionID) + ", Value: <redacted " + strconv.Itoa(len(s.value)) + " bytes>}"
}

// GoString is String: %#v does not show the value either.
func (s Secret) GoString() string { return s.String() }

// Format makes every fmt verb print String, so no verb (%x, %q, %+v, ...) shows the value.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// LogValue makes slog log the secret's metadata without its value.
func (s Secret) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("reference", s.Reference),
		slog.String("version_id", s.VersionID),
		slog.String("value", "<redacted "+strconv.Itoa(len(s.value))+" bytes>"),
	)
}

// IsText reports whether the value is valid UTF-8 text.
func (s *Secret) IsText() bool { return utf8.Valid(s.value) }

// Result is one item of a BatchGet, in request order: Secret on success, else Err (an *Error).
type Result struct {
	Reference string
	Secret    *Secret
	Err       error
}

// SecretMetadata is a listed secret: metadata only, never a value.
type SecretMetadata struct {
	Reference string
	// VersionID is the id of the current version.
	VersionID string
	UpdatedAt time.Time
}

// Written is the version a Put created.
type Written struct {
	// Reference is the new version as a reference with a version selector,
	// e.g. "local:demo/db?version=2".
	Reference string
	VersionID string
	CreatedAt time.Time
}

// Identity is how the agent sees the caller and what the policy grants it (WhoAmI).
type Identity struct {
	Caller       Caller
	Grants       []Grant
	MatchedRules []string
}

// Caller is the calling process as the kernel and /proc describe it.
type Caller struct {
	UID               uint32
	GID               uint32
	PID               int32 // 0 when the agent cannot see the process (another PID namespace)
	User              string
	Group             string
	SupplementaryGIDs []uint32
	Executable        string
	Cgroup            string
	ContainerID       string
	PodUID            string
	SystemdUnit       string
	// IdentitySource is "process" when identified from /proc, "uid" when only uid/gid are known.
	IdentitySource string
}

// Grant is what the policy grants for one operation ("read", "list" or "write").
type Grant struct {
	Operation string
	Patterns  []string
}

func timeOf(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func secretFromProto(p *psstv1.Secret) *Secret {
	s := &Secret{
		Reference: p.GetReference(),
		VersionID: p.GetVersionId(),
		Stages:    p.GetStages(),
		CreatedAt: timeOf(p.GetCreatedAt()),
		value:     p.GetValue(),
	}
	if c := p.GetCache(); c != nil {
		s.Cache = CacheInfo{
			Hit:       c.GetHit(),
			Stale:     c.GetStale(),
			FetchedAt: timeOf(c.GetFetchedAt()),
			ExpiresAt: timeOf(c.GetExpiresAt()),
		}
	}
	return s
}

func identityFromProto(p *psstv1.WhoAmIResponse) *Identity {
	c := p.GetCaller()
	id := &Identity{
		Caller: Caller{
			UID:               c.GetUid(),
			GID:               c.GetGid(),
			PID:               c.GetPid(),
			User:              c.GetUser(),
			Group:             c.GetGroup(),
			SupplementaryGIDs: c.GetSupplementaryGids(),
			Executable:        c.GetExecutable(),
			Cgroup:            c.GetCgroup(),
			ContainerID:       c.GetContainerId(),
			PodUID:            c.GetPodUid(),
			SystemdUnit:       c.GetSystemdUnit(),
			IdentitySource:    c.GetIdentitySource(),
		},
		MatchedRules: p.GetMatchedRules(),
	}
	for _, g := range p.GetGrants() {
		id.Grants = append(id.Grants, Grant{Operation: g.GetOperation(), Patterns: g.GetPatterns()})
	}
	return id
}
