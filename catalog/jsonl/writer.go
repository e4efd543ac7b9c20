package jsonl

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/brokerfs/brokerfs/catalog"
)

// Writer writes documents as suitcase-jsonl does: one `["name", {document}]` line each, in the
// separators of Python's json.dumps. Each document goes out in one Write call, so a reader
// tailing an O_APPEND file sees whole lines or an incomplete last line, never a torn middle.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes one document. doc holds generic values (see catalog.AppendJSON).
func (w *Writer) Write(name string, doc map[string]any) error {
	b := append(w.buf[:0], '[')
	b = catalog.AppendJSONString(b, name)
	b = append(b, ", "...)
	b = catalog.AppendJSON(b, doc)
	b = append(b, "]\n"...)
	w.buf = b
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("write %s document: %w", name, err)
	}
	return nil
}

// WriteRun writes a run's documents to the file path. The file appears whole: it is written
// under a temporary name (hidden, without the .jsonl suffix a catalog lists) and renamed.
func WriteRun(path string, docs []catalog.Document) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write run %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	bw := bufio.NewWriterSize(tmp, 64<<10)
	w := NewWriter(bw)
	for _, d := range docs {
		if err = w.Write(d.Name, d.Doc); err != nil {
			break
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// CreateTemp makes the file 0600; a run file is for everyone who reads the catalog.
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write run %s: %w", path, err)
	}
	return nil
}
