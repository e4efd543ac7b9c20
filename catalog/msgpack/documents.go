package msgpack

import (
	"context"
	"fmt"
	"io"

	"github.com/brokerfs/brokerfs/catalog"
)

var _ catalog.DocumentReader = (*run)(nil)

// Documents implements catalog.DocumentReader: every document of the snapshot, in file order,
// decoded into generic values (msgpack-numpy arrays as *catalog.NDArray, copied). It reads the
// indexed part of the file at once: a copy holds the run's documents anyway. A malformed
// document fails the replay, so that a copy never drops one silently.
func (r *run) Documents(ctx context.Context, fn func(catalog.Document) error) error {
	f, err := r.open()
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, r.ix.end)
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return fmt.Errorf("read %s: %w", r.path, err)
	}
	for pos := 0; pos < len(b); {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := pos
		n, p, err := arrayLen(b, pos)
		if err == nil && n != 2 {
			err = fmt.Errorf("document is an array of %d, not [name, doc]", n)
		}
		var name []byte
		if err == nil {
			name, p, err = str(b, p)
		}
		var doc any
		if err == nil {
			doc, p, err = value(b, p, false, 0)
		}
		m, ok := doc.(map[string]any)
		if err == nil && !ok {
			err = fmt.Errorf("document is %T, not a map", doc)
		}
		if err != nil {
			return &catalog.DocError{Source: fmt.Sprintf("%s@%d", r.path, start), Err: err}
		}
		if err := fn(catalog.Document{Name: string(name), Doc: m}); err != nil {
			return err
		}
		pos = p
	}
	return nil
}
