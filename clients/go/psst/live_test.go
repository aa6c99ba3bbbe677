package psst_test

// Calls beyond the shared scenarios, against the live agent that with-agent starts. Writes go
// under local:scratch/ so they never change what the scenarios list or read.

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/psst-dev/psst/clients/go/psst"
)

func liveClient(t *testing.T) (*psst.Client, context.Context) {
	t.Helper()
	if os.Getenv("PSST_CONFORMANCE") == "" {
		skipWithoutAgent(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c, err := psst.Dial(ctx)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, ctx
}

func TestLivePutThenPolicy(t *testing.T) {
	c, ctx := liveClient(t)
	ref := "local:scratch/go-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	w, err := c.Put(ctx, ref, []byte("written by the go client"))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if w.VersionID != "1" || w.Reference != ref+"?version=1" || w.CreatedAt.IsZero() {
		t.Errorf("Put = %+v, want version 1 of %s", w, ref)
	}
	w2, err := c.Put(ctx, ref, []byte("second"))
	if err != nil || w2.VersionID != "2" {
		t.Fatalf("second Put = %+v, %v", w2, err)
	}
	// The conformance policy grants write on local:** but read only on local:conf/**.
	if _, err := c.Get(ctx, ref); !psst.IsPermissionDenied(err) {
		t.Errorf("Get of a written but unreadable secret = %v, want PERMISSION_DENIED", err)
	}
	if _, err := c.Put(ctx, ref+"?version=1", []byte("x")); !psst.IsInvalidArgument(err) {
		t.Errorf("Put with a selector = %v, want INVALID_ARGUMENT", err)
	}
}

func TestLiveWhoAmIAndHealth(t *testing.T) {
	c, ctx := liveClient(t)
	if err := c.Health(ctx); err != nil {
		t.Fatalf("Health: %v", err)
	}
	id, err := c.WhoAmI(ctx)
	if err != nil {
		t.Fatalf("WhoAmI: %v", err)
	}
	if id.Caller.UID != uint32(os.Getuid()) || id.Caller.PID != int32(os.Getpid()) {
		t.Errorf("caller = %+v, want uid %d pid %d", id.Caller, os.Getuid(), os.Getpid())
	}
	if len(id.MatchedRules) != 1 || id.MatchedRules[0] != "conformance runner" {
		t.Errorf("matched rules = %q", id.MatchedRules)
	}
	grants := map[string][]string{}
	for _, g := range id.Grants {
		grants[g.Operation] = g.Patterns
	}
	// The grants the conformance agent's policy gives: the one rule in scenarios.json.
	var spec struct {
		Policy struct {
			Allow map[string][]string `json:"allow"`
		} `json:"policy"`
	}
	raw, err := os.ReadFile(os.Getenv("PSST_CONFORMANCE"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	want := spec.Policy.Allow["read"]
	if len(want) == 0 || !reflect.DeepEqual(grants["read"], want) {
		t.Errorf("grants = %+v, want read %q", id.Grants, want)
	}
}

// skipWithoutAgent skips a test that needs the live agent with-agent starts, or fails it when
// PSST_REQUIRE_AGENT is set (test.sh sets it, so the scenarios cannot be skipped silently).
func skipWithoutAgent(t *testing.T) {
	t.Helper()
	const msg = "PSST_CONFORMANCE is not set: run under tests/conformance/with-agent (see ./test.sh)"
	if os.Getenv("PSST_REQUIRE_AGENT") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
