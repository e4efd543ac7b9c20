package mongo

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Version implements catalog.Versioner for the normalized layout: the catalog (its redacted
// URI), the run's start and stop uids and the number of events of each descriptor, one
// count per descriptor. A live run has no version: it is never persisted.
func (r *normRun) Version(ctx context.Context) (_ string, err error) {
	defer r.c.scrub(&err)
	stop, err := r.Stop(ctx)
	if err != nil {
		return "", nil
	}
	descs, err := r.Descriptors(ctx)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "mongo-normalized\x00%s\x00%s\x00%s", r.c.name, r.start.UID, stop.UID)
	for _, d := range descs {
		n, err := r.col.events.CountDocuments(ctx, bson.D{{Key: "descriptor", Value: d.UID}})
		if err != nil {
			return "", fmt.Errorf("count events of descriptor %s of run %s in %s: %w", d.UID, r.start.UID, r.c.name, err)
		}
		fmt.Fprintf(&b, "\x00%s=%d", d.UID, n)
	}
	return b.String(), nil
}

// Version implements catalog.Versioner for the embedded layout: the header holds the stop and
// the descriptors, and the stop's num_events counts each stream's events.
func (r *embRun) Version(context.Context) (string, error) {
	if r.stop == nil {
		return "", nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "mongo-embedded\x00%s\x00%s\x00%s", r.c.name, r.start.UID, r.stop.UID)
	for _, d := range r.descs {
		fmt.Fprintf(&b, "\x00%s", d.UID)
	}
	for _, k := range slices.Sorted(maps.Keys(r.stop.NumEvents)) {
		fmt.Fprintf(&b, "\x00%s=%d", k, r.stop.NumEvents[k])
	}
	return b.String(), nil
}
