package msgpack

// The body check: what the event decoder needs of a document's data, timestamps and filled
// values, tested without decoding them. The index runs it on every event document it does not
// read through a layout, and so does every read (scanEvent), so that a document the decoder
// would fail on (a ragged page, a broken numpy column, values nested too deeply: a bit flip
// makes any of them) is skipped by both, with one log line from the index, instead of failing
// every read of its stream.

import (
	"errors"
	"fmt"
)

// checkBody checks the body parts of an event document whose header h is good. Problems are
// *invalidError; short and corrupt data pass through.
func checkBody(b []byte, h *evHeader) error {
	for _, part := range [...]struct {
		name string
		at   int
	}{{"data", h.data}, {"timestamps", h.ts}, {"filled", h.filled}} {
		if part.at < 0 || !isMap(b[part.at]) {
			continue // the header check fails data, timestamps and filled that are not maps
		}
		if err := checkPart(b, part.at, part.name, h); err != nil {
			if errors.Is(err, errShort) || isCorrupt(err) && !isDepth(err) {
				return err
			}
			return invalid("%s: %v", part.name, err)
		}
	}
	return nil
}

// checkPart checks one body map: each of its values as the decoder would read it.
func checkPart(b []byte, pos int, name string, h *evHeader) error {
	n, pos, err := mapLen(b, pos)
	if err != nil {
		return err
	}
	for range n {
		k, next, err := str(b, pos)
		if err != nil {
			// A key that is not a string is passed over by the decoder.
			if pos, err = skipPair(b, pos, err); err != nil {
				return err
			}
			continue
		}
		pos = next
		switch {
		case h.single && name == "timestamps":
			pos, err = skip(b, pos) // any value reads (as NaN or 0)
		case h.single:
			pos, err = checkDepth(b, pos, 0)
		default:
			pos, err = checkColumnOf(b, pos, name, h.rows)
		}
		if err != nil {
			return fmt.Errorf("%q: %w", k, err)
		}
	}
	return nil
}

// checkColumnOf checks a page column of rows values: a list of that many, each value within
// the nesting bound, or a numpy array the decoder takes (one-dimensional for timestamps).
func checkColumnOf(b []byte, pos int, name string, rows int) (int, error) {
	if pos >= len(b) {
		return pos, errShort
	}
	if isMap(b[pos]) {
		var nh ndHeader
		ok, err := parseNumpy(b, pos, &nh)
		if err != nil {
			return pos, err
		}
		if !ok || !nh.nd || nh.ndim == 0 || nh.shape[0] != rows || !ndValid(&nh) || (name == "timestamps" && nh.ndim != 1) {
			return pos, fmt.Errorf("want a list or array of %d rows, have %s", rows, typeName(b, pos))
		}
		return nh.end, nil
	}
	n, p, err := arrayLen(b, pos)
	if err != nil {
		return pos, err
	}
	if n != rows {
		return pos, fmt.Errorf("column of %d values in a page of %d rows", n, rows)
	}
	for range n {
		if p < len(b) {
			if s := scalarSize[b[p]]; s != 0 {
				p += int(s) // a scalar: nothing to check (past the end: short, below)
				continue
			}
		}
		if name == "timestamps" {
			p, err = skip(b, p)
		} else {
			p, err = checkDepth(b, p, 0)
		}
		if err != nil {
			return p, err
		}
	}
	if p > len(b) {
		return p, errShort
	}
	return p, nil
}

// ndValid reports whether ndValue would make a value of a parsed msgpack-numpy header, without
// making it.
func ndValid(h *ndHeader) bool {
	_, _, size, ok := dtype(h.typ)
	if !ok {
		return false
	}
	count := 1
	for _, d := range h.shape[:h.ndim] {
		if d == 0 {
			count = 0
			break
		}
		if count > len(h.data)/d {
			return false
		}
		count *= d
	}
	return count*size == len(h.data)
}

// errDepth is the message value gives for values nested beyond maxDepth.
const errDepth = "values nested too deeply"

func isDepth(err error) bool {
	var ce *corruptError
	return errors.As(err, &ce) && ce.msg == errDepth
}

// checkDepth returns the end of the value at pos, failing as value would when it nests deeper
// than maxDepth (depth is the value's own).
func checkDepth(b []byte, pos, depth int) (int, error) {
	if depth > maxDepth {
		return pos, corrupt(pos, errDepth)
	}
	if pos >= len(b) {
		return pos, errShort
	}
	c := b[pos]
	if s := int(scalarSize[c]); s != 0 {
		if pos+s > len(b) {
			return pos + s, errShort
		}
		return pos + s, nil
	}
	switch {
	case isArray(c):
		n, p, err := arrayLen(b, pos)
		if err != nil {
			return pos, err
		}
		if n > len(b)-p {
			return pos, errShort
		}
		for range n {
			if p, err = checkDepth(b, p, depth+1); err != nil {
				return p, err
			}
		}
		return p, nil
	case isMap(c):
		var nh ndHeader
		if ok, err := parseNumpy(b, pos, &nh); err != nil || ok {
			if err != nil {
				return pos, err
			}
			return nh.end, nil
		}
		n, p, err := mapLen(b, pos)
		if err != nil {
			return pos, err
		}
		if n > len(b)-p {
			return pos, errShort
		}
		for range n {
			if p, err = skip(b, p); err != nil { // keys never fail for depth
				return p, err
			}
			if p, err = checkDepth(b, p, depth+1); err != nil {
				return p, err
			}
		}
		return p, nil
	}
	return skip(b, pos)
}
