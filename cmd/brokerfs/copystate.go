package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/brokerfs/brokerfs/catalog"
)

// How brokerfs copy tells whether a run's copy in DEST is the source's run as it is now.
//
// A run copied while it was live has no stop document in DEST; when the source's run has
// since finished, or gained documents, the copy is an earlier state of it: "grown", and
// re-copied by default (nothing in DEST is lost). Any other difference ("changed": another
// stop document, fewer documents in the source, other counts) means something rewrote one
// side; such a copy is only re-copied with --update.
//
// What is compared: the stop document (present, and its uid and per-stream event counts),
// and, when either side has no stop or with --update, the number of documents of each kind
// (descriptors, events, resources, datums: rows, whether stored as pages or not). A finished
// run whose copy holds the same stop document is taken as the same without reading its
// documents (each copy was verified by those counts when it was written), so that a re-run
// over a large catalog reads only stop documents; --update reads and counts both sides.

// runSide is what was learned of one side of a run.
type runSide struct {
	stop   *catalog.Stop  // nil while live
	counts map[string]int // documents per kind; nil when not counted
}

func (s runSide) String() string {
	var b strings.Builder
	if s.stop == nil {
		b.WriteString("no stop")
	} else {
		fmt.Fprintf(&b, "stop %s", s.stop.UID)
		for _, k := range slices.Sorted(maps.Keys(s.stop.NumEvents)) {
			fmt.Fprintf(&b, " %s:%d", k, s.stop.NumEvents[k])
		}
	}
	if s.counts != nil {
		for _, k := range slices.Sorted(maps.Keys(s.counts)) {
			fmt.Fprintf(&b, ", %d %s", s.counts[k], k)
		}
	}
	return b.String()
}

// runDiff compares a run in the source (src) with its copy in DEST (dst).
type runDiff struct{ src, dst runSide }

func (d runDiff) sameStop() bool {
	a, b := d.src.stop, d.dst.stop
	if a == nil || b == nil {
		return a == b
	}
	return a.UID == b.UID && maps.Equal(a.NumEvents, b.NumEvents)
}

func (d runDiff) same() bool {
	return d.sameStop() && maps.Equal(d.src.counts, d.dst.counts)
}

// grown reports whether the copy is an earlier state of a run that was live when copied:
// it has no stop, and the source has as many documents of each kind or more.
func (d runDiff) grown() bool {
	if d.dst.stop != nil || d.same() {
		return false
	}
	for k, n := range d.dst.counts {
		if d.src.counts[k] < n {
			return false
		}
	}
	return true
}

// compare learns what is needed to tell whether the copy of run uid in DEST differs.
func (c *copier) compare(ctx context.Context, uid string) (runDiff, error) {
	var d runDiff
	src, err := c.src.Run(ctx, uid)
	if err != nil {
		return d, fmt.Errorf("source: %w", err)
	}
	dst, err := c.dst.Run(ctx, uid)
	if err != nil {
		return d, fmt.Errorf("DEST: %w", err)
	}
	if d.src.stop, err = runStop(ctx, src); err != nil {
		return d, fmt.Errorf("source: %w", err)
	}
	if d.dst.stop, err = runStop(ctx, dst); err != nil {
		return d, fmt.Errorf("DEST: %w", err)
	}
	if d.src.stop != nil && d.dst.stop != nil && !c.update {
		return d, nil
	}
	if d.src.counts, err = countRows(ctx, src); err != nil {
		return d, fmt.Errorf("source: %w", err)
	}
	if d.dst.counts, err = countRows(ctx, dst); err != nil {
		return d, fmt.Errorf("DEST: %w", err)
	}
	return d, nil
}

// runStop returns an open run's stop document, nil while it is live.
func runStop(ctx context.Context, r catalog.Run) (*catalog.Stop, error) {
	s, err := r.Stop(ctx)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil, nil
	}
	return s, err
}
