package jsonl

import (
	"reflect"
	"sort"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
)

// TestEventDecoderPages feeds lines whose fields change and checks how they are cut into pages:
// a field appearing or vanishing starts a new page, ints and floats keep their types, a line
// that fails leaves the page as it was.
func TestEventDecoderPages(t *testing.T) {
	lines := []string{
		`["event", {"descriptor": "d", "time": 1, "seq_num": 1, "data": {"x": 1}, "timestamps": {"x": 1}}]`,
		`["event", {"descriptor": "d", "time": 2, "seq_num": 2, "data": {"x": 2.5}, "timestamps": {"x": 2}}]`,
		`["event", {"descriptor": "other", "time": 9, "seq_num": 9, "data": {"x": 9, "z": 9}}]`,
		`["event", {"descriptor": "d", "time": 2, "seq_num": 2, "data": {"x": 3, "z": [1, 2]}, "oops": }]`,
		`["event", {"descriptor": "d", "time": 3, "seq_num": 3, "data": {"x": 3, "y": "a"}, "timestamps": {"x": 3, "y": 3}}]`,
		`["event_page", {"descriptor": "d", "time": [4, 5], "seq_num": [4, 5], "data": {"y": ["b", "c"]}, "timestamps": {"y": [4, 5]}}]`,
		`["event", {"data": {"y": "d", "y": "e"}, "descriptor": "d", "time": 6, "seq_num": 6, "timestamps": {"y": 6}}]`,
	}
	type page struct {
		First int
		Seq   []int64
		Data  map[string][]any
		TS    []string
	}
	var got []page
	e := newEventDecoder("d", nil)
	first, row := 0, 0
	flush := func() {
		err := e.flush("d", first, func(p *catalog.EventPage) error {
			pg := page{First: p.FirstRow, Seq: append([]int64(nil), p.SeqNum...), Data: map[string][]any{}}
			for k, c := range p.Data {
				for i := range c.Len() {
					pg.Data[k] = append(pg.Data[k], c.At(i))
				}
			}
			for k := range p.Timestamps {
				pg.TS = append(pg.TS, k)
			}
			got = append(got, pg)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, line := range lines {
		kind, doc, err := header([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if e.rows == 0 {
			first = row
		}
		n, err := e.add([]byte(line), kind, doc)
		if err == errReshape {
			flush()
			first = row
			n, err = e.add([]byte(line), kind, doc)
		}
		switch {
		case i == 2 && err != errOtherDescriptor, i == 3 && err == nil, i != 2 && i != 3 && err != nil:
			t.Fatalf("line %d: %v", i, err)
		}
		row += n
	}
	flush()
	want := []page{
		{First: 0, Seq: []int64{1, 2}, Data: map[string][]any{"x": {int64(1), 2.5}}, TS: []string{"x"}},
		{First: 2, Seq: []int64{3}, Data: map[string][]any{"x": {int64(3)}, "y": {"a"}}, TS: []string{"x", "y"}},
		{First: 3, Seq: []int64{4, 5, 6}, Data: map[string][]any{"y": {"b", "c", "e"}}, TS: []string{"y"}},
	}
	for i := range got {
		sort.Strings(got[i].TS)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pages\n got %+v\nwant %+v", got, want)
	}
}
