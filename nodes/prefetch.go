package nodes

import (
	"context"
	"fmt"

	"github.com/brokerfs/brokerfs/encode"
	"github.com/brokerfs/brokerfs/table"
)

// PrefetchResult counts what Prefetch did for one run.
type PrefetchResult struct {
	Streams   int   // streams decoded or found in the cache
	Frames    int64 // rows of external fields read
	Skipped   bool  // the run is live: nothing of it is persisted
	Externals bool  // the run has external fields
}

// Prefetch decodes every stream of the run uid into cfg.Cache, as the first read of its
// files would, and with external also reads every row of its external fields into their
// sparse cache files: what `brokerfs cache prefetch` does before the files move or the
// beamtime ends.
func Prefetch(ctx context.Context, cfg Config, uid string, external bool) (PrefetchResult, error) {
	st := newState(cfg)
	var res PrefetchResult
	r, err := st.run(ctx, uid)
	if err != nil {
		return res, err
	}
	if r.live() {
		res.Skipped = true
		return res, nil
	}
	res.Externals = r.hasResources
	for _, name := range r.names {
		s := r.streams[name]
		t, err := s.Table(ctx)
		if err != nil {
			return res, fmt.Errorf("stream %s: %w", name, err)
		}
		res.Streams++
		if !external {
			continue
		}
		for _, f := range s.Fields {
			c := t.Fields[f]
			if c == nil || !c.External() {
				continue
			}
			n, err := fillAll(ctx, c)
			res.Frames += n
			if err != nil {
				return res, fmt.Errorf("stream %s field %s: %w", name, f, err)
			}
		}
	}
	return res, nil
}

// fillAll reads every row of an external column once, which fills its sparse cache file.
func fillAll(ctx context.Context, c *table.Column) (int64, error) {
	a, err := c.Array(ctx)
	if err != nil {
		return 0, err
	}
	rb := encode.RowBytes(a)
	per := max(1, (8<<20)/max(rb, 1))
	buf := make([]byte, per*rb)
	var n int64
	for r := 0; r < a.Rows(); r += per {
		k := min(per, a.Rows()-r)
		if err := a.ReadRows(ctx, r, r+k, buf[:k*rb]); err != nil {
			return n, err
		}
		n += int64(k)
	}
	return n, nil
}
