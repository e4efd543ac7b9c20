package msgpack

// The summary of a start document: what a listing shows of a run (uid, time, scan_id,
// plan_name), read by walking the document's top-level map and skipping every other value,
// without building the map or its JSON. A cold listing of 10,000 runs pays this instead of
// the whole decode (about 60 µs a document); the whole document is parsed from its stored
// bytes (parseHead) when a run is opened or a query needs it.
//
// The summary succeeds exactly when the whole parse (value, appendJSON, catalog.ParseStart)
// does, with the same fields: the document was already walked by skip (startLen), so the
// whole parse can only fail on nesting deeper than maxDepth or on the fields ParseStart
// checks. The walk measures the nesting as it skips; a document nested deeper than
// summaryDepth (never a real one) is parsed whole instead.

import (
	"github.com/brokerfs/brokerfs/catalog"
)

// summaryDepth is the nesting beyond which summaryStart parses the whole document: far below
// maxDepth, so that a document within it cannot fail the whole parse by its depth (key
// decoding of a map key that is itself a container adds two levels).
const summaryDepth = 64

// summaryStart returns the summary of the start document doc (Doc and Raw nil), or the same
// error the whole parse would give.
func summaryStart(doc []byte) (*catalog.Start, error) {
	n, p, err := mapLen(doc, 0)
	if err != nil {
		return parseStart(doc) // not a map: the whole parse says so in its words
	}
	// The four values a summary needs, decoded as value decodes them (a later key wins, as
	// in the map value builds); everything else is skipped.
	var fields map[string]any
	for range n {
		var k []byte
		if p < len(doc) && isStr(doc[p]) {
			if k, p, err = str(doc, p); err != nil {
				return parseStart(doc)
			}
		} else if p, err = skipDepth(doc, p); err != nil { // a non-string key never names a field
			return parseStart(doc)
		}
		switch string(k) {
		case "uid", "time", "scan_id", "plan_name":
			if _, err := skipDepth(doc, p); err != nil {
				return parseStart(doc)
			}
			var v any
			if v, p, err = value(doc, p, false, 1); err != nil {
				return parseStart(doc)
			}
			if fields == nil {
				fields = make(map[string]any, 4)
			}
			fields[string(k)] = v
		default:
			if p, err = skipDepth(doc, p); err != nil {
				return parseStart(doc)
			}
		}
	}
	if p != len(doc) {
		return parseStart(doc)
	}
	s, err := catalog.ParseStart(fields, nil)
	if err != nil {
		return parseStart(doc) // the error in the whole parse's words
	}
	s.Doc = nil
	return s, nil
}

// parseStart parses the start document doc whole, with the errors summaryStart gives.
func parseStart(doc []byte) (*catalog.Start, error) {
	x := &indexer{ix: &index{}}
	if err := x.small(doc, "start", 0); err != nil {
		return nil, err
	}
	return x.ix.start, nil
}

// errTooDeep is skipDepth's report of nesting beyond summaryDepth.
var errTooDeep = corrupt(0, "nested beyond the summary's depth")

// skipDepth is skip, failing with errTooDeep on values nested more than summaryDepth deep.
func skipDepth(b []byte, pos int) (int, error) {
	var stack [summaryDepth]int // values left in each open container
	depth := 0
	left := 1
	for {
		for left == 0 {
			if depth == 0 {
				return pos, nil
			}
			depth--
			left = stack[depth]
		}
		left--
		if pos >= len(b) {
			return pos, errShort
		}
		c := b[pos]
		var n int // values in a container that begins here
		switch {
		case c <= 0x7f || c >= 0xe0:
			pos++
			continue
		case c <= 0x8f:
			n, pos = 2*int(c&0x0f), pos+1
		case c <= 0x9f:
			n, pos = int(c&0x0f), pos+1
		case c == 0xdc || c == 0xdd:
			m, next, err := arrayLen(b, pos)
			if err != nil {
				return pos, err
			}
			n, pos = m, next
		case c == 0xde || c == 0xdf:
			m, next, err := mapLen(b, pos)
			if err != nil {
				return pos, err
			}
			n, pos = 2*m, next
		default:
			next, err := skip(b, pos)
			if err != nil {
				return pos, err
			}
			pos = next
			continue
		}
		if n == 0 {
			continue
		}
		if n > len(b)-pos {
			return pos, errShort
		}
		if depth == summaryDepth {
			return pos, errTooDeep
		}
		stack[depth] = left
		depth++
		left = n
	}
}
