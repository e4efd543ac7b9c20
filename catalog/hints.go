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
