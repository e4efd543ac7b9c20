package nodes

import (
	"context"

	"github.com/brokerfs/brokerfs/encode"
	"github.com/brokerfs/brokerfs/table"
)

// tiffListed reports whether field f of stream s lists a <field>.tif: a field of two or more
// dimensions per event whose dtype TIFF holds. A field stored in the table is known by its
// column; an external one (or any, when the scan failed) by its data key's shape, as its
// .csv is: listing a directory opens no detector file. A listed .tif that turns out to have
// no images form (the data key was wrong) answers ENOENT.
func tiffListed(s *table.Stream, t *table.Table, tableErr error, f string) bool {
	if tableErr == nil {
		if c := t.Fields[f]; c != nil && !c.External() {
			if c.Err != nil || len(c.RowShape) < 2 {
				return false
			}
			_, err := encode.NewTIFFLayout(c.Dtype, append([]int{0}, c.RowShape...))
			return err == nil
		}
	}
	return len(s.Keys[f].Shape) >= 2
}

// tiffEntry is <stem>.tif of field f of stream name: the column's multi-page TIFF.
func tiffEntry(name, f, stem string) entry {
	return entry{name: stem + ".tif", file: in(name, func(ctx context.Context, _ *table.Stream, t *table.Table) (content, error) {
		c, err := column(t, f)
		if err != nil {
			return nil, err
		}
		return c.TIFF(ctx)
	})}
}
