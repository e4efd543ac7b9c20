package catalog

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRunNames(t *testing.T) {
	st := func(uid string, tm float64, scan int64) *Start {
		return &Start{UID: uid, Time: tm, ScanID: scan, HasScan: scan >= 0}
	}
	starts := []*Start{
		st("3f2a5b00-aaaa", 100, 34),
		st("3f2a5b11-bbbb", 300, 34), // the newest with scan_id 34
		st("3f2a6c22-cccc", 200, 35),
		st("34aa0000-dddd", 50, 7),   // a uid starting with 34: "34" is still scan_id 34
		st("12345", 400, 8),          // a uid of digits: it names itself, exactly
		st("ffff0000-eeee", 400, -1), // no scan_id; the same time as 12345: uid order decides
	}
	n := NewRunNames(starts)
	if n.Len() != 6 || n.Newest() != "ffff0000-eeee" {
		t.Errorf("Len %d, Newest %s", n.Len(), n.Newest())
	}
	if got := fmt.Sprint(n.ScanIDs()); got != "[7 8 34 35]" {
		t.Errorf("ScanIDs = %s", got)
	}
	for _, tc := range []struct {
		name, want string
		kind       NameKind
		err        error
	}{
		{"34", "3f2a5b11-bbbb", NameScanID, nil},
		{"034", "3f2a5b11-bbbb", NameScanID, nil}, // int("034") in Python, as databroker reads it
		{"35", "3f2a6c22-cccc", NameScanID, nil},
		{"36", "", NameScanID, ErrNotFound},
		{"99999999999999999999", "", NameScanID, ErrNotFound}, // beyond int64
		{"-1", "ffff0000-eeee", NameRecent, nil},
		{"-2", "12345", NameRecent, nil},
		{"-3", "3f2a5b11-bbbb", NameRecent, nil},
		{"-6", "34aa0000-dddd", NameRecent, nil},
		{"-7", "", NameRecent, ErrNotFound},
		{"-0", "", NameRecent, ErrNotFound},
		{"-99999999999999999999", "", NameRecent, ErrNotFound},
		{"12345", "12345", NameScanID, nil}, // an exact uid wins over the scan_id reading
		{"3f2a5b11-bbbb", "3f2a5b11-bbbb", NamePrefix, nil},
		{"3f2a6", "3f2a6c22-cccc", NamePrefix, nil},
		{"3f2a5", "", NamePrefix, ErrAmbiguous},
		{"3f2a", "", NamePrefix, ErrNotFound}, // shorter than MinPrefix, although unique-ish
		{"34aa", "", NamePrefix, ErrNotFound},
		{"34aa0", "34aa0000-dddd", NamePrefix, nil},
		{"zzzzz", "", NamePrefix, ErrNotFound},
		{"", "", NamePrefix, ErrNotFound},
		{"-", "", NamePrefix, ErrNotFound},
		{"-1a", "", NamePrefix, ErrNotFound},
	} {
		if k := KindOf(tc.name); k != tc.kind {
			t.Errorf("KindOf(%q) = %d, want %d", tc.name, k, tc.kind)
		}
		got, err := n.Resolve(tc.name)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("Resolve(%q) = %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
	_, err := n.Resolve("3f2a5")
	var amb *AmbiguousError
	if !errors.As(err, &amb) || amb.Count != 2 || fmt.Sprint(amb.UIDs) != "[3f2a5b00-aaaa 3f2a5b11-bbbb]" {
		t.Errorf("ambiguous: %#v", err)
	}
	if !strings.Contains(err.Error(), "3f2a5b00-aaaa 3f2a5b11-bbbb") {
		t.Errorf("the error does not name the runs: %v", err)
	}
}

// TestRunNamesManyMatches: an ambiguous prefix of many runs names the first ten and counts
// the rest.
func TestRunNamesManyMatches(t *testing.T) {
	var starts []*Start
	for i := range 25 {
		starts = append(starts, &Start{UID: fmt.Sprintf("abcde-%03d", i), Time: float64(i)})
	}
	starts = append(starts, &Start{UID: "abcdf-000"})
	_, err := NewRunNames(starts).Resolve("abcde")
	var amb *AmbiguousError
	if !errors.As(err, &amb) || amb.Count != 25 || len(amb.UIDs) != 10 || amb.UIDs[0] != "abcde-000" || amb.UIDs[9] != "abcde-009" {
		t.Fatalf("Resolve: %v", err)
	}
	if !strings.HasSuffix(err.Error(), "abcde-009 and 15 more") {
		t.Errorf("error = %v", err)
	}
}
