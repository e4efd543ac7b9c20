package jsonl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/brokerfs/brokerfs/catalog"
)

var _ catalog.DocumentReader = (*run)(nil)

// Documents implements catalog.DocumentReader: every line of the snapshot, in file order,
// decoded. A malformed line fails the replay (a copy must not silently drop documents).
func (r *run) Documents(ctx context.Context, fn func(catalog.Document) error) error {
	f, err := os.Open(r.path)
	if err != nil {
		return err
	}
	defer f.Close()
	lr := newLineReader(f, 0, r.size, 64<<10)
	var d decoder
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		line, off, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s@%d: %w", r.path, off, err)
		}
		if len(line) == 0 {
			continue
		}
		kind, doc, _, err := d.decodeLine(line)
		if err != nil {
			return &catalog.DocError{Source: fmt.Sprintf("%s@%d", r.path, off), Err: err}
		}
		if err := fn(catalog.Document{Name: kind.String(), Doc: doc}); err != nil {
			return err
		}
	}
}
