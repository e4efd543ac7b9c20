package catalog

import "fmt"

// Kind says which slice of a Column holds its values.
type Kind uint8

// Column kinds, in promotion order: a column starts empty and widens as values arrive
// (Int + Float -> Float; anything mixed with another kind -> Value).
const (
	KindEmpty  Kind = iota
	KindInt         // I
	KindFloat       // F
	KindBool        // B
	KindString      // S
	KindValue       // V: nil, *NDArray, []any, map[string]any, or a mix of kinds
)

// Column holds one field's values for the rows of a page. Exactly the slice named by Kind is in
// use; the others may hold stale capacity for reuse.
type Column struct {
	Kind Kind
	I    []int64
	F    []float64
	B    []bool
	S    []string
	V    []any
}

// Len is the number of values in the column.
func (c *Column) Len() int {
	switch c.Kind {
	case KindInt:
		return len(c.I)
	case KindFloat:
		return len(c.F)
	case KindBool:
		return len(c.B)
	case KindString:
		return len(c.S)
	case KindValue:
		return len(c.V)
	}
	return 0
}

// Reset empties the column, keeping its capacity.
func (c *Column) Reset() {
	c.Kind = KindEmpty
	c.I, c.F, c.B, c.S, c.V = c.I[:0], c.F[:0], c.B[:0], c.S[:0], c.V[:0]
}

// At returns value i as a generic value (int64, float64, bool, string or the stored value).
func (c *Column) At(i int) any {
	switch c.Kind {
	case KindInt:
		return c.I[i]
	case KindFloat:
		return c.F[i]
	case KindBool:
		return c.B[i]
	case KindString:
		return c.S[i]
	case KindValue:
		return c.V[i]
	}
	return nil
}

// AppendFloat appends a float64, widening an integer column to floats.
func (c *Column) AppendFloat(v float64) {
	switch c.Kind {
	case KindFloat:
	case KindEmpty:
		c.Kind = KindFloat
	case KindInt:
		for _, x := range c.I {
			c.F = append(c.F, float64(x))
		}
		c.Kind = KindFloat
	default:
		c.AppendValue(v)
		return
	}
	c.F = append(c.F, v)
}

// AppendInt appends an int64 (to a float column as a float).
func (c *Column) AppendInt(v int64) {
	switch c.Kind {
	case KindInt:
	case KindEmpty:
		c.Kind = KindInt
	case KindFloat:
		c.F = append(c.F, float64(v))
		return
	default:
		c.AppendValue(v)
		return
	}
	c.I = append(c.I, v)
}

// AppendBool appends a bool.
func (c *Column) AppendBool(v bool) {
	switch c.Kind {
	case KindBool:
	case KindEmpty:
		c.Kind = KindBool
	default:
		c.AppendValue(v)
		return
	}
	c.B = append(c.B, v)
}

// AppendString appends a string.
func (c *Column) AppendString(v string) {
	switch c.Kind {
	case KindString:
	case KindEmpty:
		c.Kind = KindString
	default:
		c.AppendValue(v)
		return
	}
	c.S = append(c.S, v)
}

// AppendValue appends any generic value, turning the column into a KindValue column.
func (c *Column) AppendValue(v any) {
	if c.Kind != KindValue {
		n := c.Len()
		old := *c
		c.V = c.V[:0]
		for i := 0; i < n; i++ {
			c.V = append(c.V, old.At(i))
		}
		c.Kind = KindValue
	}
	c.V = append(c.V, v)
}

// Append appends a generic value through the typed appenders.
func (c *Column) Append(v any) {
	switch x := v.(type) {
	case float64:
		c.AppendFloat(x)
	case int64:
		c.AppendInt(x)
	case bool:
		c.AppendBool(x)
	case string:
		c.AppendString(x)
	default:
		c.AppendValue(v)
	}
}

// EventPage is a columnar page of one descriptor's events.
type EventPage struct {
	Descriptor string
	FirstRow   int // index, within the descriptor's events in stored order, of row 0
	Time       []float64
	SeqNum     []int64
	Data       map[string]*Column   // field -> values (only the fields asked for)
	Timestamps map[string][]float64 // field -> timestamps: at least the fields asked for (all when fields is nil)
	Filled     map[string][]any     // field -> false or datum id, where the page says
}

// Len is the number of rows in the page.
func (p *EventPage) Len() int { return len(p.Time) }

// DatumPage is a columnar page of one resource's datums.
type DatumPage struct {
	Resource    string
	DatumID     []string
	DatumKwargs map[string][]any
}

// Len is the number of datums in the page.
func (p *DatumPage) Len() int { return len(p.DatumID) }

// Reset empties the page for reuse, keeping the capacity of its columns.
func (p *EventPage) Reset(descriptor string, firstRow int) {
	p.Descriptor, p.FirstRow = descriptor, firstRow
	p.Time, p.SeqNum = p.Time[:0], p.SeqNum[:0]
	if p.Data == nil {
		p.Data = make(map[string]*Column)
		p.Timestamps = make(map[string][]float64)
		p.Filled = make(map[string][]any)
	}
	for _, c := range p.Data {
		c.Reset()
	}
	for k := range p.Timestamps {
		p.Timestamps[k] = p.Timestamps[k][:0]
	}
	for k := range p.Filled {
		p.Filled[k] = p.Filled[k][:0]
	}
}

// Column returns the page's column for field, creating it empty.
func (p *EventPage) Column(field string) *Column {
	c := p.Data[field]
	if c == nil {
		c = &Column{}
		p.Data[field] = c
	}
	return c
}

// Trim drops columns and timestamps that hold fewer rows than the page (fields this page did
// not carry), so that consumers see only complete columns.
func (p *EventPage) Trim() {
	n := p.Len()
	for k, c := range p.Data {
		if c.Len() != n {
			delete(p.Data, k)
		}
	}
	for k, ts := range p.Timestamps {
		if len(ts) != n {
			delete(p.Timestamps, k)
		}
	}
	for k, f := range p.Filled {
		if len(f) != n {
			delete(p.Filled, k)
		}
	}
}

// Wanted reports whether field is among fields (nil means every field).
func Wanted(fields []string, field string) bool {
	if fields == nil {
		return true
	}
	for _, f := range fields {
		if f == field {
			return true
		}
	}
	return false
}

// AppendEvent appends a decoded event document as one row of p.
func AppendEvent(p *EventPage, doc map[string]any, fields []string) error {
	t, err := needFloat(doc, "time")
	if err != nil {
		return err
	}
	v, err := need(doc, "seq_num")
	if err != nil {
		return err
	}
	seq, ok := AsInt(v)
	if !ok {
		return fmt.Errorf("key \"seq_num\": want integer, have %T", v)
	}
	data, ok := doc["data"].(map[string]any)
	if !ok {
		return fmt.Errorf("key \"data\": want map, have %T", doc["data"])
	}
	p.Time = append(p.Time, t)
	p.SeqNum = append(p.SeqNum, seq)
	for k, v := range data {
		if Wanted(fields, k) {
			p.Column(k).Append(v)
		}
	}
	ts, _ := doc["timestamps"].(map[string]any)
	for k, v := range ts {
		f, _ := AsFloat(v)
		p.Timestamps[k] = append(p.Timestamps[k], f)
	}
	filled, _ := doc["filled"].(map[string]any)
	for k, v := range filled {
		p.Filled[k] = append(p.Filled[k], v)
	}
	return nil
}

// AppendEventPage appends the rows of a decoded event_page document to p.
func AppendEventPage(p *EventPage, doc map[string]any, fields []string) error {
	times, ok := doc["time"].([]any)
	if !ok {
		return fmt.Errorf("key \"time\": want list, have %T", doc["time"])
	}
	seqs, ok := doc["seq_num"].([]any)
	if !ok || len(seqs) != len(times) {
		return fmt.Errorf("key \"seq_num\": want list of %d", len(times))
	}
	data, ok := doc["data"].(map[string]any)
	if !ok {
		return fmt.Errorf("key \"data\": want map, have %T", doc["data"])
	}
	n := len(times)
	for k, v := range data {
		col, err := pageColumn(v, n)
		if err != nil {
			return fmt.Errorf("data %q: %w", k, err)
		}
		if !Wanted(fields, k) {
			continue
		}
		c := p.Column(k)
		for _, x := range col {
			c.Append(x)
		}
	}
	for i := range times {
		t, ok := AsFloat(times[i])
		if !ok {
			return fmt.Errorf("time[%d]: want number, have %T", i, times[i])
		}
		s, ok := AsInt(seqs[i])
		if !ok {
			return fmt.Errorf("seq_num[%d]: want integer, have %T", i, seqs[i])
		}
		p.Time = append(p.Time, t)
		p.SeqNum = append(p.SeqNum, s)
	}
	ts, _ := doc["timestamps"].(map[string]any)
	for k, v := range ts {
		col, err := pageColumn(v, n)
		if err != nil {
			return fmt.Errorf("timestamps %q: %w", k, err)
		}
		for _, x := range col {
			f, _ := AsFloat(x)
			p.Timestamps[k] = append(p.Timestamps[k], f)
		}
	}
	filled, _ := doc["filled"].(map[string]any)
	for k, v := range filled {
		col, err := pageColumn(v, n)
		if err != nil {
			return fmt.Errorf("filled %q: %w", k, err)
		}
		p.Filled[k] = append(p.Filled[k], col...)
	}
	return nil
}

// pageColumn returns the n values of an event_page column: a list, or an array whose first
// dimension is n (msgpack-numpy writers store whole columns as one array).
func pageColumn(v any, n int) ([]any, error) {
	switch x := v.(type) {
	case []any:
		if len(x) != n {
			return nil, fmt.Errorf("column of %d values in a page of %d rows", len(x), n)
		}
		return x, nil
	case *NDArray:
		if len(x.Shape) == 0 || x.Shape[0] != n {
			return nil, fmt.Errorf("array column of shape %v in a page of %d rows", x.Shape, n)
		}
		return x.Rows(), nil
	}
	return nil, fmt.Errorf("want list, have %T", v)
}

// Rows splits an array along its first dimension: scalars for 1-D arrays, arrays otherwise.
func (a *NDArray) Rows() []any {
	n := a.Shape[0]
	out := make([]any, n)
	sub := &NDArray{Dtype: a.Dtype, Shape: a.Shape[1:]}
	per := sub.Len()
	if len(sub.Shape) == 0 {
		list, _ := a.List().([]any)
		copy(out, list)
		return out
	}
	size := 0
	if n > 0 && a.Strings == nil {
		size = len(a.Data) / n
	}
	for i := range out {
		r := &NDArray{Dtype: a.Dtype, Shape: sub.Shape}
		if a.Strings != nil {
			r.Strings = a.Strings[i*per : (i+1)*per]
		} else {
			r.Data = a.Data[i*size : (i+1)*size]
		}
		out[i] = r
	}
	return out
}

// AppendDatum appends a decoded datum document to p.
func AppendDatum(p *DatumPage, doc map[string]any) error {
	id, err := needString(doc, "datum_id")
	if err != nil {
		return err
	}
	kw, _ := doc["datum_kwargs"].(map[string]any)
	n := len(p.DatumID)
	p.DatumID = append(p.DatumID, id)
	if p.DatumKwargs == nil {
		p.DatumKwargs = make(map[string][]any)
	}
	for k, v := range kw {
		col := p.DatumKwargs[k]
		for len(col) < n {
			col = append(col, nil)
		}
		p.DatumKwargs[k] = append(col, v)
	}
	return nil
}

// AppendDatumPage appends the datums of a decoded datum_page document to p.
func AppendDatumPage(p *DatumPage, doc map[string]any) error {
	ids, ok := doc["datum_id"].([]any)
	if !ok {
		return fmt.Errorf("key \"datum_id\": want list, have %T", doc["datum_id"])
	}
	kw, _ := doc["datum_kwargs"].(map[string]any)
	// Split each column once: an array column costs O(rows) to split.
	cols := make(map[string][]any, len(kw))
	for k, col := range kw {
		c, err := pageColumn(col, len(ids))
		if err != nil {
			return fmt.Errorf("datum_kwargs %q: %w", k, err)
		}
		cols[k] = c
	}
	for i, v := range ids {
		id, ok := v.(string)
		if !ok {
			return fmt.Errorf("datum_id[%d]: want string, have %T", i, v)
		}
		m := make(map[string]any, len(cols))
		for k, c := range cols {
			m[k] = c[i]
		}
		if err := AppendDatum(p, map[string]any{"datum_id": id, "datum_kwargs": m}); err != nil {
			return err
		}
	}
	return nil
}
