package psst_test

// The shared client conformance scenarios (tests/conformance/scenarios.json), run through this
// client against a live agent. Run under tests/conformance/with-agent, which starts the agent,
// seeds the secrets and exports PSST_SOCKET and PSST_CONFORMANCE:
//
//	../../tests/conformance/with-agent go test ./...

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/psst-dev/psst/clients/go/psst"
)

type spec struct {
	// The conformance agent's one policy rule (live_test.go checks whoami against it).
	Policy json.RawMessage `json:"policy"`
	Setup  struct {
		Secrets []struct {
			Reference string `json:"reference"`
			Value     string `json:"value"`
		} `json:"secrets"`
		AWS []struct {
			Reference string `json:"reference"`
			Value     string `json:"value"`
		} `json:"aws"` // created with boto3 by with-agent
		Vault []struct {
			Reference string `json:"reference"`
			Value     string `json:"value"`
		} `json:"vault"` // written with `bao kv put` by with-agent
	} `json:"setup"`
	Scenarios []scenario `json:"scenarios"`
}

type scenario struct {
	Name       string   `json:"name"`
	Call       string   `json:"call"`
	Reference  string   `json:"reference"`
	References []string `json:"references"`
	Prefix     *string  `json:"prefix"`
	Expect     expect   `json:"expect"`
}

// expect is a result or a gRPC code name. Pointers tell "absent" from "empty".
type expect struct {
	Code       *string   `json:"code"`
	Value      *string   `json:"value"`
	VersionID  *string   `json:"version_id"`
	References *[]string `json:"references"`
	Results    []expect  `json:"results"`
}

func loadSpec(t *testing.T) *spec {
	t.Helper()
	path := os.Getenv("PSST_CONFORMANCE")
	if path == "" {
		skipWithoutAgent(t)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the scenarios: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields() // a new kind of expectation must fail here, not pass unchecked
	var s spec
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	if len(s.Scenarios) == 0 {
		t.Fatalf("%s has no scenarios", path)
	}
	return &s
}

// UnmarshalJSON accepts the spec's top-level "about" too.
func (s *spec) UnmarshalJSON(b []byte) error {
	type plain spec
	var aux struct {
		About string `json:"about"`
		plain
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&aux); err != nil {
		return err
	}
	*s = spec(aux.plain)
	return nil
}

func TestConformance(t *testing.T) {
	s := loadSpec(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
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
			switch sc.Call {
			case "get":
				sec, err := client.Get(ctx, sc.Reference)
				checkOne(t, sc.Expect, sec, err)
			case "batch_get":
				results, err := client.BatchGet(ctx, sc.References)
				if err != nil {
					t.Fatalf("BatchGet(%q): %v", sc.References, err)
				}
				if sc.Expect.Results == nil {
					t.Fatalf("batch_get scenario without expect.results")
				}
				if len(results) != len(sc.Expect.Results) {
					t.Fatalf("BatchGet: got %d results, want %d", len(results), len(sc.Expect.Results))
				}
				for i, r := range results {
					t.Run(sc.References[i], func(t *testing.T) {
						if r.Secret != nil && r.Err != nil {
							t.Fatalf("result %d has both a secret and an error", i)
						}
						if r.Reference != sc.References[i] {
							t.Errorf("result %d: reference %q, want %q", i, r.Reference, sc.References[i])
						}
						checkOne(t, sc.Expect.Results[i], r.Secret, r.Err)
					})
				}
			case "list":
				if sc.Prefix == nil {
					t.Fatalf("list scenario without prefix")
				}
				metas, err := client.List(ctx, *sc.Prefix)
				if sc.Expect.Code != nil {
					checkCode(t, *sc.Expect.Code, err)
					if metas != nil {
						t.Errorf("List returned %d items and an error", len(metas))
					}
					return
				}
				if err != nil {
					t.Fatalf("List(%q): %v", *sc.Prefix, err)
				}
				if sc.Expect.References == nil {
					t.Fatalf("list scenario without expect.references or expect.code")
				}
				got := make([]string, 0, len(metas))
				for _, m := range metas {
					got = append(got, m.Reference)
					if m.VersionID == "" {
						t.Errorf("%s: empty version id", m.Reference)
					}
				}
				if !slices.Equal(got, *sc.Expect.References) {
					t.Errorf("List(%q) = %q, want %q", *sc.Prefix, got, *sc.Expect.References)
				}
			default:
				t.Fatalf("unknown call %q: teach this test about it", sc.Call)
			}
		})
	}
	if ran != len(s.Scenarios) {
		t.Fatalf("ran %d of %d scenarios", ran, len(s.Scenarios))
	}
}

// checkOne checks a get (or one batch item) against an expectation: a code, or a value and
// optionally a version id.
func checkOne(t *testing.T, want expect, sec *psst.Secret, err error) {
	t.Helper()
	if want.Code != nil {
		checkCode(t, *want.Code, err)
		if sec != nil {
			t.Errorf("got a secret as well as an error")
		}
		return
	}
	if want.Value == nil {
		t.Fatalf("expectation has neither code nor value")
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if sec == nil {
		t.Fatalf("no secret and no error")
	}
	if got := sec.Text(); got != *want.Value {
		t.Errorf("value = %q, want %q", got, *want.Value)
	}
	if want.VersionID != nil && sec.VersionID != *want.VersionID {
		t.Errorf("version_id = %q, want %q", sec.VersionID, *want.VersionID)
	}
}

func checkCode(t *testing.T, name string, err error) {
	t.Helper()
	want, ok := psst.ParseCode(name)
	if !ok || want == codes.OK {
		t.Fatalf("the scenario names an unknown code %q", name)
	}
	if err == nil {
		t.Fatalf("no error, want %s", name)
	}
	var e *psst.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *psst.Error", err, err)
	}
	if e.Code != want {
		t.Errorf("code = %s (%v), want %s", psst.CodeName(e.Code), e, name)
	}
}
