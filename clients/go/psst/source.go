package psst

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
)

// Source is the always-current value of some secrets: it reads each once when made, then
// follows them with a watch and keeps the newest value in memory. Get answers from memory;
// Updated fires after a value changed; errors never replace a good value (while the agent is
// unreachable, or after the watch ended, Get keeps returning the last value it had).
//
//	src, err := psst.NewSource(ctx, client, "sm:prod/db")
//	if err != nil { ... }
//	defer src.Close()
//	s, _ := src.Get("sm:prod/db")
//	for range src.Updated() { s, _ = src.Get("sm:prod/db"); ... }
//
// A deleted secret keeps its last value (credentials usually outlive their secret entry).
// It is safe for concurrent use.
type Source struct {
	watch   *Watch
	updated chan struct{}
	done    chan struct{}

	mu     sync.RWMutex
	values map[string]*Secret
}

// NewSource follows references and returns once each has a value. ctx bounds that first
// wait only (the Source lives until Close). It fails with the agent's error when a reference is
// refused (PERMISSION_DENIED to watch it, NOT_FOUND, INVALID_ARGUMENT), or with ctx's.
func NewSource(ctx context.Context, c *Client, references ...string) (*Source, error) {
	w, err := c.Watch(context.Background(), references...)
	if err != nil {
		return nil, err
	}
	s := &Source{
		watch:   w,
		updated: make(chan struct{}, 1),
		done:    make(chan struct{}),
		values:  make(map[string]*Secret, len(references)),
	}
	unique := map[string]bool{}
	for _, r := range references {
		unique[r] = true
	}
	for len(s.values) < len(unique) {
		e, err := w.Next(ctx)
		if err != nil {
			_ = w.Close()
			return nil, err
		}
		s.apply(e)
	}
	go s.follow()
	return s, nil
}

// Get returns the newest value of reference, one of those the Source was made with. The
// Secret is shared: do not Wipe it.
func (s *Source) Get(reference string) (*Secret, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.values[reference]
	if !ok {
		return nil, &Error{Code: codes.InvalidArgument, Message: "the source does not follow " + reference}
	}
	return v, nil
}

// Updated receives after one or more values changed (a signal, not a queue: read the values
// with Get). It is closed when the Source's watch has ended (Err says why) or on Close.
func (s *Source) Updated() <-chan struct{} { return s.updated }

// Status is the watch's reachability changes (see Watch.Status): the agent unreachable means
// the values may be out of date, not gone.
func (s *Source) Status() <-chan WatchStatus { return s.watch.Status() }

// Err is why the Source stopped following its secrets (the grant revoked, or WithWatchGiveUp),
// once Updated is closed; nil while it follows them, and after Close. The last values stay.
func (s *Source) Err() error { return s.watch.Err() }

// Close stops following the secrets. Get keeps answering with the last values.
func (s *Source) Close() error {
	err := s.watch.Close()
	<-s.done
	return err
}

// apply records a value-carrying event; other events (pending, deleted) keep the value.
func (s *Source) apply(e *WatchEvent) bool {
	if !e.carriesValue() || e.Secret == nil {
		return false
	}
	s.mu.Lock()
	s.values[e.Reference] = e.Secret
	s.mu.Unlock()
	return true
}

func (s *Source) follow() {
	defer close(s.done)
	defer close(s.updated)
	for e := range s.watch.Events() {
		if s.apply(e) {
			select {
			case s.updated <- struct{}{}:
			default: // a signal is already pending
			}
		}
	}
}
