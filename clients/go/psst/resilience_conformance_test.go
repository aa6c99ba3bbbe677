package psst_test

// The shared resilience and Source scenarios (tests/conformance/restart-scenarios.json and
// source-scenarios.json; tests/conformance/README.md defines each step), against the live agent
// of tests/conformance/with-agent, which exports the files and the commands that stop, start and
// restart the agent and rotate a secret with boto3.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/psst-dev/psst/clients/go/psst"
)

type expectedEvent struct {
	Kind              string `json:"kind"`
	Value             string `json:"value"`
	VersionID         string `json:"version_id"`
	PreviousVersionID string `json:"previous_version_id"`
}

type restartScenario struct {
	Name                    string                 `json:"name"`
	Call                    string                 `json:"call"`
	Watch                   string                 `json:"watch"`
	ExpectCurrent           expectedEvent          `json:"expect_current"`
	Get                     string                 `json:"get"`
	ExpectGet               struct{ Value string } `json:"expect_get"`
	Getters                 int                    `json:"getters"`
	GetDeadlineSeconds      float64                `json:"get_deadline_seconds"`
	ShortGetDeadlineSeconds float64                `json:"short_get_deadline_seconds"`
	ExpectShortGetError     []string               `json:"expect_short_get_error"`
	DownSeconds             float64                `json:"down_seconds"`
	PutAfter                string                 `json:"put_after"`
	ExpectAfter             expectedEvent          `json:"expect_after"`
	GiveUpAfterSeconds      float64                `json:"give_up_after_seconds"`
	ExpectError             string                 `json:"expect_error"`
	ExpectErrorWithin       float64                `json:"expect_error_within_seconds"`
}

type sourceScenario struct {
	Name      string `json:"name"`
	Call      string `json:"call"`
	Reference string `json:"reference"`
	Steps     []struct {
		ExpectOpenError   *string `json:"expect_open_error"`
		ExpectValue       *string `json:"expect_value"`
		AWSPut            *string `json:"aws_put"`
		ExpectUpdate      *string `json:"expect_update"`
		StopAgent         *bool   `json:"stop_agent"`
		StartAgent        *bool   `json:"start_agent"`
		ExpectUnreachable *bool   `json:"expect_unreachable"`
	} `json:"steps"`
}

// loadScenarios reads the scenarios of the file $env names; unknown fields fail (a new step
// must be taught to this runner, not skipped).
func loadScenarios[S any](t *testing.T, env string) []S {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		msg := env + " is not set: run under tests/conformance/with-agent (see ./test.sh)"
		if os.Getenv("PSST_REQUIRE_AGENT") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		About     string          `json:"about"`
		Setup     json.RawMessage `json:"setup"`
		Scenarios json.RawMessage `json:"scenarios"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(file.Scenarios))
	dec.DisallowUnknownFields()
	var out []S
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no scenarios", path)
	}
	return out
}

// runCommand runs one of with-agent's commands ($env) and waits for it.
func runCommand(t *testing.T, env string, args ...string) {
	t.Helper()
	if err := command(env, args...).Run(); err != nil {
		t.Fatalf("$%s %v: %v", env, args, err)
	}
}

func command(env string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Getenv(env), args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func nextValueEvent(t *testing.T, w *psst.Watch, within time.Duration) *psst.WatchEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	e, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("no event within %v: %v", within, err)
	}
	return e
}

func checkEvent(t *testing.T, e *psst.WatchEvent, want expectedEvent) {
	t.Helper()
	if e.Kind.String() != want.Kind || e.Secret == nil || e.Secret.Text() != want.Value ||
		e.Secret.VersionID != want.VersionID || e.PreviousVersionID != want.PreviousVersionID {
		t.Fatalf("event %v, want %+v (value checked too)", e, want)
	}
}

func TestRestartConformance(t *testing.T) {
	scenarios := loadScenarios[restartScenario](t, "PSST_CONFORMANCE_RESTART")
	for _, sc := range scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			switch sc.Call {
			case "restart":
				runRestartScenario(t, sc)
			case "give_up":
				runGiveUpScenario(t, sc)
			default:
				t.Fatalf("unknown call %q: teach this test about it", sc.Call)
			}
		})
	}
}

func runRestartScenario(t *testing.T, sc restartScenario) {
	client, err := psst.New()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	w, err := client.Watch(context.Background(), sc.Watch)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	checkEvent(t, nextValueEvent(t, w, 10*time.Second), sc.ExpectCurrent)

	runCommand(t, "PSST_STOP_AGENT")
	down := time.Now()

	type outcome struct {
		value string
		err   error
		took  time.Duration
	}
	var wg sync.WaitGroup
	results := make(chan outcome, sc.Getters)
	for range sc.Getters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), seconds(sc.GetDeadlineSeconds))
			defer cancel()
			start := time.Now()
			s, err := client.Get(ctx, sc.Get)
			o := outcome{err: err, took: time.Since(start)}
			if err == nil {
				o.value = s.Text()
			}
			results <- o
		}()
	}

	short, cancel := context.WithTimeout(context.Background(), seconds(sc.ShortGetDeadlineSeconds))
	start := time.Now()
	_, err = client.Get(short, sc.Get)
	cancel()
	if took := time.Since(start); took > seconds(sc.ShortGetDeadlineSeconds+2) {
		t.Errorf("the short get took %v", took)
	}
	if !slices.Contains(sc.ExpectShortGetError, psst.CodeName(psst.Code(err))) {
		t.Errorf("the short get while the agent is down = %v, want one of %v", err, sc.ExpectShortGetError)
	}

	select {
	case st := <-w.Status():
		if st.Reachable || !psst.IsUnavailable(st.Err) {
			t.Errorf("status %+v, want unreachable", st)
		}
	case <-time.After(time.Until(down.Add(10 * time.Second))):
		t.Errorf("the watch did not report the agent unreachable")
	}

	time.Sleep(time.Until(down.Add(seconds(sc.DownSeconds))))
	runCommand(t, "PSST_START_AGENT")
	wg.Wait()
	close(results)
	waited := false
	for o := range results {
		if o.err != nil || o.value != sc.ExpectGet.Value {
			t.Errorf("a get made while the agent was down = %q, %v (after %v)", o.value, o.err, o.took)
		}
		waited = waited || o.took > seconds(sc.DownSeconds/2)
	}
	if !waited {
		t.Errorf("no get waited for the agent: the outage was not exercised")
	}

	put, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Put(put, sc.Watch, []byte(sc.PutAfter)); err != nil {
		t.Fatalf("put after the restart: %v", err)
	}
	checkEvent(t, nextValueEvent(t, w, 15*time.Second), sc.ExpectAfter)
	select {
	case st := <-w.Status():
		if !st.Reachable {
			t.Errorf("status after the restart = %+v, want reachable", st)
		}
	default:
		t.Errorf("the watch did not report the agent reachable again")
	}
}

func runGiveUpScenario(t *testing.T, sc restartScenario) {
	client, err := psst.New(psst.WithWatchGiveUp(seconds(sc.GiveUpAfterSeconds)))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	w, err := client.Watch(context.Background(), sc.Watch)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	checkEvent(t, nextValueEvent(t, w, 10*time.Second), sc.ExpectCurrent)
	restart := command("PSST_RESTART_AGENT", strconvSeconds(sc.DownSeconds))
	start := time.Now()
	if err := restart.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := restart.Wait(); err != nil {
			t.Errorf("restart: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), seconds(sc.ExpectErrorWithin))
	defer cancel()
	_, err = w.Next(ctx)
	if psst.CodeName(psst.Code(err)) != sc.ExpectError || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the watch ended with %v after %v, want %s", err, time.Since(start), sc.ExpectError)
	}
}

func strconvSeconds(s float64) string { return strconv.FormatFloat(s, 'f', -1, 64) }

func TestSourceConformance(t *testing.T) {
	scenarios := loadScenarios[sourceScenario](t, "PSST_CONFORMANCE_SOURCE")
	for _, sc := range scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			if sc.Call != "source" {
				t.Fatalf("unknown call %q: teach this test about it", sc.Call)
			}
			client, err := psst.New()
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			open, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			source, err := psst.NewSource(open, client, sc.Reference)
			if len(sc.Steps) == 1 && sc.Steps[0].ExpectOpenError != nil {
				if psst.CodeName(psst.Code(err)) != *sc.Steps[0].ExpectOpenError {
					t.Fatalf("NewSource = %v, want %s", err, *sc.Steps[0].ExpectOpenError)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewSource: %v", err)
			}
			defer source.Close()
			for i, step := range sc.Steps {
				switch {
				case step.ExpectValue != nil:
					s, err := source.Get(sc.Reference)
					if err != nil || s.Text() != *step.ExpectValue {
						t.Fatalf("step %d: Get = %v, %v; want %q", i, s, err, *step.ExpectValue)
					}
				case step.AWSPut != nil:
					runCommand(t, "PSST_AWS_PUT", sc.Reference, *step.AWSPut)
				case step.ExpectUpdate != nil:
					deadline := time.After(15 * time.Second)
					for done := false; !done; {
						select {
						case _, ok := <-source.Updated():
							if !ok {
								t.Fatalf("step %d: the source ended: %v", i, source.Err())
							}
							s, _ := source.Get(sc.Reference)
							done = s.Text() == *step.ExpectUpdate
						case <-deadline:
							t.Fatalf("step %d: no update to %q within 15s", i, *step.ExpectUpdate)
						}
					}
				case step.StopAgent != nil:
					runCommand(t, "PSST_STOP_AGENT")
				case step.StartAgent != nil:
					runCommand(t, "PSST_START_AGENT")
				case step.ExpectUnreachable != nil:
					select {
					case st := <-source.Status():
						if st.Reachable {
							t.Fatalf("step %d: status %+v, want unreachable", i, st)
						}
					case <-time.After(10 * time.Second):
						t.Fatalf("step %d: the source did not report the agent unreachable", i)
					}
				default:
					t.Fatalf("step %d: unknown step: teach this test about it", i)
				}
			}
		})
	}
}
