package msgpack

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
)

// TestBitFlips flips, one at a time, bits of an event page (list, string and nested
// columns, a numpy column) between good pages. No flip may fail a read of the stream (it did
// for 339 of them: a broken column failed every EventPages call, so every file of the stream
// was EIO): the flipped document is skipped, or read with a changed value, or the bytes up to
// the next well-formed document are passed over. The pages before it always read, and a read
// from any row agrees with the whole read on that row (the index and the reads skip the same
// documents).
func TestBitFlips(t *testing.T) {
	docs := liveDocs("flip", 3)
	docs = append(docs, catalog.Document{Name: "event_page", Doc: m{"descriptor": "flip-d", "uid": []any{"a", "b", "c"},
		"time": []any{1.5e9 + 3, 1.5e9 + 3.1, 1.5e9 + 3.2}, "seq_num": []any{int64(4), int64(5), int64(6)},
		"data": m{"I0": []any{2.5, 1.0, 2.0}, "s": []any{"hello", "a", "b"}, "l": []any{[]any{1.0, 2.0}, []any{1.0, 2.0}, []any{1.0, 2.0}},
			"n": &catalog.NDArray{Dtype: "<f8", Shape: []int{3}, Data: make([]byte, 24)}},
		"timestamps": m{"I0": []any{1.0, 2.0, 3.0}}, "filled": m{}}})
	docs = append(docs, events("flip", 4, 3)...)
	full := encode(t, docs)
	start, end := len(encode(t, docs[:5])), len(encode(t, docs[:6]))
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	// Every third bit: each byte of the page gets flipped, at every bit position across
	// bytes (all of them cost 9 s under the race detector).
	for bit := start * 8; bit < end*8; bit += 3 {
		data := bytes.Clone(full)
		data[bit/8] ^= 1 << (bit % 8)
		ix, err := newIndexer("f", bytes.NewReader(data), int64(len(data)), time.Time{}, nil, log).build()
		if err != nil {
			t.Fatalf("bit %d: index: %v", bit, err)
		}
		r := &run{path: "f", ix: ix, open: func() (readerAt, error) { return bytesFile{bytes.NewReader(data)}, nil }}
		var times []float64
		err = r.EventPages(ctx, "flip-d", 0, -1, nil, func(p *catalog.EventPage) error {
			if p.FirstRow != len(times) {
				t.Fatalf("bit %d: page at row %d after %d rows", bit, p.FirstRow, len(times))
			}
			times = append(times, p.Time...)
			return nil
		})
		if err != nil {
			t.Fatalf("bit %d: EventPages: %v", bit, err)
		}
		if len(times) < 3 || times[0] != 1.5e9 || times[2] != 1.5e9+2 {
			t.Fatalf("bit %d: the pages before the flip: %v", bit, times)
		}
		// Reads from the rows at and after the flipped page (one per bit and row would cost
		// half a minute under the race detector).
		for _, row := range []int{3, len(times) - 1} {
			if row >= len(times) {
				continue
			}
			var got []float64
			err := r.EventPages(ctx, "flip-d", row, row+1, []string{"I0"}, func(p *catalog.EventPage) error {
				if p.FirstRow <= row && row < p.FirstRow+p.Len() {
					got = append(got, p.Time[row-p.FirstRow])
				}
				return nil
			})
			if err != nil || len(got) != 1 || !(got[0] == times[row] || got[0] != got[0] && times[row] != times[row]) {
				t.Fatalf("bit %d: row %d read alone: %v, %v; in the whole read %v", bit, row, got, err, times[row])
			}
		}
	}
}
