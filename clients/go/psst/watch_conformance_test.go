package psst_test

// The shared watch conformance scenarios (tests/conformance/watch-scenarios.json), run through
// Client.Watch against the live agent that tests/conformance/with-agent starts; with-agent
// exports PSST_CONFORMANCE_WATCH (the file) and PSST_RESTART_AGENT (restarts the agent).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/psst-dev/psst/clients/go/psst"
)

// eventWait is how long an expect_event step waits for its event.
const eventWait = 10 * time.Second

type watchSpec struct {
	About string `json:"about"`
	Setup struct {
		Secrets []struct {
			Reference string `json:"reference"`
			Value     string `json:"value"`
		} `json:"secrets"`
	} `json:"setup"`
	Scenarios []watchScenario `json:"scenarios"`
}

type watchScenario struct {
	Name      string      `json:"name"`
	Call      string      `json:"call"`
	Reference string      `json:"reference"`
	Steps     []watchStep `json:"steps"`
}

// watchStep has exactly one of its fields set.
type watchStep struct {
	ExpectEvent *struct {
		Kind              string  `json:"kind"`
		Value             *string `json:"value"`
		VersionID         *string `json:"version_id"`
		PreviousVersionID *string `json:"previous_version_id"`
	} `json:"expect_event"`
	Put          *string `json:"put"`
	RestartAgent *bool   `json:"restart_agent"`
	ExpectError  *string `json:"expect_error"`
}

func loadWatchSpec(t *testing.T) *watchSpec {
	t.Helper()
	path := os.Getenv("PSST_CONFORMANCE_WATCH")
	if path == "" {
		const msg = "PSST_CONFORMANCE_WATCH is not set: run under tests/conformance/with-agent (see ./test.sh)"
		if os.Getenv("PSST_REQUIRE_AGENT") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the watch scenarios: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields() // a new kind of step or expectation must fail here
	var s watchSpec
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	if len(s.Scenarios) == 0 {
		t.Fatalf("%s has no scenarios", path)
	}
	return &s
}

func TestWatchConformance(t *testing.T) {
	s := loadWatchSpec(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := psst.Dial(ctx) // $PSST_SOCKET, as an application would
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer client.Close()

	ran := 0
	for _, sc := range s.Scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			ran++
			if sc.Call != "watch" {
				t.Fatalf("unknown call %q: teach this test about it", sc.Call)
			}
			if len(sc.Steps) == 0 {
				t.Fatalf("scenario without steps")
			}
			w, err := client.Watch(ctx, sc.Reference)
			if err != nil {
				t.Fatalf("Watch(%q): %v", sc.Reference, err)
			}
			defer w.Close()
			for i, step := range sc.Steps {
				runWatchStep(t, ctx, client, w, sc.Reference, i, step)
				if t.Failed() {
					return
				}
			}
		})
	}
	if ran != len(s.Scenarios) {
		t.Fatalf("ran %d of %d scenarios", ran, len(s.Scenarios))
	}
}

func runWatchStep(t *testing.T, ctx context.Context, client *psst.Client, w *psst.Watch, ref string, i int, step watchStep) {
	t.Helper()
	set := 0
	for _, ok := range []bool{step.ExpectEvent != nil, step.Put != nil, step.RestartAgent != nil, step.ExpectError != nil} {
		if ok {
			set++
		}
	}
	if set != 1 {
		t.Fatalf("step %d: want exactly one of expect_event, put, restart_agent, expect_error", i)
	}
	switch {
	case step.ExpectEvent != nil:
		want := step.ExpectEvent
		wait, cancel := context.WithTimeout(ctx, eventWait)
		defer cancel()
		e, err := w.Next(wait)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("step %d: no event within %v, want %s", i, eventWait, want.Kind)
		}
		if err != nil {
			t.Fatalf("step %d: watch ended with %v, want a %s event", i, err, want.Kind)
		}
		if e.Kind.String() != want.Kind {
			t.Errorf("step %d: kind = %s, want %s (%v)", i, e.Kind, want.Kind, e)
		}
		if e.Reference != ref {
			t.Errorf("step %d: reference = %q, want %q", i, e.Reference, ref)
		}
		if want.Value != nil || want.VersionID != nil {
			if e.Secret == nil {
				t.Fatalf("step %d: %v has no secret", i, e)
			}
			if want.Value != nil && e.Secret.Text() != *want.Value {
				t.Errorf("step %d: value = %q, want %q", i, e.Secret.Text(), *want.Value)
			}
			if want.VersionID != nil && e.Secret.VersionID != *want.VersionID {
				t.Errorf("step %d: version_id = %q, want %q", i, e.Secret.VersionID, *want.VersionID)
			}
		}
		if want.PreviousVersionID != nil && e.PreviousVersionID != *want.PreviousVersionID {
			t.Errorf("step %d: previous_version_id = %q, want %q", i, e.PreviousVersionID, *want.PreviousVersionID)
		}
	case step.Put != nil:
		if _, err := client.Put(ctx, ref, []byte(*step.Put)); err != nil {
			t.Fatalf("step %d: Put(%q): %v", i, ref, err)
		}
	case step.RestartAgent != nil:
		restart := os.Getenv("PSST_RESTART_AGENT")
		if restart == "" {
			t.Fatalf("step %d: PSST_RESTART_AGENT is not set: run under tests/conformance/with-agent", i)
		}
		out, err := exec.CommandContext(ctx, "sh", "-c", restart).CombinedOutput()
		if err != nil {
			t.Fatalf("step %d: restarting the agent: %v\n%s", i, err, out)
		}
	case step.ExpectError != nil:
		want, ok := psst.ParseCode(*step.ExpectError)
		if !ok || want == codes.OK {
			t.Fatalf("step %d: the scenario names an unknown code %q", i, *step.ExpectError)
		}
		wait, cancel := context.WithTimeout(ctx, eventWait)
		defer cancel()
		e, err := w.Next(wait)
		if err == nil {
			t.Fatalf("step %d: got %v, want the watch to end with %s", i, e, *step.ExpectError)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("step %d: the watch did not end within %v, want %s", i, eventWait, *step.ExpectError)
		}
		var pe *psst.Error
		if !errors.As(err, &pe) {
			t.Fatalf("step %d: error %v (%T) is not a *psst.Error", i, err, err)
		}
		if pe.Code != want {
			t.Errorf("step %d: code = %s (%v), want %s", i, psst.CodeName(pe.Code), pe, *step.ExpectError)
		}
	}
}
