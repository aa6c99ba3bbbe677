package psst

// White-box tests of fold, the latest-value folding of events not yet read.

import (
	"testing"
)

func ev(ref string, kind EventKind, version, previous string) *WatchEvent {
	e := &WatchEvent{Reference: ref, Kind: kind, PreviousVersionID: previous}
	if kind == EventCurrent || kind == EventNewVersion {
		e.Secret = &Secret{Reference: ref, VersionID: version, value: []byte("value-" + version)}
	} else if kind == EventPendingVersion {
		e.PendingVersionID = version
	}
	return e
}

// summary is "ref KIND version<-previous" per event, the value checked against the version.
func summary(t *testing.T, queue []*WatchEvent) []string {
	t.Helper()
	var out []string
	for _, e := range queue {
		s := e.Reference + " " + e.Kind.String()
		if e.Secret != nil {
			if string(e.Secret.value) != "value-"+e.Secret.VersionID {
				t.Errorf("%v carries the value of another version: %q", e, e.Secret.value)
			}
			s += " " + e.Secret.VersionID
		}
		if e.PendingVersionID != "" {
			s += " pending " + e.PendingVersionID
		}
		s += "<-" + e.PreviousVersionID
		out = append(out, s)
	}
	return out
}

func TestFold(t *testing.T) {
	cases := []struct {
		name string
		in   []*WatchEvent
		want []string
	}{
		{
			name: "a later version replaces an unread one and keeps its previous version",
			in:   []*WatchEvent{ev("a", EventNewVersion, "2", "1"), ev("a", EventNewVersion, "3", "2"), ev("a", EventNewVersion, "4", "3")},
			want: []string{"a NEW_VERSION 4<-1"},
		},
		{
			name: "an unread CURRENT stays CURRENT",
			in:   []*WatchEvent{ev("a", EventCurrent, "1", ""), ev("a", EventNewVersion, "2", "1")},
			want: []string{"a CURRENT 2<-"},
		},
		{
			name: "references fold separately and keep their order",
			in: []*WatchEvent{
				ev("a", EventCurrent, "1", ""), ev("b", EventCurrent, "7", ""),
				ev("a", EventNewVersion, "2", "1"), ev("b", EventNewVersion, "8", "7"), ev("c", EventCurrent, "1", ""),
			},
			want: []string{"a CURRENT 2<-", "b CURRENT 8<-", "c CURRENT 1<-"},
		},
		{
			name: "a deletion in between is not folded over",
			in:   []*WatchEvent{ev("a", EventNewVersion, "2", "1"), ev("a", EventDeleted, "", ""), ev("a", EventNewVersion, "1", "")},
			want: []string{"a NEW_VERSION 2<-1", "a DELETED<-", "a NEW_VERSION 1<-"},
		},
		{
			name: "a pending version in between is kept in order",
			in: []*WatchEvent{
				ev("a", EventCurrent, "1", ""), ev("a", EventPendingVersion, "2", "1"),
				ev("a", EventNewVersion, "2", "1"), ev("a", EventNewVersion, "3", "2"),
			},
			want: []string{"a CURRENT 1<-", "a PENDING_VERSION pending 2<-1", "a NEW_VERSION 3<-1"},
		},
		{
			name: "another reference's events in between do not stop folding",
			in:   []*WatchEvent{ev("a", EventNewVersion, "2", "1"), ev("b", EventDeleted, "", ""), ev("a", EventNewVersion, "3", "2")},
			want: []string{"a NEW_VERSION 3<-1", "b DELETED<-"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var queue []*WatchEvent
			var replaced []*Secret
			for _, e := range tc.in {
				if e.Secret != nil {
					replaced = append(replaced, e.Secret)
				}
				queue = fold(queue, e)
			}
			got := summary(t, queue)
			if len(got) != len(tc.want) {
				t.Fatalf("fold = %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("fold = %q, want %q", got, tc.want)
					break
				}
			}
			// The versions folded away are wiped: their values were never handed out.
			kept := map[*Secret]bool{}
			for _, e := range queue {
				kept[e.Secret] = true
			}
			for _, s := range replaced {
				if !kept[s] && s.value != nil {
					t.Errorf("folded-away version %s still holds its value", s.VersionID)
				}
			}
		})
	}
}
