package catalog

import "context"

// keepsKey is the context key of WithKeptReads.
type keepsKey struct{}

// WithKeptReads returns a context telling the catalog that the caller keeps what its reads
// return (it writes the values into a cache entry): a catalog of local files may then drop its
// own copy of big documents from the page cache once decoded, instead of holding the bytes
// twice. Advice only; a catalog is free to ignore it.
func WithKeptReads(ctx context.Context) context.Context {
	return context.WithValue(ctx, keepsKey{}, true)
}

// KeptReads reports whether ctx carries WithKeptReads.
func KeptReads(ctx context.Context) bool {
	v, _ := ctx.Value(keepsKey{}).(bool)
	return v
}

// earlyKey is the context key of WithEarlyRun.
type earlyKey struct{}

// EarlyRun is called by a catalog that opens a run in one long pass over its documents (a
// big run file indexed on first use) once the pass has met the first event document, so
// that the caller can start reading them behind the pass instead of after it. run
// is the run as indexed so far: Start, the descriptors and resources met so far and, when
// the run has one, the Version the finished pass will give; its EventPages follows the pass
// (it waits for documents not yet indexed) and ends with the pass, reading exactly what the
// finished run's EventPages reads, or fails. Stop reports ErrNotFound until the pass ends.
// desc is that event's descriptor. The callback runs on the pass's goroutine: it
// must return at once. What the caller builds from run is speculative: it must be checked
// against the run that Catalog.Run returns (its stop, descriptors and version).
type EarlyRun func(run Run, desc string)

// WithEarlyRun returns a context asking Catalog.Run to call fn as EarlyRun says. Advice
// only: a catalog is free to ignore it, and calls fn at most once per pass.
func WithEarlyRun(ctx context.Context, fn EarlyRun) context.Context {
	return context.WithValue(ctx, earlyKey{}, fn)
}

// EarlyRunOf returns the callback that ctx carries, nil when none.
func EarlyRunOf(ctx context.Context) EarlyRun {
	fn, _ := ctx.Value(earlyKey{}).(EarlyRun)
	return fn
}
