package catalog

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// MinPrefix is the shortest uid prefix that names a run: shorter ones are too likely to be
// ambiguous, or to be a scan_id mistyped.
const MinPrefix = 5

// maxListed bounds the uids an AmbiguousError names.
const maxListed = 10

// NameKind says how a run name is resolved, from its spelling alone.
type NameKind int

const (
	// NamePrefix is a uid or a uid prefix (at least MinPrefix characters, not all digits).
	NamePrefix NameKind = iota
	// NameScanID is made only of digits: the newest run with that scan_id (catalog[34]).
	NameScanID
	// NameRecent is -N: the Nth newest run by start time (catalog[-1] is the newest).
	NameRecent
)

// KindOf classifies name as databroker's catalog[name] does: an integer is a scan_id when it
// is positive and counts back from the newest run when it is negative; anything else is a uid
// or a prefix of one. Names of the scan_id and recent kinds change meaning when runs arrive.
func KindOf(name string) NameKind {
	switch {
	case allDigits(name):
		return NameScanID
	case len(name) > 1 && name[0] == '-' && allDigits(name[1:]):
		return NameRecent
	}
	return NamePrefix
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// AmbiguousError is a uid prefix that matches several runs. It unwraps to ErrAmbiguous.
type AmbiguousError struct {
	Prefix string
	UIDs   []string // the first matching uids in sorted order, at most 10
	Count  int      // how many runs match
}

func (e *AmbiguousError) Error() string {
	more := ""
	if e.Count > len(e.UIDs) {
		more = fmt.Sprintf(" and %d more", e.Count-len(e.UIDs))
	}
	return fmt.Sprintf("uid prefix %q matches %d runs: %s%s", e.Prefix, e.Count, strings.Join(e.UIDs, " "), more)
}

func (e *AmbiguousError) Unwrap() error { return ErrAmbiguous }

// RunNames resolves the names a user gives runs, as databroker's catalog[name] does: a full
// uid, a unique uid prefix, a scan_id, -N. It is built from one listing and never changes.
type RunNames struct {
	uids   []string         // sorted
	recent []string         // newest first
	byScan map[int64]string // scan_id -> the newest run with it
}

// NewRunNames indexes starts (whose uids are distinct).
func NewRunNames(starts []*Start) *RunNames {
	n := &RunNames{uids: make([]string, 0, len(starts)), recent: make([]string, 0, len(starts)), byScan: map[int64]string{}}
	sorted := slices.Clone(starts)
	slices.SortFunc(sorted, func(a, b *Start) int {
		switch {
		case Newer(a, b):
			return -1
		case Newer(b, a):
			return 1
		}
		return 0
	})
	for _, s := range sorted {
		n.recent = append(n.recent, s.UID)
		if _, ok := n.byScan[s.ScanID]; s.HasScan && !ok {
			n.byScan[s.ScanID] = s.UID
		}
	}
	for _, s := range starts {
		n.uids = append(n.uids, s.UID)
	}
	if !slices.IsSorted(n.uids) {
		slices.Sort(n.uids)
	}
	return n
}

// Newer orders runs by start time, newest first, then by uid, so that "newest" is
// deterministic when runs start at the same time. A nil b is older than anything.
func Newer(a, b *Start) bool {
	if b == nil {
		return true
	}
	if a.Time != b.Time {
		return a.Time > b.Time
	}
	return a.UID > b.UID
}

// Len is the number of runs.
func (n *RunNames) Len() int { return len(n.uids) }

// Newest returns the uid of the newest run, "" when there is none.
func (n *RunNames) Newest() string {
	if len(n.recent) == 0 {
		return ""
	}
	return n.recent[0]
}

// ScanID returns the uid of the newest run with scan_id id.
func (n *RunNames) ScanID(id int64) (string, bool) {
	uid, ok := n.byScan[id]
	return uid, ok
}

// ScanIDs returns every scan_id, in increasing order.
func (n *RunNames) ScanIDs() []int64 {
	ids := make([]int64, 0, len(n.byScan))
	for id := range n.byScan {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Resolve returns the uid that name means: the run whose uid is name; else, by KindOf, the
// newest run with that scan_id (digits), the Nth newest run (-N), or the one run whose uid
// starts with name (a prefix of at least MinPrefix characters). Errors wrap ErrNotFound, or
// are an *AmbiguousError.
func (n *RunNames) Resolve(name string) (string, error) {
	i := sort.SearchStrings(n.uids, name)
	if i < len(n.uids) && n.uids[i] == name {
		return name, nil
	}
	switch KindOf(name) {
	case NameScanID:
		id, err := strconv.ParseInt(name, 10, 64)
		if err != nil {
			return "", fmt.Errorf("scan_id %s: %w", name, ErrNotFound)
		}
		if uid, ok := n.byScan[id]; ok {
			return uid, nil
		}
		return "", fmt.Errorf("no run with scan_id %d: %w", id, ErrNotFound)
	case NameRecent:
		k, err := strconv.ParseInt(name[1:], 10, 64)
		if err != nil || k < 1 || k > int64(len(n.recent)) {
			return "", fmt.Errorf("run %s: there are %d runs: %w", name, len(n.recent), ErrNotFound)
		}
		return n.recent[k-1], nil
	}
	if len(name) < MinPrefix {
		return "", fmt.Errorf("run %q: a uid prefix needs at least %d characters: %w", name, MinPrefix, ErrNotFound)
	}
	// The uids starting with name are the ones from i on, up to the first that does not.
	j := i + sort.Search(len(n.uids)-i, func(k int) bool { return !strings.HasPrefix(n.uids[i+k], name) })
	switch j - i {
	case 0:
		return "", fmt.Errorf("run %q: %w", name, ErrNotFound)
	case 1:
		return n.uids[i], nil
	}
	return "", &AmbiguousError{Prefix: name, UIDs: slices.Clone(n.uids[i:min(j, i+maxListed)]), Count: j - i}
}
